//! The append-only result store of one campaign run, and how it resumes.
//!
//! Three files in the run directory, appended to and never rewritten:
//!
//! - `results.csv`: one row per cell x launch x size: the cell's columns, then
//!   hybench's own schema ([`hybrun_core::schema::ResultRow`]);
//! - `samples.csv`: every timed iteration (cell, launch, then hybench's samples);
//! - `launches.jsonl`: one [`LaunchRecord`] per finished launch (ok or failed),
//!   written *after* that launch's rows. It is the done-marker: a launch
//!   without a record did not happen, whatever rows it left.
//!
//! Each record holds the lengths of `results.csv` and `samples.csv` right after
//! its rows were synced. Resuming (opening) therefore needs no parsing of the
//! CSV files: it truncates a torn last record line, then cuts both CSV files back
//! to the lengths in the last record, which removes the rows (whole or torn) of
//! a launch that was killed before its record. Every write(2) holds whole rows
//! only (the file is opened with O_APPEND), and each file is synced before the
//! record that covers it is written, so after `kill -9` at any moment the store
//! reopens to exactly the launches recorded, no row lost, none duplicated.
//!
//! What is cut is trusted only after it is checked: the files are opened
//! without following links (O_NOFOLLOW) and must be regular files, so a link
//! planted in the run directory cannot lead a truncation outside it; and the
//! records' lengths must grow from one record to the next and stay within
//! their files. A run that fails either check was changed outside hybrun, and
//! is refused before anything in it is changed (readers refuse it the same way).
//!
//! One writer at a time: opening takes an exclusive `flock` on `run.lock`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::scenario::{Cell, Workload};
use hybrun_core::schema::ResultRow;
use hybrun_core::vocab::Mode;

pub const RESULTS: &str = "results.csv";
pub const SAMPLES: &str = "samples.csv";
pub const LAUNCHES: &str = "launches.jsonl";
const LOCK: &str = "run.lock";

/// The columns the campaign puts before hybench's own in `results.csv`.
pub const CELL_COLUMNS: &[&str] = &[
    "cell_key",
    "launch",
    "mode",
    "image",
    "mpi_profile",
    "nodes",
    "ranks_per_node",
    "sizes",
    "extra_env",
];

/// The columns before hybench's samples columns in `samples.csv`.
pub const SAMPLE_PREFIX: &str = "cell_key,launch,mode";
/// hybench's `--samples` header ([`hybrun_core::schema::SampleRow`]).
pub const HYBENCH_SAMPLES_HEADER: &str = "benchmark,size_bytes,rank,iteration,value,unit";

hybrun_core::named_enum! {
    /// How a launch ended.
    pub enum Outcome ("launch outcome") {
        /// It ran and its rows were recorded.
        Ok = "ok",
        /// It exited non-zero, or its output could not be read.
        Failed = "failed",
        /// It was killed at the scenario's time limit.
        Timeout = "timeout",
    }
}

/// One finished launch: its done-marker and its launch record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRecord {
    pub cell_key: String,
    pub launch: u32,
    pub benchmark: Workload,
    pub mode: Mode,
    pub status: Outcome,
    /// Why it failed, in one line (exit status, timeout, unreadable output...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The end of its standard error (and output), for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub started_at: String,
    /// Wall time of the launched command alone.
    pub duration_s: f64,
    pub host: String,
    #[serde(default)]
    pub slurm_job_id: String,
    /// The command, as executed (argv vector), and the environment it added.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// What the launcher starts on each rank: the tail of `argv` (the bare
    /// command natively, the runtime's or `hybrun exec`'s in a container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_rank: Vec<String>,
    /// hybrun::launch's plan, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
    /// The launch-level bias sources drawn for this launch, when randomized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomized: Option<Randomized>,
    pub rows: u64,
    pub samples: u64,
    /// Lengths of results.csv and samples.csv after this launch's rows.
    pub results_end: u64,
    pub samples_end: u64,
}

