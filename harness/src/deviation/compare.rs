//! Flash beside baseline: every flash run paired with every baseline run of the same format,
//! inputs and sequence length, and the verdicts the headline states, computed from those pairs.

use super::plan::{Model, DEFAULT_TILE};
use super::sweep::Record;
use serde::Serialize;
use std::fmt::Write as _;

/// One flash run beside one baseline run: the JSON record of `tessera deviation --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Always `flash`: the record describes a flash run, measured against a baseline run.
    pub algorithm: &'static str,
    /// The flash run's precision model (`fa2`, `paper`, `every-op`, `f32`, `f64`).
    pub model: &'static str,
    /// The baseline run's precision model (`bf16-ops`, `fused`, `paper`, ...).
    pub baseline_model: &'static str,
    /// Storage format (`bf16`, `fp16`, `f32`, `f64`).
    pub format: &'static str,
    /// Keys per row (N).
    pub seq_len: usize,
    /// Features per head (d).
    pub head_dim: usize,
    /// Input distribution.
    pub distribution: &'static str,
    /// Flash's query tile Br.
    pub block_q: Option<usize>,
    /// Flash's key tile Bc.
    pub block_k: Option<usize>,
    /// The SRAM size of the paper's default tiling the tiles come from, if they do.
    pub sram_bytes: Option<usize>,
    /// Online-softmax rescalings per row.
    pub rescalings: usize,
    /// Flash's max |output − exact| over the sampled rows.
    pub flash: f64,
    /// Baseline's max |output − exact| over the same rows.
    pub baseline: f64,
    /// `flash / baseline`.
    pub ratio: f64,
    /// Flash's mean |output − exact|.
    pub flash_mean: f64,
    /// Baseline's mean |output − exact|.
    pub baseline_mean: f64,
    /// Whether each run stayed within its a-priori bound (docs/numerics.md).
    pub flash_within_bound: bool,
    /// See `flash_within_bound`.
    pub baseline_within_bound: bool,
    /// Backends that ran each kernel.
    pub flash_backend: &'static str,
    /// See `flash_backend`.
    pub baseline_backend: &'static str,
    /// Sampled query rows.
    pub rows: usize,
    /// Input seed.
    pub seed: u64,
}

/// Every flash run against every baseline run of the same format, distribution, head_dim and
/// sequence length.
pub fn compare(records: &[Record]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for f in records.iter().filter(|r| r.algorithm == "flash") {
        let same = |b: &&Record| {
            b.algorithm == "baseline"
                && b.format == f.format
                && b.distribution == f.distribution
                && b.head_dim == f.head_dim
                && b.seq_len == f.seq_len
                && b.seed == f.seed
        };
        for b in records.iter().filter(same) {
            out.push(Comparison {
                algorithm: "flash",
                model: f.model,
                baseline_model: b.model,
                format: f.format,
                seq_len: f.seq_len,
                head_dim: f.head_dim,
                distribution: f.distribution,
                block_q: f.block_q,
                block_k: f.block_k,
                sram_bytes: f.sram_bytes,
                rescalings: f.rescalings,
                flash: f.max_abs_dev,
                baseline: b.max_abs_dev,
                ratio: f.max_abs_dev / b.max_abs_dev,
                flash_mean: f.mean_abs_dev,
                baseline_mean: b.mean_abs_dev,
                flash_within_bound: f.within_bound,
                baseline_within_bound: b.within_bound,
                flash_backend: f.backend,
                baseline_backend: b.backend,
                rows: f.rows,
                seed: f.seed,
            });
        }
    }
    out
}

/// The headline slice: normal inputs if present, the smallest head_dim, the default tile.
fn in_headline(c: &Comparison, dist: &str, d: usize) -> bool {
    c.distribution == dist
        && c.head_dim == d
        && c.block_q == Some(DEFAULT_TILE.0)
        && c.block_k == Some(DEFAULT_TILE.1)
        && c.sram_bytes.is_none()
}

