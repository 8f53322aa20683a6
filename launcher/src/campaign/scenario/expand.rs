//! The checked axes expanded into cells: every point of the matrix in a fixed
//! order (benchmark, mode, nodes, ranks per node, sizes, image, MPI profile,
//! environment, CPUs per rank), minus the exclusions, each checked as a whole (rank counts
//! the benchmark accepts, `inside` on one node, the image exists) and keyed.
//! Then the hybench builds the native cells need.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{RawHybench, Source};
use super::validate::{Axes, Exclude, Image};
use super::{Cell, Environment, JobShape};
use hybrun_core::vocab::{Mode, MpiAbi};

/// The most cells a scenario may have: a campaign of more would run for
/// months, and a matrix that big is a mistake in its axes.
pub const MAX_CELLS: u64 = 100_000;

/// How many points the matrix has before exclusions (saturating: a product of
/// axes can exceed any integer).
fn points(axes: &Axes) -> u64 {
    let per_mode: u64 = axes
        .modes
        .iter()
        .map(|m| {
            if m.get_ref().in_container() {
                axes.images.len() as u64
            } else {
                1
            }
        })
        .fold(0, u64::saturating_add);
    let rest = [
        axes.nodes.len(),
        axes.ranks_per_node.len(),
        axes.mpis.len(),
        axes.envs.len(),
        axes.cpus.len(),
    ]
    .iter()
    .fold(per_mode, |n, &len| n.saturating_mul(len as u64));
    axes.benchmarks
        .iter()
        .map(|b| {
            let sizes = size_choices(axes, b.get_ref()).len() as u64;
            rest.saturating_mul(sizes)
        })
        .fold(0, u64::saturating_add)
}

/// The `-m` values a workload's cells take: its `[benchmark.NAME] sizes`, else
/// the matrix's sizes, else hybench's defaults; an application takes none.
fn size_choices(axes: &Axes, workload: &super::Workload) -> Vec<Option<String>> {
    let Some(bench) = workload.bench() else {
        return vec![None];
    };
    match (
        axes.options.get(&bench).and_then(|o| o.sizes.as_ref()),
        &axes.sizes,
    ) {
        (Some(own), _) => vec![Some(own.clone())],
        (None, None) => vec![None],
        (None, Some(s)) => s.iter().cloned().map(Some).collect(),
    }
}

