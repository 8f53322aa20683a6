//! The scenario file as written: its TOML, deserialized with every unknown key
//! refused and every value that a later message points at kept with its span.
//! Words (benchmarks, modes, runtimes...) stay text here: [`super::validate`]
//! turns them into the vocabulary's enums, naming the key it read them from.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::SubmitOptions;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub launches: Option<Spanned<u32>>,
    pub order: Option<Spanned<String>>,
    pub seed: Option<u64>,
    pub timeout: Option<Spanned<String>>,
    pub tolerance: Option<Spanned<f64>>,
    pub resample: Option<Spanned<String>>,
    pub bind: Option<Spanned<String>>,
    pub site: Option<Spanned<String>>,
    pub runtime: Option<Spanned<String>>,
    /// The A/A control (a second native cell per group). Default: true.
    pub control: Option<bool>,
    pub location: Option<Spanned<String>>,
    /// Randomize the launch-level bias sources. Default: true.
    pub randomize: Option<bool>,
    pub matrix: Spanned<RawMatrix>,
    #[serde(default)]
    pub benchmark: BTreeMap<Spanned<String>, RawBenchmark>,
    #[serde(default)]
    pub exclude: Vec<Spanned<RawExclude>>,
    pub stop: Option<Spanned<RawStop>>,
    #[serde(default)]
    pub hybench: RawHybench,
    #[serde(default)]
    pub submit: SubmitOptions,
    /// `[job]`: the job shape of every cell's launch.
    pub job: Option<Spanned<RawJob>>,
    #[serde(default)]
    pub app: BTreeMap<Spanned<String>, Spanned<RawApp>>,
}

/// An optional list whose entries and whole are located.
pub(super) type List<T> = Option<Spanned<Vec<Spanned<T>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatrix {
    pub benchmark: Spanned<Vec<Spanned<String>>>,
    pub mode: Spanned<Vec<Spanned<String>>>,
    pub nodes: List<u32>,
    pub ranks_per_node: List<u32>,
    pub sizes: List<String>,
    pub image: List<String>,
    pub mpi: List<String>,
    pub env: List<BTreeMap<String, String>>,
    pub cpus_per_task: List<u32>,
}

/// `[job]` as written: srun's job-shape options for every cell's launch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub exclusive: Option<bool>,
    pub mem: Option<Spanned<String>>,
    pub constraint: Option<Spanned<String>>,
    pub qos: Option<Spanned<String>>,
    pub gpus_per_task: Option<Spanned<u32>>,
    pub gpu_bind: Option<Spanned<String>>,
    #[serde(default)]
    pub srun_args: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBenchmark {
    /// Overrides matrix.sizes for this benchmark (hybench's -m).
    pub sizes: Option<Spanned<String>>,
    pub iterations: Option<u64>,
    pub warmup: Option<u64>,
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExclude {
    pub benchmark: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub nodes: Option<u32>,
    pub ranks_per_node: Option<u32>,
    pub sizes: Option<String>,
    pub image: Option<String>,
    pub mpi: Option<String>,
    pub cpus_per_task: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStop {
    pub enabled: Option<bool>,
    pub ci_width: Option<Spanned<f64>>,
    pub max_launches: Option<Spanned<u32>>,
    pub budget: Option<Spanned<String>>,
}

/// `[app.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    /// `"wall"`, or `{ regex = '...', unit = "s", better = "lower" }`: read
    /// by [`super::validate`], which names what is wrong in either form.
    pub metric: Option<Spanned<toml::Value>>,
    pub success: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHybench {
    pub mpich: Option<Spanned<String>>,
    pub openmpi: Option<Spanned<String>>,
    pub container: Option<String>,
}

/// Where the scenario's text is, for messages that name the line and key.
pub(super) struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// `FILE:LINE:COLUMN: KEY: MESSAGE` for the value at `span`.
    pub fn at(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> anyhow::Error {
        let (line, column) = line_column(self.text, span.start);
        anyhow::anyhow!("{}:{line}:{column}: {key}: {message}", self.file.display())
    }

    /// A path as written, anchored at the scenario file's directory.
    pub fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// Parses the TOML; a syntax error or unknown key names the file, line and column.
pub(super) fn read(src: &Source<'_>) -> anyhow::Result<RawScenario> {
    toml::from_str(src.text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(src.text, s.start));
        anyhow::anyhow!(
            "{}:{line}:{column}: {}; see scenarios/README.md for the keys",
            src.file.display(),
            e.message()
        )
    })
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
