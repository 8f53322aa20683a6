//! Charliecloud: `ch-run [--join-ct=N [--join-tag=T]] [-b src:dst]...
//! [--cd=DIR] [--env-no-expand] [--set-env=NAME=VALUE]... [--unset-env=NAME]... IMAGE -- CMD...`
//! (flags of ch-run 0.31).
//!
//! - `--join-ct`/`--join-tag`: the ranks of a node share one container, so MPI
//!   shared memory works between them (in separate user namespaces UCX fails in
//!   MPI_Init). The tag must be unique per node and launch: nodes can share
//!   /dev/shm, where ch-run keeps its join semaphore and shared memory, and a
//!   failed join leaves them there ([`remove_join_leftovers`]).
//! - ch-run 0.31 has no read-only binds: `ro` cannot be expressed (the planner
//!   notes it), and bind targets must exist in the image.
//! - `--set-env` expands `$NAME` in its value; `--env-no-expand` is added when a
//!   value contains `$`, so values arrive as given.

use std::ffi::OsString;
use std::path::Path;

use crate::launch::LaunchError;
use crate::launch::plan::{Delivery, EnvOp, RankPlan, Rendered};
use hybrun_core::vocab::RuntimeKind;

/// Renders `ch-run ...` for one rank.
pub fn render(rank: &RankPlan, program: &Path) -> Result<Rendered, LaunchError> {
    let image = rank.image.as_ref().ok_or(LaunchError::NoImage {
        runtime: RuntimeKind::Charliecloud,
    })?;
    let mut argv: Vec<OsString> = vec![program.as_os_str().to_owned()];
    if let Some(join) = &rank.join {
        argv.push(format!("--join-ct={}", join.count).into());
        if let Some(tag) = &join.tag {
            argv.push(format!("--join-tag={tag}").into());
        }
    }
    for bind in &rank.binds {
        let mut spec = bind.src.as_os_str().to_owned();
        spec.push(":");
        spec.push(&bind.dst);
        argv.push("-b".into());
        argv.push(spec);
    }
    if let Some(dir) = &rank.pwd {
        // ch-run starts in / unless told (the host's cwd is not kept).
        let mut arg = OsString::from("--cd=");
        arg.push(dir);
        argv.push(arg);
    }
    let expands = rank.env.iter().any(|c| match &c.op {
        EnvOp::Set(v) => v.as_encoded_bytes().contains(&b'$'),
        EnvOp::Unset => false,
    });
    if expands {
        argv.push("--env-no-expand".into());
    }
    let mut out = Rendered::default();
    for change in &rank.env {
        match (&change.delivery, &change.op) {
            (Delivery::Flag, EnvOp::Set(value)) => {
                let mut arg = OsString::from(format!("--set-env={}=", change.name));
                arg.push(value);
                argv.push(arg);
            }
            (Delivery::Flag, EnvOp::Unset) => {
                argv.push(format!("--unset-env={}", change.name).into());
            }
            (_, EnvOp::Set(value)) => out.set(&change.name, value),
            (_, EnvOp::Unset) => out.unset(&change.name),
        }
    }
    // The user's flags last, checked when planned (runtime::flags).
    argv.extend(rank.runtime_args.iter().cloned());
    // A SquashFS image runs from its per-node mount (ch-run cannot open a
    // SquashFS at an offset).
    let image = rank
        .mount
        .as_ref()
        .map_or(image.as_path(), |m| &m.mountpoint);
    argv.push(image.as_os_str().to_owned());
    argv.push("--".into());
    argv.extend(rank.payload());
    out.argv = argv;
    Ok(out)
}

/// Where ch-run keeps a join's semaphore and shared memory (POSIX names).
const SHM_DIR: &str = "/dev/shm";

/// Removes what ch-run's joins under `hybrun.LAUNCH.*` tags left in
/// [`SHM_DIR`], once the launch is over; returns the names removed. ch-run
/// removes its semaphore and shared memory when the last peer of a group got
/// through, so they remain where a join failed or a rank was killed while
/// joining. Left there, they only take a little memory (the tags are unique
/// per launch), but nothing else would ever remove them. Removes only on the
/// host it runs on: every node of a launch on this host, or of the local
/// cluster, whose nodes share /dev/shm.
pub fn remove_join_leftovers(launch: &str) -> Vec<String> {
    remove_join_leftovers_in(Path::new(SHM_DIR), launch)
}

fn remove_join_leftovers_in(dir: &Path, launch: &str) -> Vec<String> {
    // The launch id is letters and digits (checked where it is read), so the
    // prefixes match this launch's tags and no others.
    if launch.is_empty() || !launch.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Vec::new();
    }
    let prefixes = [
        format!("ch-run_shm-hybrun.{launch}."),
        format!("sem.ch-run_sem-hybrun.{launch}."),
    ];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    // Bounded: a /dev/shm holds a few entries per job, not millions.
    for entry in entries.take(100_000).flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if prefixes.iter().any(|p| name.starts_with(p.as_str()))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed.push(name.to_owned());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leftovers_of_this_launch_only_are_removed() {
        let dir = std::env::temp_dir().join(format!("hybrun-shm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let names = [
            "ch-run_shm-hybrun.ab12.node1",
            "sem.ch-run_sem-hybrun.ab12.node2",
            "ch-run_shm-hybrun.ab123.node1",
            "ch-run_shm-4242",
            "ucx_shm_posix_1",
        ];
        for name in names {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let mut removed = remove_join_leftovers_in(&dir, "ab12");
        removed.sort();
        assert_eq!(
            removed,
            [
                "ch-run_shm-hybrun.ab12.node1",
                "sem.ch-run_sem-hybrun.ab12.node2"
            ]
        );
        assert!(remove_join_leftovers_in(&dir, "").is_empty());
        assert!(remove_join_leftovers_in(&dir, "*").is_empty());
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "ch-run_shm-4242",
                "ch-run_shm-hybrun.ab123.node1",
                "ucx_shm_posix_1"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