/// What was drawn at random for one launch, so that the launch-level biases
/// it controls (Mytkowicz et al., "Producing wrong data without doing anything
/// obviously wrong!", ASPLOS 2009) become variance the intervals see, not a
/// fixed offset one mode happens to get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Randomized {
    /// Bytes of `HYBRUN_ENV_PAD` in every rank's environment: the size of the
    /// environment moves the initial stack, and with it the alignment of
    /// everything the program puts there.
    pub env_pad: u32,
    /// The cores the ranks of a node are bound to, in rank order, when the
    /// launcher takes an explicit list (hydra, srun); None otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<Vec<usize>>,
    /// Where the launch fell in its round (the cells run in a fresh random
    /// order each round).
    pub position: u32,
}

/// The store, open for appending.
pub struct Store {
    dir: PathBuf,
    results: File,
    samples: File,
    launches: File,
    results_end: u64,
    samples_end: u64,
    records: Vec<LaunchRecord>,
    done: HashMap<(String, u32), Outcome>,
    /// Appends by this process (for the crash points).
    appends: u64,
    _lock: File,
}

/// The header of results.csv: the cell columns, then hybench's schema.
pub fn results_header() -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Serializing a row writes the header first; keep only that line.
    let _ = w.serialize(ResultRow::default());
    let bytes = w.into_inner().unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let hybench = text.lines().next().unwrap_or_default();
    format!("{},{hybench}\n", CELL_COLUMNS.join(","))
}

fn samples_header() -> String {
    format!("{SAMPLE_PREFIX},{HYBENCH_SAMPLES_HEADER}\n")
}

/// Opens a file of a run directory with `options`: never through a symbolic
/// link (O_NOFOLLOW: a link planted in the run directory must not lead a
/// truncation outside it), never blocking on a FIFO (O_NONBLOCK, which does
/// nothing to a regular file), and only a regular file (checked on the
/// descriptor, so what is checked is what is used).
fn open_checked(path: &Path, mut options: OpenOptions, action: &str) -> anyhow::Result<File> {
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => bail!(
            "{} is a symbolic link; a campaign's files are regular files in its run directory \
             (hybrun never follows a link there): put the file itself in its place, or start a \
             fresh run with --new",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot {action} {}", path.display())),
    };
    let kind = file
        .metadata()
        .with_context(|| format!("cannot {action} {}", path.display()))?
        .file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        bail!(
            "{} is not a regular file ({what}); a campaign's files are regular files in its run \
             directory: remove it, or start a fresh run with --new",
            path.display()
        );
    }
    Ok(file)
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true).mode(0o644);
    open_checked(path, options, "open for appending")
}

/// The whole of a file of a run directory (a regular file, never a link).
pub fn read_regular(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut options = OpenOptions::new();
    options.read(true);
    let mut file = open_checked(path, options, "read")?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}

/// The CSV files whose lengths a record holds.
#[derive(Debug, Clone, Copy)]
enum Csv {
    Results,
    Samples,
}

impl Csv {
    fn name(self) -> &'static str {
        match self {
            Csv::Results => RESULTS,
            Csv::Samples => SAMPLES,
        }
    }

    fn of(name: &str) -> Option<Csv> {
        match name {
            RESULTS => Some(Csv::Results),
            SAMPLES => Some(Csv::Samples),
            _ => None,
        }
    }

    fn end(self, r: &LaunchRecord) -> u64 {
        match self {
            Csv::Results => r.results_end,
            Csv::Samples => r.samples_end,
        }
    }
}

/// The end of the header line in the first bytes of a CSV file (0 without one).
fn header_end(head: &[u8]) -> u64 {
    head.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1) as u64
}

