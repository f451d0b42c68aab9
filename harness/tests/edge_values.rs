//! Edge values through the public kernel API, for every accumulator and both storage elements:
//! huge logits and values near the bf16/f32 limit stay finite, NaN reaches exactly the rows that
//! read it, fully masked rows are zeros, and every bad shape, length, tile, scale, scratch or
//! backend is an `Err` (never a panic).

use tessera_harness::tolerance::{key_tiles, output_magnitude_limit};
use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles, MAX_TILE,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Accumulator, Bf16Acc, Bf16Mma, Element, Error, F16Acc, F16Mma};

/// Runs `$check::<E, A>()` for every accumulator `A`.
macro_rules! for_each_accumulator {
    ($check:ident, $elem:ty) => {{
        $check::<$elem, f32>();
        $check::<$elem, f64>();
        $check::<$elem, Bf16Acc>();
        $check::<$elem, F16Acc>();
        $check::<$elem, Bf16Mma>();
        $check::<$elem, F16Mma>();
    }};
}

/// Flash with some tiles, or baseline.
#[derive(Clone, Copy, Debug)]
enum Algorithm {
    Flash(FlashTiles),
    Baseline,
}

/// Both algorithms; flash with one-key tiles (a rescaling per key), uneven tiles, and big tiles.
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Flash(FlashTiles::new(1, 1)),
    Algorithm::Flash(FlashTiles::new(3, 2)),
    Algorithm::Flash(FlashTiles::new(32, 64)),
    Algorithm::Baseline,
];

fn scratch_len(algorithm: Algorithm, shape: &AttentionShape) -> Result<usize, Error> {
    match algorithm {
        Algorithm::Flash(tiles) => flash_scratch_len(shape, tiles),
        Algorithm::Baseline => baseline_scratch_len(shape),
    }
}

#[allow(clippy::too_many_arguments)]
fn call<E: Element, A: Accumulator>(
    algorithm: Algorithm,
    backend: Backend,
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
    scratch: &mut [A],
) -> Result<(), Error> {
    match algorithm {
        Algorithm::Flash(tiles) => {
            flash_attention_with(backend, shape, tiles, q, k, v, out, scratch)
        }
        Algorithm::Baseline => baseline_attention_with(backend, shape, q, k, v, out, scratch),
    }
}

/// Runs a valid problem on the generic backend (the only one every accumulator has) with the
/// output pre-filled with NaN.
fn run<E: Element, A: Accumulator>(
    algorithm: Algorithm,
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
) -> Vec<E> {
    let mut out = vec![E::from_f32(f32::NAN); q.len()];
    let mut scratch = vec![A::ZERO; scratch_len(algorithm, shape).expect("scratch length")];
    call(
        algorithm,
        Backend::Generic,
        shape,
        q,
        k,
        v,
        &mut out,
        &mut scratch,
    )
    .unwrap_or_else(|e| panic!("{algorithm:?} {} on {shape:?}: {e}", A::NAME));
    out
}

fn elements<E: Element>(x: &[f32]) -> Vec<E> {
    x.iter().map(|&x| E::from_f32(x)).collect()
}

/// Deterministic values in about (-1.5, 1.5), none zero.
fn values(n: usize, salt: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = ((i as f32 * 0.7548 + salt).sin() * 1.7).fract() * 1.5;
            if x == 0.0 {
                0.25
            } else {
                x
            }
        })
        .collect()
}

fn shape_gqa(causal: bool) -> AttentionShape {
    // Query row i of 5 sees keys 0..=i+2 of 7 with the mask; heads {0,1} read KV head 0, {2,3} 1.
    AttentionShape::new(1, 4, 5, 7, 6)
        .with_kv_heads(2)
        .with_causal(causal)
        .with_kv_capacity(9)
}

// ---------------------------------------------------------------------------------------------
// Huge logits and extreme values.

