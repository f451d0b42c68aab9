//! Property tests of the attention kernels against the exact oracle and against symmetries of
//! attention, over random shapes, tiles, masks, GQA and decode.
//!
//! Every error is compared with the a-priori bound of `tessera_harness::tolerance` (one bound per
//! output row, computed from the row's own data), never with a hand-picked number. Outputs come
//! from `attention::run`, which pre-fills them with NaN, so an element a kernel forgot to write
//! fails the comparison.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tessera_harness::attention::{
    AccumulatorKind, AttentionProblem, ElementKind, Kernel, KernelConfig,
};
use tessera_harness::data::InputDistribution;
use tessera_harness::tolerance::{self, F64_ACCUMULATOR_REL, SYMMETRY_BOUND_FACTOR};
use tessera_kernels::attention::{AttentionShape, FlashTiles};
use tessera_kernels::simd::{available_backends, Backend};

/// A random problem and flash tiling: batch ≤ 2, kv_heads ≤ 3 with groups ≤ 3, q_len ≤ 12,
/// kv_len ≤ `max_kv` (decode when it exceeds q_len; fully masked causal rows when below),
/// head_dim ≤ `max_d`, spare KV-cache capacity ≤ 2 rows, tiles up to 9 × 17.
fn problems(max_kv: usize, max_d: usize) -> impl Strategy<Value = (AttentionProblem, FlashTiles)> {
    (
        (1..=2usize, 1..=3usize, 1..=3usize, 1..=12usize, 1..=max_kv),
        (
            1..=max_d,
            0..=2usize,
            any::<bool>(),
            1..=9usize,
            1..=17usize,
        ),
        (any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (batch, kv_heads, group, q_len, kv_len),
                (d, spare, causal, bq, bk),
                (outliers, seed),
            )| {
                let shape = AttentionShape::new(batch, kv_heads * group, q_len, kv_len, d)
                    .with_kv_heads(kv_heads)
                    .with_kv_capacity(kv_len + spare)
                    .with_causal(causal);
                let dist = if outliers {
                    InputDistribution::Outliers
                } else {
                    InputDistribution::Normal
                };
                let problem = AttentionProblem::seeded(shape, dist, seed).expect("valid shape");
                (problem, FlashTiles::new(bq, bk))
            },
        )
}

fn config(kernel: Kernel, tiles: FlashTiles) -> KernelConfig {
    match kernel {
        Kernel::Flash => KernelConfig::flash(tiles),
        Kernel::Baseline => KernelConfig::baseline(),
    }
}

/// The f32-accumulator configurations to test: both kernels, f32 and bf16 elements, every
/// backend this machine has.
fn production_configs(tiles: FlashTiles) -> Vec<KernelConfig> {
    let mut configs = Vec::new();
    for backend in available_backends() {
        for kernel in [Kernel::Flash, Kernel::Baseline] {
            for element in [ElementKind::F32, ElementKind::Bf16] {
                configs.push(
                    config(kernel, tiles)
                        .with_element(element)
                        .with_backend(backend),
                );
            }
        }
    }
    configs
}

/// Largest `|a − b|` over a slice; NaN if any difference is NaN (so NaN never passes a `<=`).
fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0, |m: f64, (x, y)| {
        let e = (x - y).abs();
        if m.is_nan() || e.is_nan() {
            f64::NAN
        } else {
            m.max(e)
        }
    })
}