/// Checks the records' ends in `csv` against that file: each at or after the
/// one before (the header's end for the first), none past its `len`. A record
/// that says otherwise was edited, or its file was: nothing can be trusted to
/// cut or keep, so the run is refused before anything is changed.
fn check_ends(
    dir: &Path,
    records: &[LaunchRecord],
    csv: Csv,
    header_end: u64,
    len: u64,
) -> anyhow::Result<()> {
    let mut before = header_end;
    for (i, r) in records.iter().enumerate() {
        let end = csv.end(r);
        let why = if end < before {
            let what = if i == 0 {
                "its header"
            } else {
                "the launch recorded before it"
            };
            format!("before the end of {what} (byte {before})")
        } else if end > len {
            format!("past the end of the file ({len} bytes)")
        } else {
            before = end;
            continue;
        };
        bail!(
            "{} line {}: the record of {} launch {} says {} ends at byte {end}, {why}: the run \
             directory was changed outside hybrun; nothing in it was changed now: restore its \
             files, or start a fresh run with --new",
            dir.join(LAUNCHES).display(),
            i + 1,
            r.cell_key,
            r.launch,
            csv.name()
        );
    }
    Ok(())
}

impl Store {
    /// Opens (creating) the store in `dir` and recovers it after any crash.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the run directory {}", dir.display()))?;
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true).mode(0o644);
        let lock = open_checked(&dir.join(LOCK), options, "create")?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                anyhow::anyhow!(
                    "{} is in use by another hybrun (campaign run or worker); wait for it, or \
                     choose another run with --new",
                    dir.display()
                )
            },
        )?;
        let mut results = open_append(&dir.join(RESULTS))?;
        let mut samples = open_append(&dir.join(SAMPLES))?;
        let mut launches = open_append(&dir.join(LAUNCHES))?;

        // Everything is checked before anything is cut.
        let mut text = Vec::new();
        launches
            .read_to_end(&mut text)
            .with_context(|| format!("cannot read {}", dir.join(LAUNCHES).display()))?;
        let (records, complete) = parse_records(&text, &dir.join(LAUNCHES))?;
        for (file, csv) in [(&results, Csv::Results), (&samples, Csv::Samples)] {
            let mut head = [0u8; 4096];
            let n = std::os::unix::fs::FileExt::read_at(file, &mut head, 0)
                .with_context(|| format!("cannot read {}", dir.join(csv.name()).display()))?;
            let len = file.metadata()?.len();
            check_ends(dir, &records, csv, header_end(&head[..n]), len)?;
        }
        if complete < text.len() {
            // A record whose write was cut short: its launch counts as not done.
            launches
                .set_len(complete as u64)
                .with_context(|| format!("cannot truncate {}", dir.join(LAUNCHES).display()))?;
        }
        let (results_end, samples_end) = match records.last() {
            Some(r) => (r.results_end, r.samples_end),
            None => (0, 0),
        };
        for (file, end, name) in [
            (&mut results, results_end, RESULTS),
            (&mut samples, samples_end, SAMPLES),
        ] {
            if file.metadata()?.len() > end {
                // Rows of a launch killed before its record (possibly torn).
                file.set_len(end)
                    .with_context(|| format!("cannot truncate {}", dir.join(name).display()))?;
            }
        }
        let mut store = Store {
            dir: dir.to_path_buf(),
            results,
            samples,
            launches,
            results_end,
            samples_end,
            done: records
                .iter()
                .map(|r| ((r.cell_key.clone(), r.launch), r.status))
                .collect(),
            records,
            appends: 0,
            _lock: lock,
        };
        if store.results_end == 0 {
            let h = results_header();
            write_whole(&mut store.results, h.as_bytes(), RESULTS)?;
            store.results.sync_data()?;
            store.results_end = h.len() as u64;
        }
        if store.samples_end == 0 {
            let h = samples_header();
            write_whole(&mut store.samples, h.as_bytes(), SAMPLES)?;
            store.samples.sync_data()?;
            store.samples_end = h.len() as u64;
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn records(&self) -> &[LaunchRecord] {
        &self.records
    }

    /// (cell key, launch) of every recorded launch.
    pub fn done(&self) -> &HashMap<(String, u32), Outcome> {
        &self.done
    }

    /// Appends one launch: its result rows and samples (whole CSV lines, no
    /// header), then its record. `record`'s lengths are filled in here.
    pub fn append(
        &mut self,
        results: &[u8],
        samples: &[u8],
        mut record: LaunchRecord,
    ) -> anyhow::Result<()> {
        for (bytes, name) in [(results, RESULTS), (samples, SAMPLES)] {
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                bail!("internal error: {name} rows must end with a newline");
            }
        }
        self.appends += 1;
        let crash = crash_point(self.appends);
        if crash == Some(Crash::ResultsTorn) {
            torn_write_and_die(&mut self.results, results);
        }
        write_rows(&mut self.results, results, RESULTS)?;
        if crash == Some(Crash::SamplesTorn) {
            torn_write_and_die(&mut self.samples, samples);
        }
        write_rows(&mut self.samples, samples, SAMPLES)?;
        // The rows must be on disk before the record that says they are there.
        if !results.is_empty() {
            self.results.sync_data().context("sync results.csv")?;
        }
        if !samples.is_empty() {
            self.samples.sync_data().context("sync samples.csv")?;
        }
        self.results_end += results.len() as u64;
        self.samples_end += samples.len() as u64;
        record.results_end = self.results_end;
        record.samples_end = self.samples_end;
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        if crash == Some(Crash::RecordTorn) {
            torn_write_and_die(&mut self.launches, &line);
        }
        write_whole(&mut self.launches, &line, LAUNCHES)?;
        self.launches.sync_data().context("sync launches.jsonl")?;
        if crash == Some(Crash::AfterRecord) {
            die();
        }
        self.done
            .insert((record.cell_key.clone(), record.launch), record.status);
        self.records.push(record);
        Ok(())
    }
}