/// q scaled by 1e30 so that logits reach ±1e30 (a few orders under f32's limit): no overflow.
/// Where the accumulator holds such logits with enough precision that rounding cannot reorder
/// the two largest, the output is exactly the value row of the largest logit (every other weight
/// is `exp(−1e29) = 0`).
fn huge_logits<E: Element, A: Accumulator>() {
    let mut exact_rows = 0;
    for causal in [false, true] {
        let shape = shape_gqa(causal);
        let (qn, kvn) = shape.validate().unwrap();
        let q: Vec<E> = elements(&values(qn, 0.1).iter().map(|x| x * 1e30).collect::<Vec<_>>());
        let (k, v): (Vec<E>, Vec<E>) = (elements(&values(kvn, 0.2)), elements(&values(kvn, 0.3)));
        for algorithm in ALGORITHMS {
            let out = run::<E, A>(algorithm, &shape, &q, &k, &v);
            let label = format!("{algorithm:?} {}/{} causal={causal}", E::NAME, A::NAME);
            assert!(
                out.iter().all(|x| x.to_f32().is_finite()),
                "{label}: non-finite output"
            );
            let d = shape.head_dim;
            for row in 0..shape.heads * shape.q_len {
                let (h, i) = (row / shape.q_len, row % shape.q_len);
                let kv = (h / 2) * shape.kv_capacity * d;
                let logits: Vec<f64> = (0..shape.visible_keys(i))
                    .map(|j| {
                        (0..d)
                            .map(|t| q[row * d + t].to_f64() * k[kv + j * d + t].to_f64())
                            .sum::<f64>()
                            * shape.scale as f64
                    })
                    .collect();
                let mut sorted = logits.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let best = logits.iter().position(|&s| s == sorted[0]).unwrap();
                let gap = sorted[0] - sorted.get(1).copied().unwrap_or(f64::NEG_INFINITY);
                let top = sorted[0].abs().max(sorted.get(1).map_or(0.0, |s| s.abs()));
                let representable = A::MAX.to_f64() > 4.0 * top;
                if representable && gap > 64.0 * A::UNIT_ROUNDOFF * top {
                    exact_rows += 1;
                    for t in 0..d {
                        let want: E = A::from_element(v[kv + best * d + t]).to_element();
                        assert_eq!(
                            out[row * d + t],
                            want,
                            "{label}: row {row} is not the value of its largest logit"
                        );
                    }
                }
            }
        }
    }
    // f32 and f64 hold ±1e30 with room to spare: there the exact check must have run.
    if A::UNIT_ROUNDOFF <= 2f64.powi(-24) {
        assert!(
            exact_rows > 20,
            "{}/{}: only {exact_rows} rows checked",
            E::NAME,
            A::NAME
        );
    }
}

#[test]
fn logits_of_1e30_do_not_overflow() {
    for_each_accumulator!(huge_logits, f32);
    for_each_accumulator!(huge_logits, bf16);
    for_each_accumulator!(huge_logits, f64);
}

/// ±3e38 (near the largest bf16 and f32) in q, k and v, signs mixed: logits overflow every
/// format and values sum past the limit, yet the output is finite. Accumulators whose range ends
/// below the values (fp16, 65504) cannot hold the values at all; for them only q and k are
/// extreme.
fn extremes<E: Element, A: Accumulator>() {
    let big = |salt: f32, n: usize| -> Vec<E> {
        let signs = values(n, salt);
        elements(
            &signs
                .iter()
                .map(|s| if *s > 0.0 { 3e38 } else { -3e38 })
                .collect::<Vec<_>>(),
        )
    };
    for causal in [false, true] {
        let shape = shape_gqa(causal);
        let (qn, kvn) = shape.validate().unwrap();
        let v_fits = A::MAX.to_f64() > 3.4e38;
        let v = if v_fits {
            big(0.3, kvn)
        } else {
            elements(&values(kvn, 0.3))
        };
        for (q, k) in [
            (big(0.1, qn), big(0.2, kvn)),
            (elements(&values(qn, 0.1)), big(0.2, kvn)),
            (big(0.1, qn), elements(&values(kvn, 0.2))),
        ] {
            for algorithm in ALGORITHMS {
                let out = run::<E, A>(algorithm, &shape, &q, &k, &v);
                let v_max = v.iter().fold(0.0f64, |m, x| m.max(x.to_f64().abs()));
                let (n, u_out) = (shape.kv_len, 2f64.powi(-(E::PRECISION as i32)));
                let tiles = match algorithm {
                    Algorithm::Flash(t) => key_tiles(n, Some(t.block_k)),
                    Algorithm::Baseline => 1,
                };
                let limit = output_magnitude_limit(v_max, n, tiles, A::UNIT_ROUNDOFF, u_out);
                assert!(
                    out.iter().all(|x| x.to_f64().abs() <= limit),
                    "{algorithm:?} {}/{} causal={causal}: output not finite or beyond {limit:e}",
                    E::NAME,
                    A::NAME,
                );
            }
        }
    }
}

