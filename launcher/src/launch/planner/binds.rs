//! The rank's binds: the site's `[binds] always` (containers only) and the
//! user's `-B SRC[:DST[:ro|rw]]`.

use std::ffi::OsString;

use super::RankContext;
use crate::launch::LaunchError;
use crate::launch::plan::{Bind, Runtime};

/// The site's and the user's binds; native mode (no runtime) refuses binds.
pub(super) fn site_and_user(
    ctx: &RankContext<'_>,
    runtime: &Runtime,
) -> Result<Vec<Bind>, LaunchError> {
    let mut binds: Vec<Bind> = Vec::new();
    if *runtime != Runtime::None {
        for entry in &ctx.site.config.binds.always {
            let src = entry.src.to_path_buf();
            let dst = entry
                .dst
                .as_ref()
                .map_or_else(|| src.clone(), |d| d.to_path_buf());
            binds.push(Bind {
                src,
                dst,
                ro: entry.ro,
                why: "site".into(),
            });
        }
    }
    for spec in &ctx.req.binds {
        binds.push(parse_bind(spec)?);
    }
    if *runtime == Runtime::None && !binds.is_empty() {
        return Err(LaunchError::NativeBinds);
    }
    Ok(binds)
}

/// `SRC[:DST[:ro|rw]]`.
fn parse_bind(spec: &OsString) -> Result<Bind, LaunchError> {
    let bad = || LaunchError::BindSpec {
        spec: spec.to_string_lossy().into_owned(),
    };
    let text = spec.to_str().ok_or_else(bad)?;
    if text.contains(',') {
        // The runtimes would read a comma as a list of binds.
        let path = text.split(':').find(|p| p.contains(',')).unwrap_or(text);
        return Err(LaunchError::BindSeparator {
            path: path.to_owned(),
            which: "path",
            separator: ',',
        });
    }
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [src] => (*src, *src, false),
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => return Err(bad()),
    };
    if src.is_empty() || dst.is_empty() || !src.starts_with('/') || !dst.starts_with('/') {
        return Err(bad());
    }
    Ok(Bind {
        src: src.into(),
        dst: dst.into(),
        ro,
        why: "user".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn bind_specs() {
        let b = parse_bind(&"/a:/b:ro".into()).expect("ok");
        assert_eq!((b.src, b.dst, b.ro), ("/a".into(), "/b".into(), true));
        let b = parse_bind(&"/a".into()).expect("ok");
        assert_eq!(b.dst, PathBuf::from("/a"));
        for bad in ["/a:/b:/c", "/a:/b:x", "a:/b", "/a:", "/a:b:/c:ro"] {
            assert!(parse_bind(&bad.into()).is_err(), "{bad}");
        }
        let err = parse_bind(&"/a,b:/c".into()).expect_err("comma");
        assert!(err.to_string().contains("','"), "{err}");
    }
}