// ---- Crash points, for the resume tests ----
//
// `HYBRUN_CAMPAIGN_CRASH=POINT:N` kills this process with SIGKILL (as `kill -9`
// would) at POINT of its N-th append: half-way through the result rows
// (`results-torn`), the samples (`samples-torn`), the record line
// (`record-torn`), or right after the record (`after-record`). External kills
// cannot hit the inside of one append reliably; these can, every time.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    ResultsTorn,
    SamplesTorn,
    RecordTorn,
    AfterRecord,
}

fn crash_point(append: u64) -> Option<Crash> {
    static SPEC: std::sync::OnceLock<Option<(Crash, u64)>> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let text = std::env::var("HYBRUN_CAMPAIGN_CRASH").ok()?;
        let (point, n) = text.split_once(':')?;
        let point = match point {
            "results-torn" => Crash::ResultsTorn,
            "samples-torn" => Crash::SamplesTorn,
            "record-torn" => Crash::RecordTorn,
            "after-record" => Crash::AfterRecord,
            _ => return None,
        };
        Some((point, n.parse().ok()?))
    });
    spec.and_then(|(point, n)| (n == append).then_some(point))
}

fn die() -> ! {
    // SAFETY: raise(3) of SIGKILL ends the process at once, like `kill -9`.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL")
}

/// Writes the first half of `bytes` (cutting a row, or the line, in two) and dies.
fn torn_write_and_die(file: &mut File, bytes: &[u8]) -> ! {
    let _ = file.write_all(&bytes[..bytes.len() / 2]);
    let _ = file.sync_data();
    die()
}

/// The records of launches.jsonl's text, and the length of its complete
/// lines (a torn last line, whose write was cut short, is not a record).
fn parse_records(text: &[u8], path: &Path) -> anyhow::Result<(Vec<LaunchRecord>, usize)> {
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut records = Vec::new();
    for (i, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let record: LaunchRecord = serde_json::from_slice(line).with_context(|| {
            format!(
                "{} line {}: not a launch record (the file was changed outside hybrun); start a \
                 fresh run with --new",
                path.display(),
                i + 1
            )
        })?;
        records.push(record);
    }
    Ok((records, complete))
}

