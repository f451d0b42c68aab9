//! `tessera gpu-check` with a GPU: every entry point of `kernels/ptx` on the cases of
//! [`super::cases`], compared with the CPU kernels (bit for bit: the GPU runs the same generic
//! code) and, for attention, with the exact oracle within the a-priori bound of each row.

use super::cases::{attention_cases, optimizer_sizes, spread_rows, AttentionCase};
use super::compare;
use super::launch::{AttentionFormat, Gpu, HYPER_BLOCKS, OPTIM_BLOCK};
use super::report::{AdamRecord, AttentionRecord, GpuReport, HyperRecord};
use crate::attention::AttentionProblem;
use crate::data::{self, InputDistribution};
use crate::progress::Progress;
use anyhow::{anyhow, Result};
use std::path::Path;
use tessera_kernels::optim::{adam_step_with, AdamConfig, HyperAdamTerms};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Accumulator, Bf16Mma, Element};

/// What the check is asked to do.
pub struct Settings<'a> {
    /// The PTX to load.
    pub ptx: &'a Path,
    /// CUDA device ordinal.
    pub device: usize,
    /// The short case list.
    pub quick: bool,
    /// Rows compared with the oracle per attention case.
    pub oracle_rows: usize,
    /// Rows compared with the CPU kernel per attention case (all when the problem is small).
    pub cpu_rows: usize,
    /// Timed launches per kernel (after one kept launch).
    pub reps: usize,
    /// Seed of every input.
    pub seed: u64,
    /// Where the attention inputs and oracle rows go as `.npy` (for scripts/gpu_compare.py).
    pub inputs_dir: Option<&'a Path>,
    /// Show a progress bar.
    pub progress: bool,
}

/// Runs every case; the report says what passed.
pub fn run(s: &Settings<'_>) -> Result<GpuReport> {
    let gpu = Gpu::open(s.device, s.ptx)?;
    let cases = attention_cases(s.quick, s.seed);
    let sizes = optimizer_sizes(s.quick);
    let total = (cases.len() * AttentionFormat::ALL.len() + 2 * sizes.len()) as u64;
    let bar = Progress::new(
        s.progress,
        "gpu-check",
        total,
        "{prefix} [{bar:30}] {pos}/{len} {msg}",
    )
    .map_err(|e| anyhow!("progress bar: {e}"))?;
    let mut report = GpuReport::new(&gpu.name, s.ptx);
    for case in &cases {
        let problem = AttentionProblem::seeded(case.shape, InputDistribution::Normal, case.seed)
            .map_err(|e| anyhow!("{}: {e}", case.name))?;
        let oracle_rows = spread_rows(problem.rows(), s.oracle_rows);
        if let Some(dir) = s.inputs_dir {
            super::report::write_inputs(dir, case, &problem, &oracle_rows)?;
        }
        for format in AttentionFormat::ALL {
            bar.set_message(format!("{} {}", case.name, format.name()));
            let record = match format {
                AttentionFormat::F32 => {
                    attention::<f32, f32, f32>(&gpu, s, case, &problem, format, |x| x, |x| x as f64)
                }
                AttentionFormat::Bf16 => attention::<bf16, f32, u16>(
                    &gpu,
                    s,
                    case,
                    &problem,
                    format,
                    |x| x.to_bits(),
                    |b| bf16::from_bits(b).to_f64(),
                ),
                AttentionFormat::Bf16Mma => attention::<bf16, Bf16Mma, u16>(
                    &gpu,
                    s,
                    case,
                    &problem,
                    format,
                    |x| x.to_bits(),
                    |b| bf16::from_bits(b).to_f64(),
                ),
            }?;
            report.attention.push(record);
            bar.inc(1);
        }
    }
    for &n in sizes {
        bar.set_message(format!("adam {n}"));
        report.adam.push(adam(&gpu, s, n)?);
        bar.inc(1);
        bar.set_message(format!("hyper-adam {n}"));
        report.hyper_adam.push(hyper_adam(&gpu, s, n)?);
        bar.inc(1);
    }
    bar.finish();
    Ok(report)
}

