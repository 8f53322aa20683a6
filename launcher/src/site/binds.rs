//! `[binds]` and `[env]`: what every container gets.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::paths::BindPath;

/// One site bind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindEntry {
    pub src: BindPath,
    /// Default: the same as `src`.
    pub dst: Option<BindPath>,
    #[serde(default)]
    pub ro: bool,
}

/// `[binds]`: host paths bound into every container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindsSection {
    #[serde(default)]
    pub always: Vec<BindEntry>,
}

/// `[env]`: variables set in or removed from every rank.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}