/// One write(2) for the whole buffer (retrying the rest only if the kernel
/// wrote part of it, e.g. on a full disk, which then fails the next call).
fn write_whole(file: &mut File, bytes: &[u8], name: &str) -> anyhow::Result<()> {
    file.write_all(bytes)
        .with_context(|| format!("cannot append to {name}"))
}

/// Writes whole rows, at most about 1 MiB per write(2), each write ending at
/// a row boundary.
fn write_rows(file: &mut File, bytes: &[u8], name: &str) -> anyhow::Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut rest = bytes;
    while !rest.is_empty() {
        let cut = if rest.len() <= CHUNK {
            rest.len()
        } else {
            rest[..CHUNK]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1)
        };
        write_whole(file, &rest[..cut], name)?;
        rest = &rest[cut..];
    }
    Ok(())
}

/// The cell's columns of a results row, in [`CELL_COLUMNS`] order.
pub fn cell_fields(cell: &Cell, launch: u32) -> Vec<String> {
    vec![
        cell.key.clone(),
        launch.to_string(),
        cell.mode.to_string(),
        cell.image
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        cell.mpi.clone(),
        cell.nodes.to_string(),
        cell.ranks_per_node.to_string(),
        cell.sizes.clone().unwrap_or_default(),
        cell.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";"),
    ]
}

/// results.csv rows (no header) for one launch's hybench rows.
pub fn results_rows(cell: &Cell, launch: u32, rows: &[ResultRow]) -> anyhow::Result<Vec<u8>> {
    let prefix = cell_fields(cell, launch);
    let mut out = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    for row in rows {
        // csv cannot serialize nested structs: serialize the hybench row alone,
        // read it back as a record, and write the cell's fields before it.
        let mut one = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        one.serialize(row)?;
        let bytes = one.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes.as_slice());
        let mut rec = csv::ByteRecord::new();
        rdr.read_byte_record(&mut rec)?;
        let mut full = csv::ByteRecord::from(prefix.clone());
        full.extend(rec.iter());
        out.write_byte_record(&full)?;
    }
    out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// samples.csv rows (no header) from hybench's `--samples` file.
pub fn samples_rows(cell: &Cell, launch: u32, hybench_samples: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut lines = hybench_samples.split(|&b| b == b'\n');
    let header = lines.next().unwrap_or_default();
    if header != HYBENCH_SAMPLES_HEADER.as_bytes() {
        bail!(
            "hybench's samples file starts with {:?}, expected {HYBENCH_SAMPLES_HEADER:?}: a \
             different hybench schema",
            String::from_utf8_lossy(header)
        );
    }
    // Keys and modes are plain words (no CSV quoting needed); hybench's lines
    // are copied as they are, so the samples cost one pass over the bytes.
    let prefix = format!("{},{},{},", cell.key, launch, cell.mode);
    let mut out = Vec::with_capacity(hybench_samples.len() + hybench_samples.len() / 2);
    for line in lines {
        if line.is_empty() {
            continue;
        }
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    Ok(out)
}

/// The bytes of `results.csv` or `samples.csv` (`name`) that the recorded
/// launches cover: the header and every row up to the last record's length.
/// Anything past it belongs to a launch that has not written its record yet
/// (still running, or killed: then the next resume cuts it off), may end in a
/// torn row, and is not a result, so readers never see it.
pub fn committed(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let csv = Csv::of(name)
        .with_context(|| format!("internal error: {name} is not a campaign CSV file"))?;
    let mut bytes = read_regular(&dir.join(name))?;
    let records = read_records(dir)?;
    let header = header_end(&bytes);
    check_ends(dir, &records, csv, header, bytes.len() as u64)?;
    // No launch recorded yet: the header alone, if it is whole.
    let end = records.last().map_or(header, |r| csv.end(r));
    bytes.truncate(end as usize);
    Ok(bytes)
}

/// One row of results.csv, read back.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub cell_key: String,
    pub launch: u32,
    pub row: ResultRow,
}