/// Checks every row of `out` against `exact` under `factor` times the row's bound for `config`.
fn within_bounds(
    problem: &AttentionProblem,
    config: &KernelConfig,
    out: &[f64],
    exact: &[f64],
    factor: f64,
    what: &str,
) -> Result<(), TestCaseError> {
    let d = problem.shape.head_dim;
    prop_assert_eq!(out.len(), exact.len());
    for (row, bound) in problem.row_bounds(config).into_iter().enumerate() {
        let span = row * d..(row + 1) * d;
        let err = max_abs_diff(&out[span.clone()], &exact[span]);
        prop_assert!(
            err <= factor * bound,
            "{}: {:?} row {} error {:e} > {} x bound {:e}\nshape {:?}",
            what,
            config,
            row,
            err,
            factor,
            bound,
            problem.shape
        );
    }
    Ok(())
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// Flash and baseline, f32 and bf16 elements, every backend: each within its bound of the
    /// exact result on the same (rounded) inputs, hence within the sum of bounds of each other.
    #[test]
    fn kernels_stay_within_the_bound_of_the_oracle((problem, tiles) in problems(40, 24)) {
        for element in [ElementKind::F32, ElementKind::Bf16] {
            let exact = problem.reference(element);
            let mut flash_baseline = Vec::new();
            for cfg in production_configs(tiles).into_iter().filter(|c| c.element == element) {
                let out = problem.run(&cfg).expect("valid problem");
                within_bounds(&problem, &cfg, &out, &exact, 1.0, "vs oracle")?;
                if cfg.backend == Backend::Generic {
                    flash_baseline.push((cfg, out));
                }
            }
            if let [(f, flash), (b, baseline)] = &flash_baseline[..] {
                let (fb, bb) = (problem.row_bounds(f), problem.row_bounds(b));
                let d = problem.shape.head_dim;
                for row in 0..problem.rows() {
                    let span = row * d..(row + 1) * d;
                    let err = max_abs_diff(&flash[span.clone()], &baseline[span]);
                    prop_assert!(err <= fb[row] + bb[row], "flash vs baseline row {}", row);
                }
            }
        }
    }

    /// Permuting the key rows and value rows together leaves the exact result unchanged, so the
    /// two outputs are each within the bound of it: within twice the bound of each other.
    #[test]
    fn key_value_permutation_changes_output_only_within_the_bound(
        (problem, tiles) in problems(40, 24),
        rotation in any::<usize>(),
        stride_seed in any::<usize>(),
    ) {
        let mut problem = problem;
        problem.shape.causal = false;
        let s = problem.shape;
        let (n, d) = (s.kv_len, s.head_dim);
        let rotation = rotation % n;
        // A permutation of 0..n: j -> (stride·j + rotation) mod n with stride coprime to n.
        let stride = (1..=n).cycle().skip(stride_seed % n).find(|&a| gcd(a, n) == 1).unwrap_or(1);
        let mut permuted = problem.clone();
        for head in 0..s.batch * s.kv_heads {
            let base = head * s.kv_capacity * d;
            for j in 0..n {
                let to = base + ((stride * j + rotation) % n) * d;
                let from = base + j * d;
                permuted.k[to..to + d].copy_from_slice(&problem.k[from..from + d]);
                permuted.v[to..to + d].copy_from_slice(&problem.v[from..from + d]);
            }
        }
        for cfg in production_configs(tiles) {
            let a = problem.run(&cfg).expect("run");
            let b = permuted.run(&cfg).expect("run permuted");
            within_bounds(&problem, &cfg, &b, &a, SYMMETRY_BOUND_FACTOR, "permuted")?;
        }
    }

    /// With a causal mask a row reads nothing after its own position: rewriting every key and
    /// value from some position on leaves the rows that cannot see it bit for bit the same, for
    /// every accumulator, element and backend.
    #[test]
    fn causal_rows_ignore_future_keys(
        (problem, tiles) in problems(40, 16),
        cut_seed in any::<usize>(),
        junk_seed in any::<u64>(),
    ) {
        let mut problem = problem;
        problem.shape.causal = true;
        let s = problem.shape;
        let cut = cut_seed % (s.kv_len + 1);
        let mut changed = problem.clone();
        let junk = tessera_harness::data::tensor(InputDistribution::Outliers, changed.k.len(), junk_seed);
        for head in 0..s.batch * s.kv_heads {
            let start = (head * s.kv_capacity + cut) * s.head_dim;
            let end = (head * s.kv_capacity + s.kv_len) * s.head_dim;
            changed.k[start..end].copy_from_slice(&junk[start..end]);
            changed.v[start..end].iter_mut().zip(&junk[start..end]).for_each(|(v, j)| *v = -3.0 * j);
        }
        let mut configs = production_configs(tiles);
        for accumulator in AccumulatorKind::ALL {
            for kernel in [Kernel::Flash, Kernel::Baseline] {
                configs.push(config(kernel, tiles).with_accumulator(accumulator).with_backend(Backend::Generic));
            }
        }
        let d = s.head_dim;
        for cfg in configs {
            let a = problem.run(&cfg).expect("run");
            let b = changed.run(&cfg).expect("run changed");
            for row in 0..problem.rows() {
                if s.visible_keys(row % s.q_len) > cut {
                    continue;
                }
                let span = row * d..(row + 1) * d;
                let (x, y) = (&a[span.clone()], &b[span]);
                prop_assert!(
                    x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{:?}: row {} (sees {} keys, cut {}) changed", cfg, row, s.visible_keys(row % s.q_len), cut
                );
            }
        }
    }

    /// Grouped-query attention is multi-head attention with each K/V head repeated for its group:
    /// the outputs are bit-equal for every configuration.
    #[test]
    fn gqa_equals_mha_with_repeated_kv_heads((problem, tiles) in problems(24, 16)) {
        let s = problem.shape;
        let group = s.heads / s.kv_heads;
        let head_len = s.kv_capacity * s.head_dim;
        let repeat = |x: &[f32]| -> Vec<f32> {
            x.chunks_exact(head_len)
                .flat_map(|head| std::iter::repeat_n(head, group).flatten().copied())
                .collect()
        };
        let mha = AttentionProblem::new(
            s.with_kv_heads(s.heads),
            problem.q.clone(),
            repeat(&problem.k),
            repeat(&problem.v),
        )
        .expect("valid MHA problem");
        let mut configs = production_configs(tiles);
        for accumulator in [AccumulatorKind::F64, AccumulatorKind::Bf16Mma, AccumulatorKind::F16Acc] {
            for kernel in [Kernel::Flash, Kernel::Baseline] {
                configs.push(config(kernel, tiles).with_accumulator(accumulator).with_backend(Backend::Generic));
            }
        }
        for cfg in configs {
            let a = problem.run(&cfg).expect("run GQA");
            let b = mha.run(&cfg).expect("run MHA");
            prop_assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{:?}: GQA and MHA differ", cfg
            );
        }
    }

    /// Every element of the output is written, by every kernel with every element type and
    /// accumulator: outputs start as NaN and finite inputs must give finite outputs.
    #[test]
    fn every_output_element_is_written((problem, tiles) in problems(24, 16)) {
        let mut configs = production_configs(tiles);
        for accumulator in AccumulatorKind::ALL {
            for element in ElementKind::ALL {
                for kernel in [Kernel::Flash, Kernel::Baseline] {
                    configs.push(
                        config(kernel, tiles)
                            .with_element(element)
                            .with_accumulator(accumulator)
                            .with_backend(Backend::Generic),
                    );
                }
            }
        }
        for cfg in configs {
            let out = problem.run(&cfg).expect("run");
            prop_assert_eq!(out.len(), problem.q.len());
            prop_assert!(out.iter().all(|x| x.is_finite()), "{:?} left a NaN", cfg);
        }
    }
}