/// The slice the headline shows, from the (distribution, head_dim) of the runs or comparisons:
/// normal inputs if present (else the first distribution), the smallest head_dim of it.
pub(super) fn headline_slice(
    mut slices: impl Iterator<Item = (&'static str, usize)> + Clone,
) -> Option<(&'static str, usize)> {
    let dist = if slices.clone().any(|(dist, _)| dist == "normal") {
        "normal"
    } else {
        slices.next()?.0
    };
    slices
        .filter(|&(x, _)| x == dist)
        .map(|(_, d)| d)
        .min()
        .map(|d| (dist, d))
}

/// One headline cell: a (flash model, baseline model) pair at one sequence length, over seeds.
#[derive(Clone, Debug, Serialize)]
pub struct HeadlineRow {
    /// Storage format.
    pub format: &'static str,
    /// Flash model.
    pub model: &'static str,
    /// Baseline model.
    pub baseline_model: &'static str,
    /// Keys per row.
    pub seq_len: usize,
    /// Seeds measured.
    pub seeds: usize,
    /// Baseline's max abs deviation, mean over seeds.
    pub baseline: f64,
    /// Flash's max abs deviation, mean over seeds.
    pub flash: f64,
    /// Smallest per-seed `flash / baseline`.
    pub ratio_min: f64,
    /// Largest per-seed `flash / baseline`.
    pub ratio_max: f64,
}

/// The headline rows of one (flash model, baseline model) pair, by sequence length, each
/// aggregated over the seeds.
pub fn headline_rows(comparisons: &[Comparison], pair: (Model, Model)) -> Vec<HeadlineRow> {
    let Some((dist, d)) = headline_slice(comparisons.iter().map(|c| (c.distribution, c.head_dim)))
    else {
        return Vec::new();
    };
    let (f, b) = pair;
    let cells: Vec<&Comparison> = comparisons
        .iter()
        .filter(|c| {
            in_headline(c, dist, d)
                && c.format == f.format()
                && c.model == f.name()
                && c.baseline_model == b.name()
        })
        .collect();
    let mut lens: Vec<usize> = cells.iter().map(|c| c.seq_len).collect();
    lens.sort_unstable();
    lens.dedup();
    lens.into_iter()
        .map(|n| {
            let at: Vec<&&Comparison> = cells.iter().filter(|c| c.seq_len == n).collect();
            let k = at.len() as f64;
            let mean = |x: &dyn Fn(&Comparison) -> f64| at.iter().map(|c| x(c)).sum::<f64>() / k;
            HeadlineRow {
                format: f.format(),
                model: f.name(),
                baseline_model: b.name(),
                seq_len: n,
                seeds: at.len(),
                baseline: mean(&|c| c.baseline),
                flash: mean(&|c| c.flash),
                ratio_min: at.iter().map(|c| c.ratio).fold(f64::INFINITY, f64::min),
                ratio_max: at.iter().map(|c| c.ratio).fold(0.0, f64::max),
            }
        })
        .collect()
}

/// How a sequence of values moves with N: `"grows with N"`, `"falls with N"` (strictly, over
/// every measured N), `"does not change with N"` or `"is not monotone in N"`.
pub fn trend(values: &[f64]) -> &'static str {
    if values.len() < 2 {
        "has one point"
    } else if values.windows(2).all(|w| w[1] == w[0]) {
        "does not change with N"
    } else if values.windows(2).all(|w| w[1] > w[0]) {
        "grows with N"
    } else if values.windows(2).all(|w| w[1] < w[0]) {
        "falls with N"
    } else {
        "is not monotone in N"
    }
}

/// One sentence per headline pair, each computed from the rows it describes.
pub fn verdicts(comparisons: &[Comparison]) -> String {
    let mut s = String::new();
    for pair in Model::HEADLINE {
        let rows = headline_rows(comparisons, pair);
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            continue;
        };
        let ratios: Vec<f64> = rows.iter().map(|c| c.flash / c.baseline).collect();
        let flash: Vec<f64> = rows.iter().map(|c| c.flash).collect();
        let lo = rows
            .iter()
            .map(|c| c.ratio_min)
            .fold(f64::INFINITY, f64::min);
        let hi = rows.iter().map(|c| c.ratio_max).fold(0.0f64, f64::max);
        // Which side flash is on, in every seed: more only if every seed's ratio is above 1.
        let at = |pred: &dyn Fn(&HeadlineRow) -> bool| -> Vec<String> {
            rows.iter()
                .filter(|c| pred(c))
                .map(|c| c.seq_len.to_string())
                .collect()
        };
        let more = at(&|c| c.ratio_min > 1.0);
        let less = at(&|c| c.ratio_max < 1.0);
        let same = at(&|c| c.ratio_min <= 1.0 && c.ratio_max >= 1.0);
        let side = if less.is_empty() && same.is_empty() {
            "flash deviates more than baseline at every N".to_string()
        } else if more.is_empty() && same.is_empty() {
            "flash deviates less than baseline at every N".to_string()
        } else {
            let parts: Vec<String> = [
                ("more", &more),
                ("less", &less),
                ("on either side across seeds", &same),
            ]
            .iter()
            .filter(|(_, ns)| !ns.is_empty())
            .map(|(word, ns)| format!("{word} at N = {}", ns.join(", ")))
            .collect();
            format!("flash deviates {}", parts.join("; "))
        };
        let _ = writeln!(
            s,
            "- {} `{}` flash vs `{}` baseline: flash / baseline {:.2} to {:.2} over N = {}..{} and {} seeds ({side}); \
             flash's mean deviation {}, the ratio of means {}.",
            first.format,
            first.model,
            first.baseline_model,
            lo,
            hi,
            first.seq_len,
            last.seq_len,
            first.seeds,
            trend(&flash),
            trend(&ratios),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::trend;

    #[test]
    fn trends_are_strict() {
        assert_eq!(trend(&[1.0, 2.0, 3.0]), "grows with N");
        assert_eq!(trend(&[3.0, 2.0, 1.0]), "falls with N");
        assert_eq!(trend(&[1.0, 2.0, 2.0]), "is not monotone in N");
        assert_eq!(trend(&[2.0, 2.0, 2.0]), "does not change with N");
        assert_eq!(trend(&[1.0, 3.0, 2.0]), "is not monotone in N");
    }
}
