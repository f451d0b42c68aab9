//! Every SIMD backend the machine has, against the generic backend and against each other.
//!
//! - Each available backend runs `flash_attention_with` and `baseline_attention_with` on random
//!   shapes (batch, GQA, `q_len ≠ kv_len` down to 1, head dims that are and are not multiples of
//!   16, causal or not, random tiles), f32 and bf16 elements, into outputs pre-filled with NaN.
//! - Its output must be within [`row_tolerance`] of the generic backend's, row by row.
//! - Every pair of SIMD backends must agree bit for bit (they share one summation order and one
//!   exp), except `avx512bf16` on bf16 elements, whose dot products (and flash's `P·V`) are
//!   `vdpbf16ps`'s, in pairs, not in the canonical order.
//! - [`every_supported_backend_is_exercised`] fails if a backend this CPU supports was not
//!   available or not run, checked against an independent `is_x86_feature_detected!` probe, and
//!   if a backend named in `TESSERA_REQUIRE_BACKENDS` (comma-separated names, e.g.
//!   `avx2,avx512,avx512bf16`) is missing.

mod backend_probe;

use backend_probe::{probed_backends, required_backends};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::sync::Mutex;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_harness::precision::round_bf16;
use tessera_harness::tolerance::{gamma, key_tiles, pair_flush_bound, U_F32};
use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles,
};
use tessera_kernels::simd::{available_backends, Backend};
use tessera_kernels::{bf16, Element, Error};

/// The backends that ran and were compared, by any test in this binary.
static EXERCISED: Mutex<Vec<Backend>> = Mutex::new(Vec::new());

fn record(backend: Backend) {
    let mut seen = EXERCISED.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&backend) {
        seen.push(backend);
    }
}

fn exercised() -> Vec<Backend> {
    EXERCISED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Algorithm {
    Flash,
    Baseline,
}

/// One problem: a shape, flash tiles and the seeded inputs' distribution.
#[derive(Clone, Copy, Debug)]
struct Case {
    shape: AttentionShape,
    tiles: FlashTiles,
    dist: InputDistribution,
    seed: u64,
}

/// Head dims: 1, the tails-only 7, a whole chunk, chunks plus tails, the common 64 and 80, or any.
fn head_dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(1usize),
        Just(7),
        Just(16),
        Just(33),
        Just(64),
        Just(80),
        1..=96usize
    ]
}

