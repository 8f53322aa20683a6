-- An example Lmod module file for hybrun, installed under a prefix such as
-- /opt/hybrun/<version> (`cargo install --root PREFIX`, or scripts/dist's files
-- copied to PREFIX/bin, PREFIX/share/man/man1 and
-- PREFIX/share/bash-completion/completions).
--
--   module use /opt/modulefiles && module load hybrun
help([[
hybrun: correct, safe and measured container launches (srun outside,
Singularity/Apptainer or ch-run inside, the host's MPI bound in), and hybench,
MPI and GPU micro-benchmarks.
]])
whatis("Name: hybrun")
whatis("Description: container launches for HPC, checked and measured")

local prefix = "/opt/hybrun/" .. myModuleVersion()
prepend_path("PATH", pathJoin(prefix, "bin"))
prepend_path("MANPATH", pathJoin(prefix, "share/man"))
-- The site file: the administrators' /etc/hybrun/site.toml wins for the image
-- policy in any case; this one names the site's runtime, MPI profiles and fabric.
setenv("HYBRUN_SITE", pathJoin(prefix, "etc/site.toml"))
-- hybench is built against one MPI: load the same MPI module to run it.
prereq_any("mpich", "openmpi", "intel-mpi")
