//! The host's fast network: device files (`/dev/infiniband`, Omni-Path's
//! `/dev/hfi1_N`, Slingshot's `/dev/cxiN`), the verbs provider drivers of
//! `/etc/libibverbs.d`, and the fabric libraries in the loader cache with the
//! plugin directories next to them.

use std::path::{Path, PathBuf};

use super::ldcache::LdCache;
use super::list_dir;

/// Fast-network device files in `dev`: its `infiniband` directory, then the
/// `hfi1_*` and `cxi*` devices.
pub fn devices(dev: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let infiniband = dev.join("infiniband");
    if infiniband.is_dir() {
        found.push(infiniband.display().to_string());
    }
    found.extend(
        list_dir(dev, |n| n.starts_with("hfi1_") || n.starts_with("cxi"))
            .into_iter()
            .map(|n| dev.join(n).display().to_string()),
    );
    found
}

/// This host's fast-network device files.
pub fn fabric_devices() -> Vec<String> {
    devices(Path::new("/dev"))
}

/// The InfiniBand device files (`/dev/infiniband/uverbs0`, ...).
pub fn infiniband_files(dev: &Path) -> Vec<String> {
    let dir = dev.join("infiniband");
    list_dir(&dir, |_| true)
        .into_iter()
        .map(|n| dir.join(n).display().to_string())
        .collect()
}

/// The verbs provider drivers (`mlx5.driver`, ...) in `dir` (/etc/libibverbs.d).
pub fn verbs_drivers(dir: &Path) -> Vec<String> {
    list_dir(dir, |n| n.ends_with(".driver"))
}

/// A fabric library as the loader cache has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricLibrary {
    /// "libucp.so.0".
    pub name: String,
    pub path: Option<PathBuf>,
    /// Its plugin directory, when it has one and it exists.
    pub plugin_dir: Option<PathBuf>,
    /// The `*.so` files there.
    pub plugins: Vec<String>,
}

/// Finds `name` in the loader cache, and its plugin directory `plugin_sub` next
/// to it (UCX's transports sit next to libucs, not libucp: the same directory on
/// every distribution seen).
pub fn library(cache: Option<&LdCache>, name: &str, plugin_sub: Option<&str>) -> FabricLibrary {
    let path = cache.and_then(|c| c.paths(|n| n == name).into_iter().next());
    let plugin_dir = match (&path, plugin_sub) {
        (Some(p), Some(sub)) => p.parent().map(|d| d.join(sub)).filter(|d| d.is_dir()),
        _ => None,
    };
    let plugins = plugin_dir
        .as_deref()
        .map(|d| list_dir(d, |n| n.ends_with(".so")))
        .unwrap_or_default();
    FabricLibrary {
        name: name.to_owned(),
        path,
        plugin_dir,
        plugins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ldcache::{host_flags, write_fake};

    #[test]
    fn devices_and_drivers_of_a_fake_tree() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dev = tmp.path().join("dev");
        assert!(devices(&dev).is_empty());
        std::fs::create_dir_all(dev.join("infiniband")).expect("mkdir");
        for n in [
            "infiniband/uverbs0",
            "infiniband/rdma_cm",
            "hfi1_0",
            "cxi0",
            "null",
        ] {
            std::fs::write(dev.join(n), b"").expect("write");
        }
        let d = dev.display();
        assert_eq!(
            devices(&dev),
            [
                format!("{d}/infiniband"),
                format!("{d}/cxi0"),
                format!("{d}/hfi1_0")
            ]
        );
        assert_eq!(
            infiniband_files(&dev),
            [
                format!("{d}/infiniband/rdma_cm"),
                format!("{d}/infiniband/uverbs0")
            ]
        );
        let etc = tmp.path().join("libibverbs.d");
        std::fs::create_dir_all(&etc).expect("mkdir");
        for n in ["mlx5.driver", "hfi1verbs.driver", "README"] {
            std::fs::write(etc.join(n), b"").expect("write");
        }
        assert_eq!(verbs_drivers(&etc), ["hfi1verbs.driver", "mlx5.driver"]);
    }

    #[test]
    fn libraries_and_their_plugin_directories() {
        let Some(flags) = host_flags() else { return };
        let tmp = tempfile::tempdir().expect("tmp");
        let lib = tmp.path().join("lib");
        std::fs::create_dir_all(lib.join("ucx")).expect("mkdir");
        for n in [
            "libucp.so.0",
            "ucx/libuct_ib.so",
            "ucx/libuct_ib.so.0",
            "ucx/libuct_cma.so",
        ] {
            std::fs::write(lib.join(n), b"").expect("write");
        }
        let file = tmp.path().join("ld.so.cache");
        let ucp = lib.join("libucp.so.0");
        write_fake(
            &file,
            &[(flags, "libucp.so.0", ucp.to_str().expect("utf-8"))],
        );
        let cache = LdCache::read(&file);
        let found = library(cache.as_ref(), "libucp.so.0", Some("ucx"));
        assert_eq!(found.path.as_deref(), Some(ucp.as_path()));
        assert_eq!(found.plugin_dir, Some(lib.join("ucx")));
        assert_eq!(found.plugins, ["libuct_cma.so", "libuct_ib.so"]);
        let absent = library(cache.as_ref(), "libpsm2.so.2", None);
        assert_eq!((absent.path, absent.plugin_dir), (None, None));
    }
}
