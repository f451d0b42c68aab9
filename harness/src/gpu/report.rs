//! `tessera gpu-check`'s records, its printed table and verdicts, and the `.npy` inputs it leaves
//! for `scripts/gpu_compare.py` (PyTorch on the same problems).

use super::cases::AttentionCase;
use crate::attention::AttentionProblem;
use crate::metrics::Deviation;
use anyhow::{Context as _, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One attention case in one format.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionRecord {
    /// Case name (`prefill-1024`, `decode-128`).
    pub case: String,
    /// `prefill` or `decode`.
    pub kind: &'static str,
    /// `f32`, `bf16` (f32 accumulator) or `bf16-mma` (the matrix-unit model).
    pub format: &'static str,
    /// Shape.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Query rows per head.
    pub q_len: usize,
    /// Keys per head.
    pub kv_len: usize,
    /// Cache rows per head.
    pub kv_capacity: usize,
    /// Features per head.
    pub head_dim: usize,
    /// Causal mask (queries are the last positions).
    pub causal: bool,
    /// Threads per block of the flash launch.
    pub block_q: usize,
    /// Keys per tile.
    pub block_k: usize,
    /// Input seed (standard normal).
    pub seed: u64,
    /// Median kernel time over the timed launches (CUDA events).
    pub gpu_ms: f64,
    /// Timed launches.
    pub timed_launches: usize,
    /// Rows compared with the CPU's `flash_attention_row`.
    pub cpu_rows: usize,
    /// Of those, rows whose every element has the CPU's bits.
    pub cpu_rows_bitwise_equal: usize,
    /// Largest `|gpu - cpu|` over those rows.
    pub cpu_max_abs_diff: f64,
    /// Rows compared with the exact oracle.
    pub oracle_rows: Vec<usize>,
    /// Deviation of the GPU output from the oracle over those rows.
    pub oracle: Deviation,
    /// Rows whose max error is within their a-priori bound (docs/numerics.md).
    pub oracle_rows_within_bound: usize,
    /// Largest bound of those rows.
    pub bound_max: f64,
    /// Largest `error / bound` over those rows (`<= 1` passes).
    pub max_error_over_bound: f64,
}

/// One Adam step.
#[derive(Clone, Debug, Serialize)]
pub struct AdamRecord {
    /// Parameters.
    pub n: usize,
    /// Threads per block (16 parameters each).
    pub threads_per_block: u32,
    /// Median time.
    pub gpu_ms: f64,
    /// Timed launches.
    pub timed_launches: usize,
    /// `3 n` (weights and both moments).
    pub values_compared: usize,
    /// Values whose bits differ from the CPU's generic backend (0 passes).
    pub values_differing: usize,
}

/// Hyper-Adam's read-only pass.
#[derive(Clone, Debug, Serialize)]
pub struct HyperRecord {
    /// Parameters.
    pub n: usize,
    /// Blocks of the first kernel.
    pub blocks: u32,
    /// Threads per block of both kernels.
    pub threads_per_block: u32,
    /// Median time of both kernels.
    pub gpu_ms: f64,
    /// Timed launches.
    pub timed_launches: usize,
    /// The GPU's five sums.
    pub sums_gpu: [f64; 5],
    /// The same terms summed in order in `f64` on the CPU.
    pub sums_cpu: [f64; 5],
    /// Every `|gpu - cpu| <= 2 n u64 Σ|term|`.
    pub within_bound: bool,
    /// Largest difference over its bound.
    pub max_diff_over_bound: f64,
    /// `[d lr, d logit(beta1), d logit(beta2)]` from the GPU's sums.
    pub hypergradient_gpu: [f64; 3],
    /// The same from the CPU's.
    pub hypergradient_cpu: [f64; 3],
}

/// Everything `tessera gpu-check` measured.
#[derive(Clone, Debug, Serialize)]
pub struct GpuReport {
    /// The device's name.
    pub device: String,
    /// The PTX loaded.
    pub ptx: String,
    /// Attention cases × formats.
    pub attention: Vec<AttentionRecord>,
    /// Adam steps.
    pub adam: Vec<AdamRecord>,
    /// Hyper-Adam passes.
    pub hyper_adam: Vec<HyperRecord>,
}

impl GpuReport {
    /// An empty report for `device`.
    pub fn new(device: &str, ptx: &Path) -> Self {
        GpuReport {
            device: device.to_string(),
            ptx: ptx.display().to_string(),
            attention: Vec::new(),
            adam: Vec::new(),
            hyper_adam: Vec::new(),
        }
    }

    /// What failed: f32 or bf16 rows off the CPU's bits, a row outside its bound, an Adam value
    /// off the CPU's bits, a hyper sum outside its bound. Empty when everything passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.attention {
            if r.cpu_rows_bitwise_equal != r.cpu_rows {
                out.push(format!(
                    "{} {}: {} of {} rows differ from the CPU's bits (max {:.3e})",
                    r.case,
                    r.format,
                    r.cpu_rows - r.cpu_rows_bitwise_equal,
                    r.cpu_rows,
                    r.cpu_max_abs_diff
                ));
            }
            if r.oracle_rows_within_bound != r.oracle_rows.len() {
                out.push(format!(
                    "{} {}: {} of {} rows outside their bound (error/bound {:.2})",
                    r.case,
                    r.format,
                    r.oracle_rows.len() - r.oracle_rows_within_bound,
                    r.oracle_rows.len(),
                    r.max_error_over_bound
                ));
            }
        }
        for r in &self.adam {
            if r.values_differing != 0 {
                out.push(format!(
                    "adam {}: {} values differ from the CPU's bits",
                    r.n, r.values_differing
                ));
            }
        }
        for r in &self.hyper_adam {
            if !r.within_bound {
                out.push(format!(
                    "hyper-adam {}: sums outside the bound ({:.2})",
                    r.n, r.max_diff_over_bound
                ));
            }
        }
        out
    }

    /// The tables `tessera gpu-check` prints (Markdown).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "GPU: {} (PTX {})\n", self.device, self.ptx);
        let _ = writeln!(
            s,
            "| case | format | GPU ms | rows = CPU bits | max error vs oracle | max error / bound |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|");
        for r in &self.attention {
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {}/{} | {:.3e} | {:.3} |",
                r.case,
                r.format,
                r.gpu_ms,
                r.cpu_rows_bitwise_equal,
                r.cpu_rows,
                r.oracle.max_abs,
                r.max_error_over_bound
            );
        }
        let _ = writeln!(s, "\n| optimizer | parameters | GPU ms | check |");
        let _ = writeln!(s, "|---|---:|---:|---|");
        for r in &self.adam {
            let _ = writeln!(
                s,
                "| Adam step | {} | {:.3} | {} of {} values differ from the CPU |",
                r.n, r.gpu_ms, r.values_differing, r.values_compared
            );
        }
        for r in &self.hyper_adam {
            let _ = writeln!(
                s,
                "| hyper-Adam pass | {} | {:.3} | sums within bound: {} (diff/bound {:.3}) |",
                r.n, r.gpu_ms, r.within_bound, r.max_diff_over_bound
            );
        }
        s
    }
}

