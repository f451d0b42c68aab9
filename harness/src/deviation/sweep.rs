//! Running the plan: seeded inputs, exact reference rows, every kernel configuration, in parallel.

use super::plan::{Algorithm, Config, Model, Plan};
use crate::data::{self, InputDistribution};
use crate::metrics::Deviation;
use crate::progress::Progress;
use crate::tolerance::row_bound;
use anyhow::{ensure, Context};
use half::bf16;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{Accumulator, Bf16Acc, Bf16Mma, Bf16Ops, Element, F16Acc, F16Mma, F16Ops};

/// One measured configuration: the JSON record of the study.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// `baseline` or `flash`.
    pub algorithm: &'static str,
    /// Storage format (`bf16`, `fp16`, `f32`, `f64`).
    pub format: &'static str,
    /// Precision model (`fa2`, `fused`, `bf16-ops`, `fp16-ops`, `paper`, `every-op`, `f32`,
    /// `f64`; see [`Model`]).
    pub model: &'static str,
    /// Keys per row (N).
    pub seq_len: usize,
    /// Features per head (d).
    pub head_dim: usize,
    /// Query tile Br (null for baseline).
    pub block_q: Option<usize>,
    /// Key tile Bc (null for baseline).
    pub block_k: Option<usize>,
    /// The SRAM size (bytes) of the paper's default tiling the tiles come from, if they do.
    pub sram_bytes: Option<usize>,
    /// Input distribution.
    pub distribution: &'static str,
    /// Max |kernel − exact| over the sampled rows (the paper's metric).
    pub max_abs_dev: f64,
    /// Mean |kernel − exact|.
    pub mean_abs_dev: f64,
    /// Max relative deviation over non-zero exact values.
    pub max_rel_dev: f64,
    /// Max deviation in ULPs of the format.
    pub max_ulp: f64,
    /// The a-priori bound of docs/numerics.md (`tolerance::row_bound`), largest over the sampled
    /// rows, with the format's unit roundoff for every intermediate.
    pub bound: f64,
    /// Whether `max_abs_dev <= bound`.
    pub within_bound: bool,
    /// Online-softmax rescalings per row, `ceil(N / Bc) − 1` (0 for baseline).
    pub rescalings: usize,
    /// Sampled query rows.
    pub rows: usize,
    /// Input seed.
    pub seed: u64,
    /// Backend that ran the kernel.
    pub backend: &'static str,
}

/// Seeded inputs of one (distribution, head_dim, seq_len) group: `rows` queries and `seq_len`
/// keys and values, all bf16-exact.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    scale: f32,
}

type GroupKey = (InputDistribution, usize, usize);

fn group_seed(seed: u64, (dist, d, n): GroupKey) -> u64 {
    let tag = match dist {
        InputDistribution::Normal => 1u64,
        InputDistribution::Outliers => 2,
    };
    seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((d as u64) << 32) ^ (n as u64)
}

