//! The `[runtime]` section: the container runtimes on PATH.

use super::{Item, Level};
use crate::host::Host;
use crate::host::runtime::{RuntimeFinding, find_all};

/// One item for all runtimes: the ones that answered, the ones that failed.
pub fn runtime_item(found: &[RuntimeFinding]) -> Item {
    let usable: Vec<String> = found
        .iter()
        .filter_map(|f| {
            f.version
                .as_ref()
                .map(|v| format!("{} {v} ({})", f.program, f.path.as_deref().unwrap_or("?")))
        })
        .collect();
    let broken: Vec<String> = found
        .iter()
        .filter_map(|f| f.error.as_ref().map(|e| format!("{}: {e}", f.program)))
        .collect();
    Item {
        section: "runtime",
        name: "container runtime".into(),
        status: match (usable.is_empty(), broken.is_empty()) {
            (true, true) => Level::Missing,
            (false, true) => Level::Ok,
            _ => Level::Warn,
        },
        detail: if usable.is_empty() && broken.is_empty() {
            "no singularity, apptainer or ch-run on PATH".into()
        } else {
            usable
                .iter()
                .chain(broken.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        },
        fix: (usable.is_empty() || !broken.is_empty()).then(|| {
            "install or load Singularity/Apptainer (or Charliecloud: ch-run); native mode \
             needs none"
                .into()
        }),
    }
}

/// The section.
pub fn gather(items: &mut Vec<Item>, host: &Host) -> Vec<RuntimeFinding> {
    let found = find_all(host);
    items.push(runtime_item(&found));
    found
}
