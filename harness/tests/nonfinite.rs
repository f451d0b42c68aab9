//! Non-finite and out-of-range inputs: the kernels agree with the exact oracle, which gives an
//! all-NaN row for any NaN or infinity a row reads (docs/numerics.md, "Semantics"), on every
//! backend; values an accumulator cannot hold are refused with nothing written; the sizes a
//! firmware computes in `const` never overflow.

use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles,
};
use tessera_kernels::nn::ModelConfig;
use tessera_kernels::simd::{available_backends, Backend};
use tessera_kernels::{Accumulator, Element, Error, F16Acc};
use tessera_reference::{attention_row, ReferenceShape};

/// Runs flash (two tilings) and baseline on `backend`, returning each output.
fn run_all<E: Element, A: Accumulator>(
    backend: Backend,
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
) -> Vec<Result<Vec<E>, Error>> {
    let mut results = Vec::new();
    for tiles in [
        Some(FlashTiles::new(2, 3)),
        Some(FlashTiles::new(8, 64)),
        None,
    ] {
        let mut out = vec![E::from_f32(7.0); q.len()];
        let r = match tiles {
            Some(t) => {
                let mut s = vec![A::ZERO; flash_scratch_len(shape, t).unwrap()];
                flash_attention_with(backend, shape, t, q, k, v, &mut out, &mut s)
            }
            None => {
                let mut s = vec![A::ZERO; baseline_scratch_len(shape).unwrap()];
                baseline_attention_with(backend, shape, q, k, v, &mut out, &mut s)
            }
        };
        results.push(r.map(|()| out));
    }
    results
}

fn inputs(n: usize, salt: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 + salt) * 0.618).sin()).collect()
}

/// Puts `x` at `(tensor, index)` and checks every row against the oracle: NaN exactly where the
/// oracle is NaN, finite elsewhere.
fn poisoned_rows_match_the_oracle(tensor: usize, index: usize, x: f32) {
    let shape = AttentionShape::new(1, 2, 4, 6, 4).with_causal(true);
    let (qn, kvn) = shape.validate().unwrap();
    let mut t = [inputs(qn, 0.1), inputs(kvn, 0.2), inputs(kvn, 0.3)];
    t[tensor][index] = x;
    let [q, k, v] = &t;
    let r = ReferenceShape::new(1, 2, 4, 6, 4);
    let d = 4;
    for backend in available_backends() {
        for result in run_all::<f32, f32>(backend, &shape, q, k, v) {
            let out = result.unwrap();
            for row in 0..8 {
                let (h, i) = (row / 4, row % 4);
                let seen = shape.visible_keys(i);
                let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
                let kv = h * 6 * d..(h * 6 + seen) * d;
                let want = attention_row(
                    &f64s(&q[row * d..(row + 1) * d]),
                    &f64s(&k[kv.clone()]),
                    &f64s(&v[kv]),
                    r.scale,
                );
                let got = &out[row * d..(row + 1) * d];
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(
                        g.is_nan(),
                        w.is_nan(),
                        "{backend:?}: {x} at tensor {tensor} index {index}: row {row} gives \
                         {got:?}, the oracle {want:?}"
                    );
                    assert!(g.is_nan() || g.is_finite(), "row {row}: {got:?}");
                }
            }
        }
    }
}

#[test]
fn infinities_and_nan_give_nan_rows_where_the_oracle_does() {
    for x in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        for tensor in 0..3 {
            // The first element of head 0's first row, and one in the middle of head 1.
            for index in [0, 29] {
                poisoned_rows_match_the_oracle(tensor, index, x);
            }
        }
    }
}

#[test]
fn values_the_accumulator_cannot_hold_are_refused_untouched() {
    let shape = AttentionShape::new(1, 1, 3, 3, 2);
    let (qn, kvn) = shape.validate().unwrap();
    let q: Vec<f64> = vec![0.5; qn];
    let mut v: Vec<f64> = vec![0.25; kvn];
    v[3] = 1e300;
    for result in run_all::<f64, f32>(Backend::Generic, &shape, &q, &q, &v) {
        assert_eq!(result, Err(Error::OutOfRange("v")));
    }
    // fp16 accumulators hold at most 65504: an f32 value of 1e5 is refused, 6e4 accepted.
    let v32: Vec<f32> = vec![1e5; kvn];
    for result in run_all::<f32, F16Acc>(Backend::Generic, &shape, &[0.5; 6], &[0.5; 6], &v32) {
        assert_eq!(result, Err(Error::OutOfRange("v")));
    }
    let v32: Vec<f32> = vec![6e4; kvn];
    for result in run_all::<f32, F16Acc>(Backend::Generic, &shape, &[0.5; 6], &[0.5; 6], &v32) {
        assert!(result
            .unwrap()
            .iter()
            .all(|x| *x == 6e4 || (*x - 6e4).abs() < 64.0));
    }
    // Queries and keys beyond f32's range are fine: their logits are recomputed without
    // overflow, even where q·k overflows f64 itself (1e300 · 1e300, mixed signs: inf − inf).
    let big: Vec<f64> = vec![1e300; qn];
    let mixed: Vec<f64> = (0..kvn)
        .map(|i| if i % 2 == 0 { 1e300 } else { -1e300 })
        .collect();
    for k in [&big, &mixed] {
        for result in run_all::<f64, f32>(Backend::Generic, &shape, &big, k, &vec![0.25; kvn]) {
            assert!(result.unwrap().iter().all(|&x| x == 0.25));
        }
        for result in run_all::<f64, f64>(Backend::Generic, &shape, &big, k, &vec![0.25; kvn]) {
            assert!(result.unwrap().iter().all(|&x| x == 0.25));
        }
    }
}