#[test]
fn bf16_extremes_stay_finite() {
    for_each_accumulator!(extremes, f32);
    for_each_accumulator!(extremes, bf16);
}

// ---------------------------------------------------------------------------------------------
// NaN propagation.

/// Which output rows read `(kv_head, key)`: query heads of that group whose row sees the key.
fn readers(shape: &AttentionShape, kv_head: usize, key: usize) -> Vec<bool> {
    let group = shape.heads / shape.kv_heads;
    (0..shape.heads * shape.q_len)
        .map(|row| {
            let (h, i) = (row / shape.q_len, row % shape.q_len);
            h / group == kv_head && shape.visible_keys(i) > key
        })
        .collect()
}

/// Asserts that exactly the rows marked `nan` are NaN in every listed column, and everything
/// else is finite.
fn nan_pattern<E: Element>(out: &[E], d: usize, nan_rows: &[bool], columns: &[usize], what: &str) {
    for (row, (chunk, &is_nan)) in out.chunks_exact(d).zip(nan_rows).enumerate() {
        for (t, x) in chunk.iter().enumerate() {
            let x = x.to_f64();
            if is_nan && columns.contains(&t) {
                assert!(
                    x.is_nan(),
                    "{what}: row {row} column {t} should be NaN, is {x}"
                );
            } else {
                assert!(
                    x.is_finite(),
                    "{what}: row {row} column {t} should be finite, is {x}"
                );
            }
        }
    }
}

fn nan_propagation<E: Element, A: Accumulator>() {
    for causal in [false, true] {
        let shape = shape_gqa(causal);
        let (qn, kvn) = shape.validate().unwrap();
        let d = shape.head_dim;
        let (q, k, v): (Vec<E>, Vec<E>, Vec<E>) = (
            elements(&values(qn, 0.1)),
            elements(&values(kvn, 0.2)),
            elements(&values(kvn, 0.3)),
        );
        let nan = E::from_f32(f32::NAN);
        let all: Vec<usize> = (0..d).collect();
        let kv_row = |kv_head: usize, key: usize| (kv_head * shape.kv_capacity + key) * d;
        for algorithm in ALGORITHMS {
            let label = |what: &str| {
                format!(
                    "{what}, {algorithm:?} {}/{} causal={causal}",
                    E::NAME,
                    A::NAME
                )
            };
            // One NaN entry in query row 2 of head 1: that row only.
            let mut q_nan = q.clone();
            q_nan[(shape.q_len + 2) * d + 3] = nan;
            let rows: Vec<bool> = (0..shape.heads * shape.q_len)
                .map(|r| r == shape.q_len + 2)
                .collect();
            let out = run::<E, A>(algorithm, &shape, &q_nan, &k, &v);
            nan_pattern(&out, d, &rows, &all, &label("NaN in q"));
            // One NaN entry in key 3 of KV head 1: every row of heads 2, 3 that sees key 3.
            let mut k_nan = k.clone();
            k_nan[kv_row(1, 3) + 5] = nan;
            let out = run::<E, A>(algorithm, &shape, &q, &k_nan, &v);
            nan_pattern(&out, d, &readers(&shape, 1, 3), &all, &label("NaN in k"));
            // A whole NaN value row 4 of KV head 0: every row of heads 0, 1 that sees key 4.
            let mut v_nan = v.clone();
            v_nan[kv_row(0, 4)..kv_row(0, 5)].fill(nan);
            let out = run::<E, A>(algorithm, &shape, &q, &k, &v_nan);
            nan_pattern(&out, d, &readers(&shape, 0, 4), &all, &label("NaN v row"));
            // One NaN entry of a value row: the whole of every row that reads it, as the oracle
            // gives (a NaN input makes its row NaN, docs/numerics.md).
            let mut v_one = v.clone();
            v_one[kv_row(1, 0) + 2] = nan;
            let out = run::<E, A>(algorithm, &shape, &q, &k, &v_one);
            nan_pattern(&out, d, &readers(&shape, 1, 0), &all, &label("NaN v entry"));
            // NaN in the unused KV-cache capacity (rows kv_len..kv_capacity) reaches nothing.
            let (mut k_pad, mut v_pad) = (k.clone(), v.clone());
            for head in 0..shape.kv_heads {
                k_pad[kv_row(head, shape.kv_len)..kv_row(head, shape.kv_capacity)].fill(nan);
                v_pad[kv_row(head, shape.kv_len)..kv_row(head, shape.kv_capacity)].fill(nan);
            }
            let out = run::<E, A>(algorithm, &shape, &q, &k_pad, &v_pad);
            let none = vec![false; shape.heads * shape.q_len];
            nan_pattern(&out, d, &none, &all, &label("NaN in spare capacity"));
        }
    }
}

