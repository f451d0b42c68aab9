//! The comparisons of `tessera gpu-check`, apart from the GPU so that they are tested on any
//! machine: an attention output (the GPU's) against the CPU's `flash_attention_row`, bit for bit,
//! and against the exact oracle, each sampled row within its a-priori bound.

use super::cases::{parallel_map, spread_rows, AttentionCase, AttentionFormat};
use super::report::AttentionRecord;
use crate::attention::{AccumulatorKind, AttentionProblem, ElementKind};
use crate::metrics::{Deviation, Format};
use crate::tolerance;
use anyhow::{anyhow, Result};
use tessera_kernels::attention::{flash_attention_row, flash_row_scratch_len};
use tessera_kernels::{Accumulator, Element};

/// A problem's `q`, `k`, `v` in the element type `E` (rounded to nearest).
pub fn inputs<E: Element>(problem: &AttentionProblem) -> (Vec<E>, Vec<E>, Vec<E>) {
    let to_e = |x: &[f32]| x.iter().map(|&x| E::from_f32(x)).collect::<Vec<E>>();
    (to_e(&problem.q), to_e(&problem.k), to_e(&problem.v))
}

/// The element and accumulator of a format, as the oracle and the bounds name them.
pub fn kinds(format: AttentionFormat) -> (ElementKind, AccumulatorKind) {
    match format {
        AttentionFormat::F32 => (ElementKind::F32, AccumulatorKind::F32),
        AttentionFormat::Bf16 => (ElementKind::Bf16, AccumulatorKind::F32),
        AttentionFormat::Bf16Mma => (ElementKind::Bf16, AccumulatorKind::Bf16Mma),
    }
}