/// Reads results.csv of a run directory.
pub fn read_results(dir: &Path) -> anyhow::Result<Vec<StoredRow>> {
    let path = dir.join(RESULTS);
    let bytes = committed(dir, RESULTS)?;
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let headers = rdr.headers()?.clone();
    let n = CELL_COLUMNS.len();
    if headers.len() < n || headers.iter().take(n).ne(CELL_COLUMNS.iter().copied()) {
        bail!("{}: not a campaign results file", path.display());
    }
    let hybench_headers: csv::StringRecord = headers.iter().skip(n).collect();
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{} row {}", path.display(), i + 2))?;
        let tail: csv::StringRecord = rec.iter().skip(n).collect();
        let row: ResultRow = tail
            .deserialize(Some(&hybench_headers))
            .with_context(|| format!("{} row {}", path.display(), i + 2))?;
        out.push(StoredRow {
            cell_key: rec[0].to_owned(),
            launch: rec[1]
                .parse()
                .with_context(|| format!("{} row {}: launch", path.display(), i + 2))?,
            row,
        });
    }
    Ok(out)
}

/// Per-iteration samples of a run: (cell key, launch, benchmark, size) -> values.
pub type SampleMap = HashMap<(String, u32, u64), Vec<f64>>;

/// Reads samples.csv of a run directory (only what the reports need).
pub fn read_samples(dir: &Path) -> anyhow::Result<SampleMap> {
    let path = dir.join(SAMPLES);
    let text = committed(dir, SAMPLES)?;
    let mut map: SampleMap = HashMap::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate().skip(1) {
        if line.is_empty() {
            continue;
        }
        let line = std::str::from_utf8(line)
            .with_context(|| format!("{} line {}", path.display(), i + 1))?;
        let f: Vec<&str> = line.split(',').collect();
        let bad = || anyhow::anyhow!("{} line {}: malformed", path.display(), i + 1);
        if f.len() != 9 {
            return Err(bad());
        }
        let launch: u32 = f[1].parse().map_err(|_| bad())?;
        let size: u64 = f[4].parse().map_err(|_| bad())?;
        let value: f64 = f[7].parse().map_err(|_| bad())?;
        map.entry((f[0].to_owned(), launch, size))
            .or_default()
            .push(value);
    }
    Ok(map)
}

/// Reads the launch records of a run directory without locking it (reports
/// may read a run that is still going).
pub fn read_records(dir: &Path) -> anyhow::Result<Vec<LaunchRecord>> {
    let path = dir.join(LAUNCHES);
    Ok(parse_records(&read_regular(&path)?, &path)?.0)
}

/// A record with its results.csv and samples.csv bytes.
pub type RecordSlice = (LaunchRecord, Vec<u8>, Vec<u8>);

/// The bytes of a shard's results.csv and samples.csv that belong to each of
/// its records (records in file order): what `--submit` copies into the run's
/// own store when it collects the jobs' shards.
pub fn record_slices(dir: &Path) -> anyhow::Result<Vec<RecordSlice>> {
    let records = read_records(dir)?;
    let results = read_regular(&dir.join(RESULTS))?;
    let samples = read_regular(&dir.join(SAMPLES))?;
    let (mut r0, mut s0) = (header_end(&results), header_end(&samples));
    check_ends(dir, &records, Csv::Results, r0, results.len() as u64)?;
    check_ends(dir, &records, Csv::Samples, s0, samples.len() as u64)?;
    let mut out = Vec::new();
    for r in records {
        let (r1, s1) = (r.results_end, r.samples_end);
        let rb = results[r0 as usize..r1 as usize].to_vec();
        let sb = samples[s0 as usize..s1 as usize].to_vec();
        (r0, s0) = (r1, s1);
        out.push((r, rb, sb));
    }
    Ok(out)
}