/// One attention case in one format on the GPU, then compared ([`compare::attention_record`]).
#[allow(clippy::too_many_arguments)]
fn attention<E: Element, A: Accumulator, T>(
    gpu: &Gpu,
    s: &Settings<'_>,
    case: &AttentionCase,
    problem: &AttentionProblem,
    format: AttentionFormat,
    bits: fn(E) -> T,
    widen: fn(T) -> f64,
) -> Result<AttentionRecord>
where
    T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Default + Clone + Copy,
{
    let inputs = compare::inputs::<E>(problem);
    let to_t = |x: &[E]| x.iter().map(|&x| bits(x)).collect::<Vec<T>>();
    let decode = case.kind == "decode";
    let reps = if problem.rows() * case.shape.kv_len > 1 << 26 {
        s.reps.min(3)
    } else {
        s.reps
    };
    let (q, k, v) = (to_t(&inputs.0), to_t(&inputs.1), to_t(&inputs.2));
    let run = gpu.attention(format, decode, &case.shape, case.tiles, (&q, &k, &v), reps)?;
    let out: Vec<f64> = run.out.iter().map(|&x| widen(x)).collect();
    let mut record = compare::attention_record::<E, A>(
        case,
        problem,
        format,
        &inputs,
        &out,
        (s.cpu_rows, s.oracle_rows),
    )?;
    record.gpu_ms = run.median_ms;
    record.timed_launches = reps;
    Ok(record)
}

/// Seeded optimizer state of `n` parameters: weights, gradients, first and second moments
/// (`v > 0`), the previous gradient.
fn optimizer_inputs(n: usize, seed: u64) -> [Vec<f32>; 5] {
    let t = |k: u64, s: f32| -> Vec<f32> {
        data::tensor(InputDistribution::Normal, n, seed.wrapping_add(k))
            .iter()
            .map(|x| x * s)
            .collect()
    };
    let prev = t(13, 0.1);
    let v = prev.iter().map(|g| g * g * 0.05 + 1e-6).collect();
    [t(10, 1.0), t(11, 0.1), t(12, 0.01), v, prev]
}

/// One Adam step (AdamW, step 3) on the GPU and on the CPU's generic backend: the same bits.
fn adam(gpu: &Gpu, s: &Settings<'_>, n: usize) -> Result<AdamRecord> {
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::DEFAULT
    };
    let [params, grads, m, _, v] = optimizer_inputs(n, s.seed);
    let run = gpu.adam_step(&cfg, 3, &params, &grads, &m, &v, s.reps)?;
    let (mut p, mut mc, mut vc) = (params, m, v);
    adam_step_with(Backend::Generic, &cfg, 3, &mut p, &grads, &mut mc, &mut vc)
        .map_err(|e| anyhow!("CPU adam: {e}"))?;
    let [gp, gm, gv] = &run.out;
    let differing = [(&p, gp), (&mc, gm), (&vc, gv)]
        .iter()
        .map(|(c, g)| {
            c.iter()
                .zip(g.iter())
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count()
        })
        .sum();
    Ok(AdamRecord {
        n,
        threads_per_block: OPTIM_BLOCK,
        gpu_ms: run.median_ms,
        timed_launches: s.reps,
        values_compared: 3 * n,
        values_differing: differing,
    })
}

/// Hyper-Adam's pass on the GPU (terms, block trees, second pass) against the same terms summed
/// one by one in `f64` on the CPU: both sums are within `n u64 Σ|t|` of the exact sum.
fn hyper_adam(gpu: &Gpu, s: &Settings<'_>, n: usize) -> Result<HyperRecord> {
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::DEFAULT
    };
    let k = 3;
    let [params, grads, m, v, prev] = optimizer_inputs(n, s.seed);
    let run = gpu.hyper_adam_sums(&cfg, k, [&grads, &m, &v, &prev, &params], s.reps)?;
    let pass = HyperAdamTerms::new(&cfg, k).map_err(|e| anyhow!("{e}"))?;
    let (mut cpu, mut magnitude) = ([0.0f64; 5], [0.0f64; 5]);
    for i in 0..n {
        for (j, t) in pass
            .terms(grads[i], m[i], v[i], prev[i], params[i])
            .into_iter()
            .enumerate()
        {
            cpu[j] += t as f64;
            magnitude[j] += (t as f64).abs();
        }
    }
    let u64_ = f64::EPSILON / 2.0;
    let mut within = true;
    let mut max_over = 0.0f64;
    for j in 0..5 {
        let bound = 2.0 * n as f64 * u64_ * magnitude[j];
        let diff = (run.out[j] - cpu[j]).abs();
        within &= diff <= bound;
        if bound > 0.0 {
            max_over = max_over.max(diff / bound);
        }
    }
    Ok(HyperRecord {
        n,
        blocks: HYPER_BLOCKS,
        threads_per_block: OPTIM_BLOCK,
        gpu_ms: run.median_ms,
        timed_launches: s.reps,
        sums_gpu: run.out,
        sums_cpu: cpu,
        within_bound: within,
        max_diff_over_bound: max_over,
        hypergradient_gpu: pass.finish(run.out),
        hypergradient_cpu: pass.finish(cpu),
    })
}
