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