/// The cells of the matrix, in the matrix's order, each once.
pub(super) fn cells(axes: &Axes, src: &Source<'_>) -> anyhow::Result<Vec<Cell>> {
    let points = points(axes);
    if points > MAX_CELLS {
        return Err(src.at(
            axes.span.clone(),
            "matrix",
            format!(
                "{points} cells (benchmark {} x mode {} x nodes {} x ranks_per_node {} x sizes {} \
                 x image {} x mpi {} x env {} x cpus_per_task {}, before exclusions): a \
                 scenario has at most {MAX_CELLS}; narrow the axes or split the scenario",
                axes.benchmarks.len(),
                axes.modes.len(),
                axes.nodes.len(),
                axes.ranks_per_node.len(),
                axes.sizes.as_ref().map_or(1, Vec::len),
                axes.images.len().max(1),
                axes.mpis.len(),
                axes.envs.len(),
                axes.cpus.len()
            ),
        ));
    }
    if let Some(mode) = axes.modes.iter().find(|m| m.get_ref().in_container()) {
        if axes.images.is_empty() {
            return Err(src.at(
                mode.span(),
                "matrix.mode",
                format!(
                    "mode {:?} runs in a container: add matrix.image = [\"IMAGE\"]",
                    mode.get_ref().name()
                ),
            ));
        }
    }
    let mut cells: Vec<Cell> = Vec::new();
    let mut keys: HashSet<String> = HashSet::new();
    let mut hits = vec![0usize; axes.excludes.len()];
    for b in &axes.benchmarks {
        let opts = b.get_ref().bench().and_then(|b| axes.options.get(&b));
        let sizes = size_choices(axes, b.get_ref());
        for mode in &axes.modes {
            let images: Vec<Option<&Image>> = if mode.get_ref().in_container() {
                axes.images.iter().map(Some).collect()
            } else {
                vec![None]
            };
            for n in &axes.nodes {
                for r in &axes.ranks_per_node {
                    for size in &sizes {
                        for img in &images {
                            for p in &axes.mpis {
                                for (env, cpus) in envs_by_cpus(axes) {
                                    let mut cell = Cell {
                                        key: String::new(),
                                        benchmark: b.get_ref().clone(),
                                        replica: 0,
                                        mode: *mode.get_ref(),
                                        nodes: *n.get_ref(),
                                        ranks_per_node: *r.get_ref(),
                                        sizes: size.clone(),
                                        image: img.map(|i| i.path.clone()),
                                        mpi: p.name.clone(),
                                        flavour: p.flavour,
                                        env,
                                        iterations: opts.and_then(|o| o.iterations),
                                        warmup: opts.and_then(|o| o.warmup),
                                        args: opts.map(|o| o.args.clone()).unwrap_or_default(),
                                        shape: JobShape {
                                            cpus_per_task: cpus,
                                            ..axes.shape.clone()
                                        },
                                    };
                                    if excluded(&axes.excludes, &cell, *img, &mut hits) {
                                        continue;
                                    }
                                    check(&cell, [b.span(), n.span(), r.span()], mode, *img, src)?;
                                    cell.compute_key();
                                    if keys.insert(cell.key.clone()) {
                                        cells.push(cell);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for (x, hits) in axes.excludes.iter().zip(&hits) {
        if *hits == 0 {
            return Err(src.at(
                x.span.clone(),
                "exclude",
                "this exclusion matches no cell (a typo?); fix or remove it",
            ));
        }
    }
    if cells.is_empty() {
        return Err(src.at(
            axes.span.clone(),
            "matrix",
            "no cell is left after the exclusions",
        ));
    }
    Ok(cells)
}

/// `cells` with the A/A control: after each native cell, a second one (its
/// replica 1), launched like every other cell, so that the ratio of the two
/// natives measures how far apart two launches of the same thing land here.
pub(super) fn with_controls(cells: Vec<Cell>) -> Vec<Cell> {
    let mut out = Vec::with_capacity(cells.len() * 2);
    for cell in cells {
        let control = (cell.mode == Mode::Native).then(|| {
            let mut c = cell.clone();
            c.replica = 1;
            c.compute_key();
            c
        });
        out.push(cell);
        out.extend(control);
    }
    out
}

/// The environment sets by the CPUs per rank: the two innermost axes, in
/// that order (env, then cpus_per_task), as one loop.
fn envs_by_cpus(axes: &Axes) -> impl Iterator<Item = (BTreeMap<String, String>, Option<u32>)> {
    axes.envs
        .iter()
        .flat_map(|e| axes.cpus.iter().map(move |c| (e.clone(), *c.get_ref())))
}

/// Whether any exclusion matches `cell` (counting each one that does).
fn excluded(excludes: &[Exclude], cell: &Cell, image: Option<&Image>, hits: &mut [usize]) -> bool {
    let mut excluded = false;
    for (x, hits) in excludes.iter().zip(hits.iter_mut()) {
        let matches = x.benchmark.as_ref().is_none_or(|v| *v == cell.benchmark)
            && x.mode.is_none_or(|v| v == cell.mode)
            && x.nodes.is_none_or(|v| v == cell.nodes)
            && x.ranks_per_node.is_none_or(|v| v == cell.ranks_per_node)
            && x.sizes
                .as_ref()
                .is_none_or(|v| Some(v) == cell.sizes.as_ref())
            && x.image
                .as_ref()
                .is_none_or(|v| Some(v) == image.map(|i| &i.given))
            && x.mpi.as_ref().is_none_or(|v| *v == cell.mpi)
            && x.cpus_per_task
                .is_none_or(|v| Some(v) == cell.shape.cpus_per_task);
        if matches {
            *hits += 1;
            excluded = true;
        }
    }
    excluded
}

/// Checks a cell as a whole. `spans`: the benchmark, node count and rank count
/// as written (an axis left to its default has an empty span).
fn check(
    cell: &Cell,
    spans: [std::ops::Range<usize>; 3],
    mode: &Spanned<Mode>,
    image: Option<&Image>,
    src: &Source<'_>,
) -> anyhow::Result<()> {
    let rule = cell.benchmark.rank_rule();
    if !rule.allows(cell.ranks()) {
        let [bench, nodes, ranks] = spans;
        // Point at the rank count as written, else the node count, else the benchmark.
        let span = [ranks, nodes]
            .into_iter()
            .find(|s| s.end > 0)
            .unwrap_or(bench);
        return Err(src.at(
            span,
            "matrix",
            format!(
                "impossible cell: {} {}, and this cell has {} ({} nodes x {} ranks per node); \
                 change matrix.nodes / matrix.ranks_per_node or add an [[exclude]]",
                cell.benchmark,
                rule.requirement(),
                cell.ranks(),
                cell.nodes,
                cell.ranks_per_node
            ),
        ));
    }
    if cell.mode == Mode::Inside && cell.nodes > 1 {
        return Err(src.at(
            mode.span(),
            "matrix.mode",
            format!(
                "mode inside runs mpiexec in one container on one node, and a cell has {} nodes; \
                 exclude it",
                cell.nodes
            ),
        ));
    }
    if let Some(img) = image {
        if !img.path.exists() {
            return Err(src.at(
                img.span.clone(),
                "matrix.image",
                format!(
                    "image {:?} not found ({}); build it (scripts/make-test-images) or fix the \
                     path (relative to the scenario file)",
                    img.given,
                    img.path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The hybench build of each MPI ABI that native cells use: `$HYBENCH_<ABI>`,
/// else `[hybench] <abi>`, else the repository's `target/<abi>/release/hybench`.
pub(super) fn hybench_builds(
    cells: &[Cell],
    given: &RawHybench,
    env: &Environment,
    src: &Source<'_>,
) -> anyhow::Result<BTreeMap<MpiAbi, PathBuf>> {
    // An application's native cells run the application, not hybench.
    let needed: BTreeSet<MpiAbi> = cells
        .iter()
        .filter(|c| c.mode == Mode::Native && c.benchmark.bench().is_some())
        .map(|c| c.flavour.abi())
        .collect();
    let mut builds = BTreeMap::new();
    for abi in needed {
        let (written, var) = match (abi, super::hybench_variable(abi)) {
            (MpiAbi::Mpich, Some(var)) => (given.mpich.as_ref(), var),
            (MpiAbi::Openmpi, Some(var)) => (given.openmpi.as_ref(), var),
            _ => {
                return Err(anyhow::anyhow!(
                    "{}: native cells of an {} profile need a hybench built against that ABI, \
                     which hybrun's scripts do not build; run native cells with an MPICH or \
                     Open MPI ABI profile",
                    src.file.display(),
                    abi.label()
                ));
            }
        };
        let (path, span) = if let Some(p) = env.hybench_override.get(&abi) {
            (p.clone(), None)
        } else {
            match written {
                Some(g) => (src.path(g.get_ref()), Some(g.span())),
                None => (default_hybench(src.file, abi), None),
            }
        };
        if !path.is_file() {
            let message = format!(
                "native {abi} cells need hybench built against {abi}, and {} is missing; run \
                 scripts/build-hybench {abi}, or set [hybench] {abi} = PATH (or ${var})",
                path.display(),
            );
            return Err(match span {
                Some(s) => src.at(s, &format!("hybench.{abi}"), message),
                None => anyhow::anyhow!("{}: {message}", src.file.display()),
            });
        }
        builds.insert(abi, path);
    }
    Ok(builds)
}

/// `target/<abi>/release/hybench` of the repository the scenario sits in
/// (the scenario's directory's parent: scenarios/ is at the root), else of
/// the current directory.
fn default_hybench(file: &Path, abi: MpiAbi) -> PathBuf {
    let rel = Path::new("target").join(abi.name()).join("release/hybench");
    file.parent()
        .and_then(|d| d.parent())
        .map(|root| root.join(&rel))
        .filter(|p| p.is_file())
        .unwrap_or(rel)
}
