# A Spack package for hybrun (the launcher, needs no MPI) and hybench (the
# benchmarks, built against the MPI of the spec):
#
#   spack repo add scripts/spack
#   spack install hybrun ^mpich          # or ^openmpi, ^intel-oneapi-mpi, ...
#   spack install hybrun ~hybench        # the launcher alone
#
# Written as a plain Package (cargo install in install()) rather than on
# CargoPackage, so that it works with the older Spack versions clusters run.
from spack.package import *


class Hybrun(Package):
    """Correct, safe and measured container launches for HPC (srun outside,
    Singularity/Apptainer or Charliecloud inside, the host's MPI bound in), and
    hybench, MPI and GPU micro-benchmarks with the OSU method."""

    # The site's mirror of this repository: change it to where yours is, or build a
    # checkout in place with `spack develop hybrun@main path=/path/to/hybrun`.
    git = "file:///srv/src/hybrun.git"

    maintainers("hybrun")
    license("MIT OR Apache-2.0")

    version("main", branch="main")

    variant("hybench", default=True, description="Build hybench against the spec's MPI")

    depends_on("rust@1.86:", type="build")
    depends_on("pkgconfig", type="build")
    # hybench: rsmpi generates its MPI bindings with bindgen, which needs libclang.
    depends_on("mpi", when="+hybench")
    depends_on("llvm+clang", type="build", when="+hybench")

    def setup_build_environment(self, env):
        # Cargo's own cache inside the stage: nothing written to the user's home.
        env.set("CARGO_HOME", join_path(self.stage.path, "cargo-home"))
        if self.spec.satisfies("+hybench"):
            # rsmpi finds the MPI through its compiler wrapper.
            env.set("MPICC", self.spec["mpi"].mpicc)
            env.set("LIBCLANG_PATH", self.spec["llvm"].prefix.lib)

    def install(self, spec, prefix):
        cargo = which("cargo")
        cargo("install", "--locked", "--root", prefix, "--path", "launcher")
        if spec.satisfies("+hybench"):
            cargo("install", "--locked", "--root", prefix, "--path", "bench-apps")
        hybrun = Executable(join_path(prefix.bin, "hybrun"))
        mkdirp(prefix.share.man.man1)
        hybrun("man", "--dir", prefix.share.man.man1)
        completions = join_path(prefix.share, "bash-completion", "completions")
        mkdirp(completions)
        with open(join_path(completions, "hybrun"), "w") as out:
            hybrun("completions", "bash", output=out)