/// An ok launch record with nothing else in it (tests).
#[cfg(test)]
pub(crate) fn test_record(key: &str, launch: u32) -> LaunchRecord {
    LaunchRecord {
        cell_key: key.into(),
        launch,
        benchmark: Workload::Bench(hybrun_core::vocab::Benchmark::Latency),
        mode: Mode::Native,
        status: Outcome::Ok,
        reason: None,
        stderr_tail: None,
        exit_code: Some(0),
        signal: None,
        started_at: String::new(),
        duration_s: 0.0,
        host: String::new(),
        slurm_job_id: String::new(),
        argv: vec![],
        env: vec![],
        per_rank: vec![],
        plan: None,
        randomized: None,
        rows: 1,
        samples: 1,
        results_end: 0,
        samples_end: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, launch: u32) -> LaunchRecord {
        test_record(key, launch)
    }

    #[test]
    fn torn_tails_are_cut_back_to_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        {
            let mut s = Store::open(d).unwrap();
            s.append(b"a,1\n", b"x\n", record("a", 0)).unwrap();
        }
        let len_r = std::fs::metadata(d.join(RESULTS)).unwrap().len();
        let len_s = std::fs::metadata(d.join(SAMPLES)).unwrap().len();
        let len_l = std::fs::metadata(d.join(LAUNCHES)).unwrap().len();
        // A launch killed mid-append: rows (one torn), a torn record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join(RESULTS))
            .unwrap();
        f.write_all(b"b,1\nb,2,tor").unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join(SAMPLES))
            .unwrap();
        f.write_all(b"y\n").unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join(LAUNCHES))
            .unwrap();
        f.write_all(b"{\"cell_key\":\"b\"").unwrap();
        drop(f);
        let s = Store::open(d).unwrap();
        assert_eq!(s.records().len(), 1);
        assert_eq!(std::fs::metadata(d.join(RESULTS)).unwrap().len(), len_r);
        assert_eq!(std::fs::metadata(d.join(SAMPLES)).unwrap().len(), len_s);
        assert_eq!(std::fs::metadata(d.join(LAUNCHES)).unwrap().len(), len_l);
        assert!(s.done().contains_key(&("a".to_owned(), 0)));
    }

    #[test]
    fn readers_see_only_what_the_records_cover() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let header_only = |name| {
            let b = committed(d, name).unwrap();
            assert!(b.ends_with(b"\n") && b.iter().filter(|&&c| c == b'\n').count() == 1);
        };
        {
            let _s = Store::open(d).unwrap();
        }
        header_only(RESULTS);
        header_only(SAMPLES);
        {
            let mut s = Store::open(d).unwrap();
            s.append(b"a,1\n", b"x\n", record("a", 0)).unwrap();
        }
        let before_r = committed(d, RESULTS).unwrap();
        let before_s = committed(d, SAMPLES).unwrap();
        // A launch killed after (part of) its rows, before its record: not
        // resumed yet, so the rows are still on disk.
        for (name, tail) in [(RESULTS, &b"b,1\nb,2,tor"[..]), (SAMPLES, &b"y\n"[..])] {
            let mut f = OpenOptions::new().append(true).open(d.join(name)).unwrap();
            f.write_all(tail).unwrap();
        }
        assert_eq!(committed(d, RESULTS).unwrap(), before_r);
        assert_eq!(committed(d, SAMPLES).unwrap(), before_s);
        // A file cut shorter than its record says was changed by hand.
        let f = OpenOptions::new()
            .write(true)
            .open(d.join(RESULTS))
            .unwrap();
        f.set_len(3).unwrap();
        let e = committed(d, RESULTS).unwrap_err().to_string();
        assert!(e.contains("changed outside hybrun"), "{e}");
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a = Store::open(dir.path()).unwrap();
        let e = Store::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("in use by another hybrun"), "{e}");
    }

    #[test]
    fn shard_slices_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.append(b"r1\nr2\n", b"s1\n", record("a", 0)).unwrap();
        s.append(b"", b"", record("b", 0)).unwrap();
        s.append(b"r3\n", b"s2\ns3\n", record("c", 1)).unwrap();
        let slices = record_slices(dir.path()).unwrap();
        let got: Vec<(&str, &[u8], &[u8])> = slices
            .iter()
            .map(|(r, a, b)| (r.cell_key.as_str(), a.as_slice(), b.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", &b"r1\nr2\n"[..], &b"s1\n"[..]),
                ("b", &b""[..], &b""[..]),
                ("c", &b"r3\n"[..], &b"s2\ns3\n"[..]),
            ]
        );
    }

    /// Rewrites launches.jsonl with record `index`'s ends changed.
    fn edit_record(d: &Path, index: usize, edit: impl Fn(&mut LaunchRecord)) {
        let mut records = read_records(d).unwrap();
        edit(&mut records[index]);
        let mut text = Vec::new();
        for r in &records {
            text.extend(serde_json::to_vec(r).unwrap());
            text.push(b'\n');
        }
        std::fs::write(d.join(LAUNCHES), text).unwrap();
    }

    fn two_launches(d: &Path) {
        let mut s = Store::open(d).unwrap();
        s.append(b"a,1\na,2\n", b"x\n", record("a", 0)).unwrap();
        s.append(b"b,1\n", b"y\n", record("b", 0)).unwrap();
    }

    fn lengths(d: &Path) -> Vec<u64> {
        [RESULTS, SAMPLES, LAUNCHES]
            .iter()
            .map(|n| std::fs::symlink_metadata(d.join(n)).unwrap().len())
            .collect()
    }

    #[test]
    fn records_whose_ends_go_backwards_or_past_the_file_are_refused_untouched() {
        for (what, edit) in [
            (
                "backwards",
                Box::new(|r: &mut LaunchRecord| r.results_end = 10)
                    as Box<dyn Fn(&mut LaunchRecord)>,
            ),
            (
                "past the file",
                Box::new(|r: &mut LaunchRecord| r.samples_end = 1 << 40),
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            two_launches(d);
            edit_record(d, 1, edit);
            // A torn record after them is not cut either.
            let mut f = OpenOptions::new()
                .append(true)
                .open(d.join(LAUNCHES))
                .unwrap();
            f.write_all(b"{\"cell_key\":").unwrap();
            drop(f);
            let before = lengths(d);
            let e = format!("{:#}", Store::open(d).err().expect(what));
            assert!(
                e.contains("launches.jsonl line 2") && e.contains("--new"),
                "{what}: {e}"
            );
            assert_eq!(lengths(d), before, "{what}: nothing truncated");
            let e = format!(
                "{:#}",
                committed(d, RESULTS)
                    .and(committed(d, SAMPLES))
                    .unwrap_err()
            );
            assert!(e.contains("launches.jsonl line 2"), "{what}: {e}");
            assert!(record_slices(d).is_err(), "{what}");
        }
    }

    #[test]
    fn store_files_are_regular_files_never_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let d = dir.path();
        two_launches(d);
        // results.csv replaced by a link to a longer file outside the run.
        let target = outside.path().join("precious.csv");
        std::fs::write(&target, vec![b'z'; 4096]).unwrap();
        std::fs::remove_file(d.join(RESULTS)).unwrap();
        std::os::unix::fs::symlink(&target, d.join(RESULTS)).unwrap();
        let e = format!("{:#}", Store::open(d).err().expect("a link"));
        assert!(
            e.contains("results.csv") && e.contains("symbolic link"),
            "{e}"
        );
        assert_eq!(std::fs::metadata(&target).unwrap().len(), 4096, "untouched");
        assert!(committed(d, RESULTS).is_err());
        // A FIFO is refused at once, by the store and by readers (no hang).
        std::fs::remove_file(d.join(RESULTS)).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join(RESULTS),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = d.to_path_buf();
        std::thread::spawn(move || {
            let store = Store::open(&path).err().map(|e| format!("{e:#}"));
            let reader = committed(&path, RESULTS).err().map(|e| format!("{e:#}"));
            let _ = tx.send((store, reader));
        });
        let (store, reader) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a FIFO must not block the store");
        for e in [store, reader] {
            let e = e.expect("refused");
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
}
