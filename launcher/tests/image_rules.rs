//! The MPI ABI rules, version parsing and host-output parsers of `hybrun image check`,
//! without images.

use hybrun::elf::{GlibcVersion, LibVersion, split_so_name};
use hybrun::host::driver::parse_nvidia_version;
use hybrun::host::slurm::parse_srun_mpi_list;
use hybrun::image::abi::{self, AbiId, AbiMode, compatible, family_from_name};
use hybrun::image::check::cuda::cuda_min_driver;
use hybrun_core::vocab::{MpiAbi, MpiFlavour};

fn id(name: &str) -> AbiId {
    AbiId {
        family: family_from_name(name).unwrap_or_else(|| panic!("{name} is an MPI library name")),
        version: split_so_name(name).and_then(|(_, v)| v),
    }
}

#[test]
fn mpich_family_names_are_one_abi() {
    // Intel MPI, Cray MPICH and MVAPICH2 ship libmpi.so.12; Debian's MPICH libmpich.so.12.
    for name in [
        "libmpi.so.12",
        "libmpich.so.12",
        "libmpich.so.12.2.2",
        "libmpi.so.12.1.1",
    ] {
        assert_eq!(family_from_name(name), Some(MpiAbi::Mpich), "{name}");
    }
    assert!(
        compatible(
            &id("libmpi.so.12"),
            &id("libmpich.so.12.2.2"),
            AbiMode::Major
        )
        .is_ok()
    );
    assert!(
        compatible(
            &id("libmpich.so.12.2.2"),
            &id("libmpi.so.12.1.9"),
            AbiMode::Major
        )
        .is_ok()
    );
}

#[test]
fn open_mpi_4_and_5_share_libmpi_40() {
    assert_eq!(family_from_name("libmpi.so.40"), Some(MpiAbi::Openmpi));
    // 4.1.x is 40.30.x, 5.0.x is 40.40.x.
    let v4 = id("libmpi.so.40.30.4");
    let v5 = id("libmpi.so.40.40.1");
    assert!(compatible(&v4, &v5, AbiMode::Major).is_ok());
    assert!(
        compatible(&v4, &v5, AbiMode::Full).is_ok(),
        "host newer minor"
    );
    assert!(
        compatible(&v5, &v4, AbiMode::Full).is_err(),
        "host older minor"
    );
    assert!(compatible(&v4, &v5, AbiMode::Strict).is_err());
    // Open MPI 2.x had libmpi.so.20: same family, different major.
    let err = compatible(&id("libmpi.so.20.10.0"), &v4, AbiMode::Major).unwrap_err();
    assert!(err.contains("SONAME major differs"), "{err}");
}

#[test]
fn families_never_mix() {
    let err = compatible(&id("libmpi.so.40"), &id("libmpich.so.12"), AbiMode::Major).unwrap_err();
    assert!(err.contains("different ABI"), "{err}");
    assert!(err.contains("Open MPI ABI in the image"), "{err}");
    assert!(compatible(&id("libmpi_abi.so"), &id("libmpich.so.12"), AbiMode::Major).is_err());
    assert!(compatible(&id("libmpi_abi.so"), &id("libmpi_abi.so"), AbiMode::Strict).is_ok());
}

#[test]
fn sarus_modes() {
    let c = id("libmpich.so.12.1.5");
    let newer = id("libmpich.so.12.2.0");
    let older = id("libmpich.so.12.0.9");
    let same = id("libmpi.so.12.1.5");
    for (host, major, full, strict) in [
        (&newer, true, true, false),
        (&older, true, false, false),
        (&same, true, true, true),
    ] {
        assert_eq!(compatible(&c, host, AbiMode::Major).is_ok(), major);
        assert_eq!(compatible(&c, host, AbiMode::Full).is_ok(), full);
        assert_eq!(compatible(&c, host, AbiMode::Strict).is_ok(), strict);
    }
}

#[test]
fn non_mpi_names() {
    for name in [
        "libmpi_cxx.so.40",
        "libmpichfort.so.12",
        "libmpi.so",
        "libfoo.so.1",
        "x",
    ] {
        assert_eq!(family_from_name(name), None, "{name}");
    }
    assert_eq!(
        split_so_name("libmpich.so.12.2.2").and_then(|(_, v)| v),
        Some(LibVersion {
            major: 12,
            minor: Some(2),
            patch: Some(2)
        })
    );
}

#[test]
fn implementations_from_markers() {
    let check = |strings: &[&str]| MpiFlavour::recognise(strings.iter().copied());
    assert_eq!(
        check(&["x", "MPICH Version:\t%s\nMPICH Release date"]),
        Some(MpiFlavour::Mpich)
    );
    assert_eq!(
        check(&[
            "MPICH Version:\t%s",
            "Intel(R) MPI Library 2021.6 for Linux*"
        ]),
        Some(MpiFlavour::Intel)
    );
    assert_eq!(
        check(&["MVAPICH2 Version      :\t%s", "MPICH Version:"]),
        Some(MpiFlavour::Mvapich2)
    );
    assert_eq!(check(&["Open MPI v%d.%d.%d"]), Some(MpiFlavour::Openmpi));
    assert_eq!(check(&["hello"]), None);
    assert_eq!(
        abi::open_mpi_release(["Open MPI", "v5.0.3"]).as_deref(),
        Some("5.0.3")
    );
}

#[test]
fn glibc_versions() {
    let v = |s| GlibcVersion::parse(s).unwrap();
    assert!(v("GLIBC_2.17") < v("GLIBC_2.34"));
    assert!(v("GLIBC_2.2.5") < v("GLIBC_2.3"));
    assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
}

#[test]
fn srun_and_driver_output() {
    let list = "MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\nspecific pmix plugin versions available: pmix_v4\n";
    assert_eq!(
        parse_srun_mpi_list(list),
        ["cray_shasta", "none", "pmi2", "pmix"]
    );
    assert_eq!(
        parse_srun_mpi_list("srun: MPI types are...\nsrun: none\nsrun: pmi2\n"),
        ["none", "pmi2"]
    );
    assert_eq!(
        parse_nvidia_version(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19\n"
        )
        .as_deref(),
        Some("535.104.05")
    );
    assert_eq!(parse_nvidia_version("nothing here"), None);
}

#[test]
fn cuda_minor_version_compatibility_table() {
    assert_eq!(cuda_min_driver(12, 4), Some("525.60.13"));
    assert_eq!(cuda_min_driver(12, 0), Some("525.60.13"));
    assert_eq!(cuda_min_driver(11, 8), Some("450.80.02"));
    assert_eq!(cuda_min_driver(13, 0), Some("580.65.06"));
    assert_eq!(cuda_min_driver(9, 2), None);
}