/// batch ≤ 2, kv_heads ≤ 3 with GQA groups ≤ 3, q_len ≤ 24 (often 1: decode), kv_len ≤ 48 (0 and
/// below q_len included: fully masked causal rows), spare KV capacity ≤ 3, tiles ≤ 40 × 80.
fn cases() -> impl Strategy<Value = Case> {
    (
        (1..=2usize, 1..=3usize, 1..=3usize),
        (
            prop_oneof![Just(1usize), 1..=24usize],
            0..=48usize,
            head_dim(),
        ),
        (any::<bool>(), 0..=3usize, 1..=40usize, 1..=80usize),
        (any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |((batch, kv_heads, group), (q_len, kv_len, d), (causal, spare, bq, bk), (o, seed))| {
                Case {
                    shape: AttentionShape::new(batch, kv_heads * group, q_len, kv_len, d)
                        .with_kv_heads(kv_heads)
                        .with_causal(causal)
                        .with_kv_capacity(kv_len + spare),
                    tiles: FlashTiles::new(bq, bk),
                    dist: if o {
                        InputDistribution::Outliers
                    } else {
                        InputDistribution::Normal
                    },
                    seed,
                }
            },
        )
}

/// The case's inputs, exactly representable in `E` (bf16 cases are rounded to bf16 first).
fn inputs<E: Element>(case: &Case) -> [Vec<E>; 3] {
    let (q_len, kv_len) = case
        .shape
        .validate()
        .expect("the strategy builds valid shapes");
    [(q_len, 0), (kv_len, 1), (kv_len, 2)].map(|(len, k)| {
        let mut x = tensor(case.dist, len, case.seed.wrapping_add(k));
        if E::PRECISION < 24 {
            round_bf16(&mut x);
        }
        x.into_iter().map(E::from_f32).collect()
    })
}

/// Runs one algorithm on one backend into an output pre-filled with NaN.
fn run<E: Element>(
    algorithm: Algorithm,
    backend: Backend,
    case: &Case,
    [q, k, v]: &[Vec<E>; 3],
) -> Result<Vec<E>, Error> {
    let mut out = vec![E::from_f32(f32::NAN); q.len()];
    match algorithm {
        Algorithm::Flash => {
            let mut scratch = vec![0.0f32; flash_scratch_len(&case.shape, case.tiles)?];
            flash_attention_with(
                backend,
                &case.shape,
                case.tiles,
                q,
                k,
                v,
                &mut out,
                &mut scratch,
            )?;
        }
        Algorithm::Baseline => {
            let mut scratch = vec![0.0f32; baseline_scratch_len(&case.shape)?];
            baseline_attention_with(backend, &case.shape, q, k, v, &mut out, &mut scratch)?;
        }
    }
    Ok(out)
}

/// How far a SIMD backend's output row may be from the generic backend's, absolutely.
///
/// Both backends run the same algorithm in f32 (`u = 2^-24`); they differ only in the order and
/// fusion of roundings and in `exp`. Each deviates from the exact result by at most the
/// first-order bound below, so their distance is at most its sum over the two. With, for the
/// row's `n` visible keys, exact logits `s_j`, max `m`, softmax weights `w_j`, `P_j = scale·Σ_i
/// |q_i k_ji|`, `V = max |v_ji|`, `T` key tiles (1 for baseline), `γ(k) = k·u/(1 − k·u)`:
///
/// ```text
/// tol = 2V·Σ_j w_j·[2·γ(d + 5)·P_j + 2u·(m − s_j)]     logits, through the softmax
///     + 2V·6u + 2V·n·3·2^-149                            exp: 1 ulp (libm) + 2 ulp (SIMD)
///     + 4V·γ(n + T) + 8u·(T − 1)·V + 4u·V                sums; flash rescalings; divisions
///     (+ one bf16 ulp of the larger output, for bf16 elements)
/// ```
///
/// - **Logits.** A dot product of `d` products has error `≤ γ(k)·Σ|q_i k_i|` for `k` roundings
///   on any path from a product to the result: `d` for the generic loop, `⌈d/16⌉ + 4` for the
///   16-lane FMA chains and their 4-level tree, `2⌈d/32⌉ + 4` for `vdpbf16ps`; `d + 5` covers
///   each, with the scale's rounding. Moving logit `j` by `δ_j` moves the output by
///   `Σ_j w_j δ_j (v_j − o)` (first order), at most `2V·Σ_j w_j |δ_j|`: the tolerance is
///   linear in `d`, weighted by how much each key matters. Rounding `s_j − m` adds a relative
///   `u·(m − s_j)` to `p_j`, for each backend.
/// - **exp.** A relative error `e` on every `p_j` moves the output by at most `2V·e`; one ulp is
///   at most `2u` relative, plus an absolute `2^-149` per ulp for subnormal results.
/// - **Sums** of `n` terms plus one per tile (`l` and `Σ p_j v_j`, relative to values bounded by
///   `V` after the division): `γ(n + T)` each, two sums, two backends — linear in `n`.
/// - **Rescaling** (flash): two roundings on the ratio per extra tile, `2u` each, per backend.
/// - **Divisions** (`p/l` or `acc/l`) and the store: `u·V` each, two per backend.
/// - **bf16 output**: both results are rounded to bf16 separately; values within `tol` of each
///   other round to values within `tol` plus one bf16 ulp.
/// - **bf16 probabilities** (flash on bf16 elements, `p_rounded`): each backend rounds its `p_j`
///   to bf16 before `P·V` (FlashAttention-2's rule). Two `p_j` a few f32 ulps apart can round to
///   neighbouring bf16 values, one bf16 ulp (at most `2^-7·p_j`) apart, so the outputs may differ
///   by up to `2^-7·Σ_j (p_j / l)·max_i |v_ji|`.
/// - **bf16 `P·V` in pairs** (flash on bf16 elements on `avx512bf16`, `pairs`): `vdpbf16ps`
///   adds the same `n` exact products in another order (within the sums' term) and flushes
///   subnormals to zero: [`pair_flush_bound`] more.
///
/// Second-order terms (products of two roundoffs) are dropped; they are below `10^-10·V` here.
fn row_tolerance(
    s: &AttentionShape,
    block_k: Option<usize>,
    f: &[Vec<f64>; 3],
    bh: usize,
    row: usize,
    p_rounded: bool,
    pairs: bool,
) -> f64 {
    let d = s.head_dim;
    let n = s.visible_keys(row);
    if n == 0 {
        return 0.0;
    }
    let (b, h) = (bh / s.heads, bh % s.heads);
    let kv_head = b * s.kv_heads + h / (s.heads / s.kv_heads);
    let q = &f[0][(bh * s.q_len + row) * d..][..d];
    let keys = &f[1][kv_head * s.kv_capacity * d..][..n * d];
    let values = &f[2][kv_head * s.kv_capacity * d..][..n * d];
    let scale = s.scale as f64;
    let logits: Vec<f64> = keys
        .chunks_exact(d)
        .map(|k| scale * q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>())
        .collect();
    let magnitudes: Vec<f64> = keys
        .chunks_exact(d)
        .map(|k| scale * q.iter().zip(k).map(|(a, b)| (a * b).abs()).sum::<f64>())
        .collect();
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = logits.iter().map(|s| (s - m).exp()).collect();
    let l: f64 = p.iter().sum();
    let v_max = values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let u = U_F32;
    let logit_term: f64 = p
        .iter()
        .zip(&logits)
        .zip(&magnitudes)
        .map(|((pj, sj), pm)| pj / l * (2.0 * gamma(d + 5, u) * pm + 2.0 * u * (m - sj)))
        .sum();
    let tiles = key_tiles(n, block_k);
    let exp_term = 6.0 * u + n as f64 * 3.0 * 2f64.powi(-149);
    let p_term = if p_rounded {
        2f64.powi(-7)
            * p.iter()
                .zip(values.chunks_exact(d))
                .map(|(pj, v)| pj / l * v.iter().fold(0.0f64, |a, x| a.max(x.abs())))
                .sum::<f64>()
    } else {
        0.0
    };
    let flush_term = if pairs {
        pair_flush_bound(n, tiles, v_max)
    } else {
        0.0
    };
    2.0 * v_max * (logit_term + exp_term)
        + 4.0 * v_max * gamma(n + tiles, u)
        + 8.0 * u * (tiles - 1) as f64 * v_max
        + 4.0 * u * v_max
        + p_term
        + flush_term
}

/// One bf16 ulp at `x`: `2^(e − 7)` for `2^e ≤ |x| < 2^(e+1)`.
fn bf16_ulp(x: f64) -> f64 {
    if x == 0.0 {
        return 2f64.powi(-133);
    }
    2f64.powi(x.abs().log2().floor() as i32 - 7)
}

/// Runs `case` on every available backend and checks it as the module docs say.
fn check_case<E: Element>(algorithm: Algorithm, case: &Case) -> Result<(), TestCaseError> {
    let data = inputs::<E>(case);
    let wide = data
        .each_ref()
        .map(|x| x.iter().map(|e| e.to_f64()).collect::<Vec<f64>>());
    let block_k = match algorithm {
        Algorithm::Flash => Some(case.tiles.block_k),
        Algorithm::Baseline => None,
    };
    let generic = run(algorithm, Backend::Generic, case, &data)
        .map_err(|e| TestCaseError::fail(format!("generic failed: {e}")))?;
    prop_assert!(
        generic.iter().all(|x| x.to_f64().is_finite()),
        "generic left a non-finite output for finite inputs"
    );
    record(Backend::Generic);

    let d = case.shape.head_dim;
    let rows = case.shape.q_len;
    let mut simd: Vec<(Backend, Vec<E>)> = Vec::new();
    for backend in available_backends().filter(|&b| b != Backend::Generic) {
        let out = run(algorithm, backend, case, &data)
            .map_err(|e| TestCaseError::fail(format!("{} failed: {e}", backend.name())))?;
        for (r, (got, want)) in out.chunks_exact(d).zip(generic.chunks_exact(d)).enumerate() {
            let (bh, row) = (r / rows, r % rows);
            let p_rounded = algorithm == Algorithm::Flash && E::PRECISION < 24;
            let pairs = p_rounded && backend == Backend::Avx512Bf16;
            let tol = row_tolerance(&case.shape, block_k, &wide, bh, row, p_rounded, pairs);
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let (g, w) = (g.to_f64(), w.to_f64());
                let limit = if E::PRECISION < 24 {
                    tol + bf16_ulp(g.abs().max(w.abs()))
                } else {
                    tol
                };
                prop_assert!(
                    (g - w).abs() <= limit,
                    "{} {:?} {}: row {r} element {i}: {g:e}, generic {w:e}, |diff| {:e} > tol {:e}",
                    backend.name(),
                    algorithm,
                    E::NAME,
                    (g - w).abs(),
                    limit
                );
            }
        }
        record(backend);
        simd.push((backend, out));
    }

    // Every pair of SIMD backends bit for bit (any NaN equals any NaN; none is expected here).
    for (i, (a, out_a)) in simd.iter().enumerate() {
        for (b, out_b) in &simd[i + 1..] {
            // avx512bf16 on bf16 elements sums in `vdpbf16ps`'s pairs (scores, and flash's P·V),
            // not in the canonical order: within the tolerance above, not bit-equal.
            let own_dots = [a, b].contains(&&Backend::Avx512Bf16) && E::PRECISION < 24;
            if own_dots {
                continue;
            }
            for (k, (x, y)) in out_a.iter().zip(out_b).enumerate() {
                let (x, y) = (x.to_f64(), y.to_f64());
                prop_assert!(
                    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                    "{} and {} differ at {k} ({:?} {}): {x:e} vs {y:e}",
                    a.name(),
                    b.name(),
                    algorithm,
                    E::NAME
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn flash_f32_every_backend_matches_generic(case in cases()) {
        check_case::<f32>(Algorithm::Flash, &case)?;
    }

    #[test]
    fn baseline_f32_every_backend_matches_generic(case in cases()) {
        check_case::<f32>(Algorithm::Baseline, &case)?;
    }

    #[test]
    fn flash_bf16_every_backend_matches_generic(case in cases()) {
        check_case::<bf16>(Algorithm::Flash, &case)?;
    }

    #[test]
    fn baseline_bf16_every_backend_matches_generic(case in cases()) {
        check_case::<bf16>(Algorithm::Baseline, &case)?;
    }
}

/// A few fixed cases that touch every code path (tails, groups, decode, causal, GQA).
fn fixed_cases() -> Vec<Case> {
    let shapes = [
        AttentionShape::new(1, 2, 17, 17, 33).with_causal(true),
        AttentionShape::new(2, 4, 1, 40, 80).with_kv_heads(2),
        AttentionShape::new(1, 3, 5, 9, 7)
            .with_kv_heads(1)
            .with_causal(true),
        AttentionShape::new(1, 1, 9, 70, 64),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, shape)| Case {
            shape,
            tiles: FlashTiles::new(4, 16),
            dist: InputDistribution::Outliers,
            seed: 100 + i as u64,
        })
        .collect()
}

#[test]
fn every_supported_backend_is_exercised() {
    // Run every available backend here too, so the check does not depend on test order.
    for case in fixed_cases() {
        for algorithm in [Algorithm::Flash, Algorithm::Baseline] {
            check_case::<f32>(algorithm, &case).unwrap();
            check_case::<bf16>(algorithm, &case).unwrap();
        }
    }
    let available: Vec<Backend> = available_backends().collect();
    let probed = probed_backends();
    let ran = exercised();
    eprintln!(
        "probed {:?}; available {:?}; exercised {:?}",
        probed.iter().map(|b| b.name()).collect::<Vec<_>>(),
        available.iter().map(|b| b.name()).collect::<Vec<_>>(),
        ran.iter().map(|b| b.name()).collect::<Vec<_>>()
    );
    for b in &probed {
        assert!(
            available.contains(b),
            "the CPU supports `{}` but the kernels do not offer it",
            b.name()
        );
    }
    for b in &available {
        assert!(
            probed.contains(b) || *b == Backend::Portable,
            "the kernels offer `{}` but the CPU probe says it is missing",
            b.name()
        );
        assert!(
            ran.contains(b),
            "`{}` is available but was not exercised",
            b.name()
        );
    }
    for backend in required_backends() {
        let name = backend.name();
        assert!(
            available.contains(&backend),
            "TESSERA_REQUIRE_BACKENDS requires `{name}`, which is not available here"
        );
        assert!(
            ran.contains(&backend),
            "TESSERA_REQUIRE_BACKENDS requires `{name}`, which was not exercised"
        );
    }
}

#[test]
fn unavailable_backends_are_refused() {
    let case = fixed_cases()[0];
    let data = inputs::<f32>(&case);
    for backend in Backend::ALL {
        if backend.is_available() {
            continue;
        }
        for algorithm in [Algorithm::Flash, Algorithm::Baseline] {
            assert_eq!(
                run(algorithm, backend, &case, &data),
                Err(Error::BackendUnavailable(backend)),
                "{} must be refused",
                backend.name()
            );
        }
    }
}

#[test]
fn auto_runs_the_best_backend() {
    let best = Backend::best();
    assert!(best.is_available());
    for case in fixed_cases() {
        let data = inputs::<bf16>(&case);
        let auto = run(Algorithm::Flash, Backend::Auto, &case, &data).unwrap();
        let chosen = run(Algorithm::Flash, best, &case, &data).unwrap();
        let bits = |x: &[bf16]| x.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&auto), bits(&chosen), "Auto must run {}", best.name());
    }
}