#[test]
fn visible_keys_never_overflows() {
    let shape = AttentionShape::new(1, 1, 3, usize::MAX, 1).with_causal(true);
    assert_eq!(shape.visible_keys(0), usize::MAX - 2);
    assert_eq!(shape.visible_keys(2), usize::MAX);
    assert_eq!(shape.visible_keys(usize::MAX), usize::MAX);
    let short = AttentionShape::new(1, 1, 5, 2, 1).with_causal(true);
    assert_eq!(
        (0..5).map(|r| short.visible_keys(r)).collect::<Vec<_>>(),
        [0, 0, 0, 1, 2]
    );
}

#[test]
fn absurd_model_sizes_are_errors_not_wraps() {
    let c = ModelConfig {
        vocab: usize::MAX / 2,
        dim: 2,
        layers: 1,
        heads: 1,
        kv_heads: 1,
        ffn_hidden: 1,
        max_seq: 1,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
    };
    // The embedding and the head each fit; together they do not.
    assert_eq!(c.param_count(), Err(Error::Overflow));
    assert_eq!(c.validate(), Err(Error::Overflow));
}

/// Sizes computed at compile time, as a firmware sizes its statics.
const SHAPE: AttentionShape = AttentionShape::new(2, 4, 16, 16, 8).with_kv_heads(2);
const FLASH: usize = match flash_scratch_len(&SHAPE, FlashTiles::new(8, 4)) {
    Ok(n) => n,
    Err(_) => panic!("bad shape"),
};

#[test]
fn const_sizes_equal_the_run_time_ones() {
    let shape = AttentionShape::new(2, 4, 16, 16, 8).with_kv_heads(2);
    assert_eq!(
        shape, SHAPE,
        "the const constructor gives the same shape, scale included"
    );
    assert_eq!(flash_scratch_len(&shape, FlashTiles::new(8, 4)), Ok(FLASH));
    assert_eq!(SHAPE.scale, 1.0 / 8f32.sqrt());
}

/// Logits past `f32`'s range in some rows of a tile and not in others: flash recomputes the
/// overflowed rows in `f64` (`fix_overflowed_scores`) and goes on with the tile. Row `i < 6`
/// has one key whose logit overflows (queries and that key `±1e19` in the signs of Hadamard
/// row `i`, so `q_i·k = 1.6e39` and `q_j·k = 0` for the other such rows); its exact output is
/// that key's value row, which every backend and tiling must give (the recomputed row's
/// probabilities take the same path as the tile's other rows: on `avx512bf16`, bf16 pairs).
/// 40 keys: two 32-key lines of bf16 pairs in one tile, three tiles of 16.
#[test]
fn overflowed_logits_give_the_oracles_rows_on_every_backend() {
    fn check<E: Element>() {
        let (rows, keys, d) = (8usize, 40usize, 16usize);
        let shape = AttentionShape::new(1, 1, rows, keys, d);
        let hadamard = |i: usize, t: usize| {
            if (i & t).count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            }
        };
        let best = |i: usize| (7 * i + 3) % keys;
        let mut q: Vec<f32> = inputs(rows * d, 0.1);
        let mut k: Vec<f32> = inputs(keys * d, 0.2);
        let v: Vec<f32> = inputs(keys * d, 0.3);
        for i in 0..6 {
            for t in 0..d {
                q[i * d + t] = 1e19 * hadamard(i, t);
                k[best(i) * d + t] = 1e19 * hadamard(i, t);
            }
        }
        let [q, k, v] = [&q, &k, &v].map(|x| x.iter().map(|&x| E::from_f32(x)).collect::<Vec<E>>());
        let f64s = |x: &[E]| x.iter().map(|v| v.to_f64()).collect::<Vec<_>>();
        let r = ReferenceShape::new(1, 1, rows, keys, d);
        for backend in available_backends() {
            for tiles in [
                FlashTiles::new(8, 64),
                FlashTiles::new(4, 16),
                FlashTiles::for_shape(&shape),
            ] {
                let mut out = vec![E::from_f32(7.0); q.len()];
                let mut s = vec![0.0f32; flash_scratch_len(&shape, tiles).unwrap()];
                flash_attention_with(backend, &shape, tiles, &q, &k, &v, &mut out, &mut s).unwrap();
                for i in 0..rows {
                    let want =
                        attention_row(&f64s(&q[i * d..(i + 1) * d]), &f64s(&k), &f64s(&v), r.scale);
                    if i < 6 {
                        // The oracle's row is the overflowing key's value row.
                        let key = f64s(&v[best(i) * d..(best(i) + 1) * d]);
                        assert!(want.iter().zip(&key).all(|(w, k)| (w - k).abs() < 1e-12));
                    }
                    for (t, (g, w)) in out[i * d..(i + 1) * d].iter().zip(&want).enumerate() {
                        assert!(
                            (g.to_f64() - w).abs() <= 1e-2,
                            "{} {backend:?} {tiles:?}: row {i} element {t}: {} against the \
                             oracle's {w}",
                            E::NAME,
                            g.to_f64()
                        );
                    }
                }
            }
        }
    }
    check::<f32>();
    check::<tessera_kernels::bf16>();
}