proptest! {
    #![proptest_config(cases(32))]

    /// The f64 accumulator with f64 elements agrees with the oracle to a few f64 ULPs of the
    /// largest value, and within its own a-priori bound (u = 2^-53).
    #[test]
    fn f64_accumulator_matches_the_oracle((problem, tiles) in problems(40, 24)) {
        let mut problem = problem;
        problem.round_to_bf16(); // keeps the standard-normal inputs, with short significands
        let exact = problem.reference(ElementKind::F64);
        let d = problem.shape.head_dim;
        for kernel in [Kernel::Flash, Kernel::Baseline] {
            let cfg = config(kernel, tiles)
                .with_element(ElementKind::F64)
                .with_accumulator(AccumulatorKind::F64);
            let out = problem.run(&cfg).expect("run f64");
            within_bounds(&problem, &cfg, &out, &exact, 1.0, "f64")?;
            for row in 0..problem.rows() {
                let inputs = problem.row_inputs(row, ElementKind::F64);
                let v_max = inputs.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let span = row * d..(row + 1) * d;
                let err = max_abs_diff(&out[span.clone()], &exact[span]);
                prop_assert!(
                    err <= F64_ACCUMULATOR_REL * v_max,
                    "{:?} row {}: {:e} > {:e} x {:e}", kernel, row, err, F64_ACCUMULATOR_REL, v_max
                );
            }
        }
    }

    /// The emulated low-precision accumulators stay within the same bound with their own unit
    /// roundoff (`2^-8` for bf16, `2^-11` for fp16), for f32 and bf16 elements. Short rows and
    /// small head dims keep the bf16 bound below the trivial `2·max|v|`.
    #[test]
    fn emulated_accumulators_stay_within_their_bound((problem, tiles) in problems(24, 8)) {
        let mut problem = problem;
        problem.round_to_bf16();
        let exact = problem.reference(ElementKind::F32);
        for accumulator in [
            AccumulatorKind::Bf16Mma,
            AccumulatorKind::F16Mma,
            AccumulatorKind::Bf16Acc,
            AccumulatorKind::F16Acc,
        ] {
            for kernel in [Kernel::Flash, Kernel::Baseline] {
                for element in [ElementKind::F32, ElementKind::Bf16] {
                    let cfg = config(kernel, tiles)
                        .with_element(element)
                        .with_accumulator(accumulator);
                    let out = problem.run(&cfg).expect("run emulated");
                    within_bounds(&problem, &cfg, &out, &exact, 1.0, accumulator.name())?;
                }
            }
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The bound is not vacuous where the tests rely on it: for the f32 kernels on the generated
/// problems it is far below the trivial `2·max|v|`, so the oracle comparisons above can fail.
#[test]
fn bounds_are_tight_enough_to_fail() {
    let shape = AttentionShape::new(1, 2, 12, 40, 24).with_causal(true);
    let p = AttentionProblem::seeded(shape, InputDistribution::Outliers, 5).unwrap();
    for cfg in [
        KernelConfig::flash(FlashTiles::new(3, 1)),
        KernelConfig::baseline(),
    ] {
        for (row, bound) in p.row_bounds(&cfg).into_iter().enumerate() {
            let v_max = p
                .row_inputs(row, ElementKind::F32)
                .values
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                bound < 1e-3 * v_max,
                "row {row}: bound {bound:e}, max|v| {v_max:e}"
            );
        }
    }
    // And the emulated bf16 bound for short rows is below 2·max|v|.
    let shape = AttentionShape::new(1, 1, 4, 8, 4);
    let p = AttentionProblem::seeded(shape, InputDistribution::Normal, 9).unwrap();
    let cfg = KernelConfig::flash(FlashTiles::new(2, 3)).with_accumulator(AccumulatorKind::Bf16Mma);
    for (row, bound) in p.row_bounds(&cfg).into_iter().enumerate() {
        let values = p.row_inputs(row, ElementKind::F32).values;
        let v_max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            bound < 2.0 * v_max,
            "row {row}: bound {bound:e}, max|v| {v_max:e}"
        );
    }
    assert!(tolerance::gamma(8 + 3, tolerance::U_BF16) < 0.05);
}