#[test]
fn nan_reaches_exactly_the_rows_that_read_it() {
    for_each_accumulator!(nan_propagation, f32);
    for_each_accumulator!(nan_propagation, bf16);
}

// ---------------------------------------------------------------------------------------------
// Fully masked rows.

fn masked_rows<E: Element, A: Accumulator>() {
    // Causal with q_len > kv_len: rows 0..3 of 7 see no key and must be zeros; the rest not.
    let shape = AttentionShape::new(2, 2, 7, 4, 5).with_causal(true);
    let (qn, kvn) = shape.validate().unwrap();
    let (q, k, v): (Vec<E>, Vec<E>, Vec<E>) = (
        elements(&values(qn, 0.4)),
        elements(&values(kvn, 0.5)),
        elements(&values(kvn, 0.6)),
    );
    for algorithm in ALGORITHMS {
        let out = run::<E, A>(algorithm, &shape, &q, &k, &v);
        for (row, chunk) in out.chunks_exact(5).enumerate() {
            let masked = row % 7 < 3;
            let zeros = chunk.iter().all(|x| x.to_f64() == 0.0);
            assert_eq!(
                zeros,
                masked,
                "{algorithm:?} {}/{}: row {row}",
                E::NAME,
                A::NAME
            );
        }
        // kv_len = 0 (an empty KV cache, with or without capacity): every row is zeros.
        for (capacity, causal) in [(0, false), (0, true), (3, false)] {
            let empty = AttentionShape::new(1, 2, 3, 0, 4)
                .with_kv_capacity(capacity)
                .with_causal(causal);
            let kv = vec![E::from_f32(f32::NAN); 2 * capacity * 4];
            let out = run::<E, A>(algorithm, &empty, &q[..24], &kv, &kv);
            assert!(
                out.iter().all(|x| x.to_f64() == 0.0),
                "{algorithm:?} {}/{}: kv_len 0, capacity {capacity}",
                E::NAME,
                A::NAME
            );
        }
        // q_len = 0: nothing to compute, and no error.
        let none = AttentionShape::new(1, 1, 0, 3, 4);
        assert!(run::<E, A>(algorithm, &none, &[], &k[..12], &v[..12]).is_empty());
    }
}

#[test]
fn fully_masked_rows_are_zeros() {
    for_each_accumulator!(masked_rows, f32);
    for_each_accumulator!(masked_rows, bf16);
}

// ---------------------------------------------------------------------------------------------
// Bad arguments.

/// Calls with slices sized for `slices` (or overridden lengths) and returns the error.
fn error_of<E: Element, A: Accumulator>(
    algorithm: Algorithm,
    backend: Backend,
    shape: &AttentionShape,
    lengths: [usize; 4],
    scratch: Option<usize>,
) -> Error {
    let [q, kv_k, kv_v, out] = lengths;
    let z = E::from_f32(0.5);
    let (q, k, v) = (vec![z; q], vec![z; kv_k], vec![z; kv_v]);
    let mut out = vec![z; out];
    let len = scratch.unwrap_or_else(|| scratch_len(algorithm, shape).unwrap_or(64));
    let mut scratch = vec![A::ZERO; len];
    match call(
        algorithm,
        backend,
        shape,
        &q,
        &k,
        &v,
        &mut out,
        &mut scratch,
    ) {
        Ok(()) => panic!(
            "{algorithm:?} {}/{} accepted {shape:?} {lengths:?}",
            E::NAME,
            A::NAME
        ),
        Err(e) => e,
    }
}