/// Compares `out` (the whole output of `case` in `format`, widened to `f64`) with the CPU's
/// `flash_attention_row` on `E`/`A` (every row of a small problem, else `cpu_rows` spread over
/// it) and with the exact oracle on `oracle_rows` spread rows. The record's time is left at 0.
pub fn attention_record<E: Element, A: Accumulator>(
    case: &AttentionCase,
    problem: &AttentionProblem,
    format: AttentionFormat,
    (q, k, v): &(Vec<E>, Vec<E>, Vec<E>),
    out: &[f64],
    (cpu_rows, oracle_rows): (usize, usize),
) -> Result<AttentionRecord> {
    let shape = &case.shape;
    let d = shape.head_dim;
    let total = problem.rows();
    if out.len() != total * d {
        return Err(anyhow!(
            "{}: output of {} values, expected {}",
            case.name,
            out.len(),
            total * d
        ));
    }
    let row_of = |r: usize| &out[r * d..(r + 1) * d];

    let cpu_rows = if total * shape.kv_len <= 1 << 22 {
        (0..total).collect()
    } else {
        spread_rows(total, cpu_rows)
    };
    let len = flash_row_scratch_len(shape, case.tiles).map_err(|e| anyhow!("{e}"))?;
    let mut scratch = vec![A::ZERO; len];
    let mut cpu = vec![E::from_f32(0.0); d];
    let (mut equal, mut max_diff) = (0, 0.0f64);
    for &r in &cpu_rows {
        let (bh, row) = (r / shape.q_len, r % shape.q_len);
        flash_attention_row(shape, case.tiles, bh, row, q, k, v, &mut cpu, &mut scratch)
            .map_err(|e| anyhow!("{}: CPU row {r}: {e}", case.name))?;
        let g = row_of(r);
        equal += usize::from(
            cpu.iter()
                .zip(g)
                .all(|(c, g)| c.to_f64().to_bits() == g.to_bits()),
        );
        for (c, g) in cpu.iter().zip(g) {
            max_diff = max_diff.max((c.to_f64() - g).abs());
        }
    }

    let (element, accumulator) = kinds(format);
    let sampled = spread_rows(total, oracle_rows);
    let scale = shape.scale as f64;
    let block_k = Some(case.tiles.block_k.max(1));
    let (u, u_out) = (accumulator.unit_roundoff(), element.unit_roundoff());
    let exact: Vec<(Vec<f64>, f64)> = parallel_map(&sampled, |&r| {
        let row = problem.row_inputs(r, element);
        let exact = tessera_reference::attention_row(&row.q, &row.keys, &row.values, scale);
        let bound = tolerance::row_bound(&row.q, &row.keys, &row.values, scale, block_k, u, u_out);
        (exact, bound)
    });
    let fmt = if element == ElementKind::F32 {
        Format::F32
    } else {
        Format::Bf16
    };
    let mut deviation: Option<Deviation> = None;
    let (mut within, mut bound_max, mut over) = (0, 0.0f64, 0.0f64);
    for (&r, (exact, bound)) in sampled.iter().zip(&exact) {
        let dev = Deviation::measure(row_of(r), exact, fmt);
        within += usize::from(dev.mismatched_non_finite == 0 && dev.max_abs <= *bound);
        bound_max = bound_max.max(*bound);
        if *bound > 0.0 {
            over = over.max(dev.max_abs / bound);
        }
        deviation = Some(deviation.map_or(dev, |acc| acc.merge(dev)));
    }
    let deviation = deviation.ok_or_else(|| anyhow!("{}: no row sampled", case.name))?;
    Ok(AttentionRecord {
        case: case.name.clone(),
        kind: case.kind,
        format: format.name(),
        batch: shape.batch,
        heads: shape.heads,
        kv_heads: shape.kv_heads,
        q_len: shape.q_len,
        kv_len: shape.kv_len,
        kv_capacity: shape.kv_capacity,
        head_dim: d,
        causal: shape.causal,
        block_q: case.tiles.block_q,
        block_k: case.tiles.block_k,
        seed: case.seed,
        gpu_ms: 0.0,
        timed_launches: 0,
        cpu_rows: cpu_rows.len(),
        cpu_rows_bitwise_equal: equal,
        cpu_max_abs_diff: max_diff,
        oracle_rows: sampled,
        oracle: deviation,
        oracle_rows_within_bound: within,
        bound_max,
        max_error_over_bound: over,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::InputDistribution;
    use crate::gpu::cases::attention_cases;
    use crate::gpu::report::GpuReport;
    use tessera_kernels::attention::{flash_attention_with, flash_scratch_len};
    use tessera_kernels::simd::Backend;
    use tessera_kernels::{bf16, Bf16Mma};

    /// What a correct GPU writes: the CPU's whole generic call, widened.
    fn whole_call<E: Element, A: Accumulator>(
        case: &AttentionCase,
        x: &(Vec<E>, Vec<E>, Vec<E>),
    ) -> Vec<f64> {
        let mut out = vec![E::from_f32(f32::NAN); x.0.len()];
        let mut scratch = vec![A::ZERO; flash_scratch_len(&case.shape, case.tiles).unwrap()];
        flash_attention_with(
            Backend::Generic,
            &case.shape,
            case.tiles,
            &x.0,
            &x.1,
            &x.2,
            &mut out,
            &mut scratch,
        )
        .unwrap();
        out.iter().map(|x| x.to_f64()).collect()
    }

    fn check<E: Element, A: Accumulator>(format: AttentionFormat) {
        // The quick cases but the largest prefill (kept short for the test): 256, decode 128, 511.
        for case in attention_cases(true, 3)
            .into_iter()
            .filter(|c| c.name != "prefill-1024")
        {
            let problem =
                AttentionProblem::seeded(case.shape, InputDistribution::Normal, case.seed).unwrap();
            let x = inputs::<E>(&problem);
            let mut out = whole_call::<E, A>(&case, &x);
            let ok = attention_record::<E, A>(&case, &problem, format, &x, &out, (64, 8)).unwrap();
            assert_eq!(
                ok.cpu_rows,
                problem.rows(),
                "{}: every row of a small case",
                case.name
            );
            assert_eq!(
                ok.cpu_rows_bitwise_equal,
                ok.cpu_rows,
                "{} {}",
                case.name,
                format.name()
            );
            assert_eq!(
                ok.oracle_rows_within_bound,
                ok.oracle_rows.len(),
                "{} {}",
                case.name,
                format.name()
            );
            let mut report = GpuReport::new("test", std::path::Path::new("x.ptx"));
            report.attention.push(ok.clone());
            assert!(report.failures().is_empty());
            // One element of a sampled row off by a few times its bound: both checks fail.
            let r = ok.oracle_rows[ok.oracle_rows.len() / 2];
            out[r * case.shape.head_dim] += 4.0 * ok.bound_max;
            let bad = attention_record::<E, A>(&case, &problem, format, &x, &out, (64, 8)).unwrap();
            assert_eq!(bad.cpu_rows_bitwise_equal, bad.cpu_rows - 1);
            assert_eq!(bad.oracle_rows_within_bound, bad.oracle_rows.len() - 1);
            report.attention.push(bad);
            assert_eq!(report.failures().len(), 2, "{:?}", report.failures());
        }
    }

    #[test]
    fn a_correct_output_passes_and_a_wrong_element_fails_f32() {
        check::<f32, f32>(AttentionFormat::F32);
    }

    #[test]
    fn a_correct_output_passes_and_a_wrong_element_fails_bf16() {
        check::<bf16, f32>(AttentionFormat::Bf16);
        check::<bf16, Bf16Mma>(AttentionFormat::Bf16Mma);
    }
}