fn inputs(plan: &Plan, key: GroupKey) -> Inputs {
    let (dist, d, n) = key;
    let s = group_seed(plan.seed, key);
    let mut q = data::tensor(dist, plan.rows * d, s);
    let mut k = data::tensor(dist, n * d, s.wrapping_add(1));
    let mut v = data::tensor(dist, n * d, s.wrapping_add(2));
    for t in [&mut q, &mut k, &mut v] {
        crate::precision::round_bf16(t);
    }
    Inputs {
        q,
        k,
        v,
        scale: 1.0 / (d as f32).sqrt(),
    }
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Runs one kernel configuration; returns the output rows as `f64` and the backend used.
fn run_kernel<E: Element, A: Accumulator>(
    cfg: &Config,
    inp: &Inputs,
    rows: usize,
) -> anyhow::Result<(Vec<f64>, &'static str)> {
    let d = cfg.head_dim;
    let shape = AttentionShape::new(1, 1, rows, cfg.seq_len, d).with_scale(inp.scale);
    let conv = |x: &[f32]| -> Vec<E> { x.iter().map(|&v| E::from_f32(v)).collect() };
    let (q, k, v) = (conv(&inp.q), conv(&inp.k), conv(&inp.v));
    let mut out = vec![E::from_f32(f32::NAN); rows * d];
    // The f32 model is the production kernels where they ship (the best SIMD backend). Every
    // other model runs on the generic backend: the emulated accumulators have no other, and
    // `fa2`/`fused` are defined by their rounding rules, which the generic backend follows in a
    // fixed order (bit for bit, harness/tests/precision_models.rs), so their rows are the same on
    // every machine.
    let backend = if A::NAME == "f32" && E::NAME == "f32" {
        Backend::best()
    } else {
        Backend::Generic
    };
    let result = match (cfg.algorithm, cfg.block_q, cfg.block_k) {
        (Algorithm::Flash, Some(br), Some(bc)) => {
            let tiles = FlashTiles::new(br, bc);
            let len = flash_scratch_len(&shape, tiles)?;
            let mut scratch = vec![A::ZERO; len];
            flash_attention_with(backend, &shape, tiles, &q, &k, &v, &mut out, &mut scratch)
        }
        _ => {
            let len = baseline_scratch_len(&shape)?;
            let mut scratch = vec![A::ZERO; len];
            baseline_attention_with(backend, &shape, &q, &k, &v, &mut out, &mut scratch)
        }
    };
    result.with_context(|| format!("{cfg:?}"))?;
    Ok((out.iter().map(|x| x.to_f64()).collect(), backend.name()))
}

fn run_config(cfg: &Config, inp: &Inputs, rows: usize) -> anyhow::Result<(Vec<f64>, &'static str)> {
    // The inputs are bf16-exact, so `f32` elements hold them unchanged for the emulated models;
    // the models of real bf16 kernels take `bf16` tensors.
    match cfg.model {
        Model::Fa2 | Model::Fused => run_kernel::<bf16, f32>(cfg, inp, rows),
        Model::Bf16Ops => run_kernel::<bf16, Bf16Ops>(cfg, inp, rows),
        Model::Fp16Ops => run_kernel::<f32, F16Ops>(cfg, inp, rows),
        Model::PaperBf16 => run_kernel::<f32, Bf16Mma>(cfg, inp, rows),
        Model::PaperFp16 => run_kernel::<f32, F16Mma>(cfg, inp, rows),
        Model::EveryOpBf16 => run_kernel::<f32, Bf16Acc>(cfg, inp, rows),
        Model::EveryOpFp16 => run_kernel::<f32, F16Acc>(cfg, inp, rows),
        Model::F32 => run_kernel::<f32, f32>(cfg, inp, rows),
        Model::F64 => run_kernel::<f64, f64>(cfg, inp, rows),
    }
}

/// Runs `tasks` closures on all cores, in order of index, ticking `bar` after each.
fn parallel<T: Send>(count: usize, bar: &Progress, task: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count.max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let value = task(i);
                if let Ok(mut slots) = results.lock() {
                    slots[i] = Some(value);
                }
                bar.inc(1);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Runs the plan once per input seed, showing progress on stderr; returns one record per
/// configuration and seed.
pub fn run_plan(plan: &Plan, show_progress: bool) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    for i in 0..plan.seeds.max(1) {
        let one = Plan {
            seed: plan.seed.wrapping_add(i),
            ..plan.clone()
        };
        records.extend(run_seed(&one, show_progress)?);
    }
    Ok(records)
}

fn run_seed(plan: &Plan, show_progress: bool) -> anyhow::Result<Vec<Record>> {
    let started = Instant::now();
    let keys: Vec<GroupKey> = {
        let mut k: Vec<GroupKey> = plan
            .configs
            .iter()
            .map(|c| (c.distribution, c.head_dim, c.seq_len))
            .collect();
        k.sort_by_key(|&(dist, d, n)| (dist.name(), d, n));
        k.dedup();
        k
    };
    let groups: BTreeMap<(&'static str, usize, usize), Inputs> = keys
        .iter()
        .map(|&key| ((key.0.name(), key.1, key.2), inputs(plan, key)))
        .collect();

    // Exact rows first: they depend only on the inputs, not on the kernel configuration.
    let ref_tasks: Vec<((&'static str, usize, usize), usize)> = groups
        .keys()
        .flat_map(|&g| (0..plan.rows).map(move |r| (g, r)))
        .collect();
    let work: u64 = (ref_tasks.len() + plan.configs.len()) as u64;
    let bar = Progress::new(
        show_progress,
        "deviation",
        work,
        "{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}",
    )?;
    bar.set_message("oracle".into());
    let exact_rows = parallel(ref_tasks.len(), &bar, |i| {
        let (g, r) = ref_tasks[i];
        let inp = &groups[&g];
        let d = g.1;
        let q = widen(&inp.q[r * d..(r + 1) * d]);
        tessera_reference::attention_row(&q, &widen(&inp.k), &widen(&inp.v), inp.scale as f64)
    });
    let mut exact: BTreeMap<(&'static str, usize, usize), Vec<f64>> = BTreeMap::new();
    for ((g, _), row) in ref_tasks.iter().zip(exact_rows) {
        exact.entry(*g).or_default().extend(row);
    }

    bar.set_message("kernels".into());
    let results = parallel(plan.configs.len(), &bar, |i| {
        let cfg = &plan.configs[i];
        let g = (cfg.distribution.name(), cfg.head_dim, cfg.seq_len);
        let (out, backend) = run_config(cfg, &groups[&g], plan.rows)?;
        let inp = &groups[&g];
        let dev = Deviation::measure(&out, &exact[&g], cfg.model.ulp_format());
        let (u, u_out) = cfg.model.unit_roundoffs();
        let (k, v) = (widen(&inp.k), widen(&inp.v));
        let d = cfg.head_dim;
        let bound = (0..plan.rows)
            .map(|r| {
                let q = widen(&inp.q[r * d..(r + 1) * d]);
                row_bound(&q, &k, &v, inp.scale as f64, cfg.block_k, u, u_out)
            })
            .fold(0.0, f64::max);
        ensure!(
            dev.mismatched_non_finite == 0,
            "{cfg:?}: {} non-finite outputs",
            dev.mismatched_non_finite
        );
        Ok(Record {
            algorithm: cfg.algorithm.name(),
            format: cfg.model.format(),
            model: cfg.model.name(),
            seq_len: cfg.seq_len,
            head_dim: cfg.head_dim,
            block_q: cfg.block_q,
            block_k: cfg.block_k,
            sram_bytes: cfg.sram_bytes,
            distribution: cfg.distribution.name(),
            max_abs_dev: dev.max_abs,
            mean_abs_dev: dev.mean_abs,
            max_rel_dev: dev.max_rel,
            max_ulp: dev.max_ulp,
            bound,
            within_bound: dev.max_abs <= bound,
            rescalings: cfg.block_k.map_or(0, |bc| cfg.seq_len.div_ceil(bc) - 1),
            rows: plan.rows,
            seed: plan.seed,
            backend,
        })
    });
    bar.finish();
    if show_progress {
        eprintln!(
            "deviation: seed {}: {} configurations, {} exact rows in {:.1} s",
            plan.seed,
            plan.configs.len(),
            ref_tasks.len(),
            started.elapsed().as_secs_f64()
        );
    }
    results.into_iter().collect()
}