fn bad_arguments<E: Element, A: Accumulator>() {
    let good = AttentionShape::new(1, 4, 3, 5, 8).with_kv_heads(2);
    let (qn, kvn) = good.validate().unwrap();
    let sized = [qn, kvn, kvn, qn];
    let generic = Backend::Generic;
    for algorithm in ALGORITHMS {
        let err = |shape: &AttentionShape, lengths: [usize; 4]| {
            error_of::<E, A>(algorithm, generic, shape, lengths, None)
        };
        for (shape, name) in [
            (AttentionShape { batch: 0, ..good }, "batch"),
            (AttentionShape { heads: 0, ..good }, "heads"),
            (
                AttentionShape {
                    kv_heads: 0,
                    ..good
                },
                "kv_heads",
            ),
            (
                AttentionShape {
                    head_dim: 0,
                    ..good
                },
                "head_dim",
            ),
        ] {
            assert_eq!(err(&shape, sized), Error::ZeroDimension(name));
            assert_eq!(
                scratch_len(algorithm, &shape),
                Err(Error::ZeroDimension(name))
            );
        }
        assert_eq!(
            err(&good.with_kv_heads(3), sized),
            Error::HeadsNotDivisible {
                heads: 4,
                kv_heads: 3
            }
        );
        assert_eq!(
            err(&good.with_kv_capacity(4), sized),
            Error::LengthMismatch {
                what: "kv_capacity",
                expected: 5,
                actual: 4
            }
        );
        for scale in [0.0, -0.5, f32::NAN, f32::INFINITY, -0.0] {
            assert_eq!(
                err(&good.with_scale(scale), sized),
                Error::BadScale,
                "scale {scale}"
            );
        }
        for (i, what) in ["q", "k", "v", "out"].into_iter().enumerate() {
            for delta in [-1isize, 1] {
                let mut lengths = sized;
                lengths[i] = (lengths[i] as isize + delta) as usize;
                assert_eq!(
                    err(&good, lengths),
                    Error::LengthMismatch {
                        what,
                        expected: sized[i],
                        actual: lengths[i]
                    }
                );
            }
        }
        let huge = AttentionShape::new(usize::MAX / 2, 4, 3, 5, 8);
        assert_eq!(err(&huge, sized), Error::Overflow);
        assert_eq!(scratch_len(algorithm, &huge), Err(Error::Overflow));
        // Scratch one accumulator short.
        let needed = scratch_len(algorithm, &good).unwrap();
        assert_eq!(
            error_of::<E, A>(algorithm, generic, &good, sized, Some(needed - 1)),
            Error::ScratchTooSmall {
                needed,
                actual: needed - 1
            }
        );
        // A backend the accumulator or the machine does not have.
        let unavailable = Backend::ALL.into_iter().find(|&b| {
            let mut s = vec![A::ZERO; needed];
            let (q, kv) = (vec![E::from_f32(0.5); qn], vec![E::from_f32(0.5); kvn]);
            let mut o = q.clone();
            call(algorithm, b, &good, &q, &kv, &kv, &mut o, &mut s).is_err()
        });
        if A::NAME != "f32" {
            assert!(unavailable.is_some(), "{} runs only on generic", A::NAME);
            for backend in Backend::ALL.into_iter().filter(|&b| b != Backend::Generic) {
                assert_eq!(
                    error_of::<E, A>(algorithm, backend, &good, sized, None),
                    Error::BackendUnavailable(backend)
                );
            }
        } else if let Some(b) = unavailable {
            assert!(!b.is_available(), "{} is available but refused", b.name());
            assert_eq!(
                error_of::<E, A>(algorithm, b, &good, sized, None),
                Error::BackendUnavailable(b)
            );
        }
    }
    // Tiles: zero or above MAX_TILE, on either axis.
    for (tiles, which) in [
        (FlashTiles::new(0, 4), "block_q"),
        (FlashTiles::new(MAX_TILE + 1, 4), "block_q"),
        (FlashTiles::new(4, 0), "block_k"),
        (FlashTiles::new(4, MAX_TILE + 1), "block_k"),
    ] {
        let algorithm = Algorithm::Flash(tiles);
        assert_eq!(flash_scratch_len(&good, tiles), Err(Error::BadTile(which)));
        assert_eq!(
            error_of::<E, A>(algorithm, generic, &good, sized, Some(4096)),
            Error::BadTile(which)
        );
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    for_each_accumulator!(bad_arguments, f32);
    for_each_accumulator!(bad_arguments, bf16);
}