/// Writes a case's inputs (`q.npy`, `k.npy`, `v.npy` in `f32`, shaped as the kernels see them),
/// the sampled rows and the oracle's output on them for each element format
/// (`oracle-f32.npy`, `oracle-bf16.npy`: inputs rounded as that format sees them), into
/// `dir/<case>/` with a `case.json`.
pub fn write_inputs(
    dir: &Path,
    case: &AttentionCase,
    problem: &AttentionProblem,
    rows: &[usize],
) -> Result<()> {
    use crate::attention::ElementKind;
    let s = &case.shape;
    let out = dir.join(&case.name);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let qs = [s.batch, s.heads, s.q_len, s.head_dim];
    let kvs = [s.batch, s.kv_heads, s.kv_capacity, s.head_dim];
    crate::npy::write_f32(&out.join("q.npy"), &qs, &problem.q)?;
    crate::npy::write_f32(&out.join("k.npy"), &kvs, &problem.k)?;
    crate::npy::write_f32(&out.join("v.npy"), &kvs, &problem.v)?;
    for element in [ElementKind::F32, ElementKind::Bf16] {
        let exact: Vec<f64> = super::cases::parallel_map(rows, |&r| {
            let row = problem.row_inputs(r, element);
            tessera_reference::attention_row(&row.q, &row.keys, &row.values, s.scale as f64)
        })
        .concat();
        let name = format!("oracle-{}.npy", element.name());
        crate::npy::write_f64(&out.join(name), &[rows.len(), s.head_dim], &exact)?;
    }
    let meta = serde_json::json!({
        "case": case.name, "kind": case.kind, "batch": s.batch, "heads": s.heads,
        "kv_heads": s.kv_heads, "q_len": s.q_len, "kv_len": s.kv_len,
        "kv_capacity": s.kv_capacity, "head_dim": s.head_dim, "causal": s.causal,
        "scale": s.scale, "seed": case.seed, "rows": rows,
    });
    crate::fsutil::write_json(&out.join("case.json"), &meta)
}
