//! Flash and baseline attention forward, every element x accumulator x backend, arbitrary shapes
//! (GQA, causal, decode with a KV cache of spare capacity, both layouts), tiles, slice lengths
//! and float bits. Asserts:
//! - `Err` leaves the output untouched (pre-filled with a sentinel NaN, compared bit for bit);
//! - `Ok` writes every element: a row whose inputs are finite has a finite output (documented:
//!   logits that overflow are saturated) no larger than `tolerance::output_magnitude_limit`;
//! - a row that sees no key is zeros, a row that reads a NaN is all NaN;
//! - on small shapes, each row is within `tolerance::row_bound` of the exact oracle;
//! - batch element `b` run alone gives the bits it has inside the batch.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{assert_untouched, backend, bits, sentinel, Values};
use tessera_harness::tolerance;
use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles, Layout,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Accumulator, Bf16Acc, Bf16Mma, Element, F16Acc, F16Mma};

#[derive(Arbitrary, Debug)]
struct Input {
    flash: bool,
    element: u8,
    accumulator: u8,
    backend: u8,
    batch: u8,
    kv_heads: u8,
    group: u8,
    q_len: u8,
    kv_len: u8,
    spare_capacity: u8,
    head_dim: u8,
    causal: bool,
    token_major: bool,
    scale_bits: Option<u32>,
    block_q: u8,
    block_k: u8,
    /// Non-zero: that slice (q, k, v, out, scratch by index) is one element too long or short.
    wrong_length: Option<(u8, bool)>,
    values: Values,
    words: Vec<u32>,
}

struct Case {
    flash: bool,
    backend: Backend,
    shape: AttentionShape,
    tiles: FlashTiles,
    wrong_length: Option<(u8, bool)>,
    values: Values,
}

fn resize<T: Clone>(v: &mut Vec<T>, which: u8, me: u8, longer: bool, fill: T) {
    if which % 5 == me {
        if longer {
            v.push(fill);
        } else {
            v.pop();
        }
    }
}

/// Runs one configuration on `(q, k, v)` with a sentinel-filled output; `Err` checked here.
fn call<E: Element, A: Accumulator>(
    case: &Case,
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
    out_len: usize,
    scratch_len: usize,
) -> Option<Vec<E>> {
    let mut out = vec![E::from_f32(sentinel()); out_len];
    let mut scratch = vec![A::ZERO; scratch_len];
    let before = bits(&out);
    let result = if case.flash {
        flash_attention_with(
            case.backend,
            shape,
            case.tiles,
            q,
            k,
            v,
            &mut out,
            &mut scratch,
        )
    } else {
        baseline_attention_with(case.backend, shape, q, k, v, &mut out, &mut scratch)
    };
    match result {
        Ok(()) => Some(out),
        Err(e) => {
            assert_untouched("attention output", &before, &out, &e);
            None
        }
    }
}

fn run<E: Element, A: Accumulator>(case: &Case, words: &[u32]) {
    let s = case.shape;
    let scratch_len = if case.flash {
        flash_scratch_len(&s, case.tiles)
    } else {
        baseline_scratch_len(&s)
    };
    let (q_n, kv_n) = s
        .validate()
        .unwrap_or((s.batch * 7 % 13, s.kv_len * 3 % 11));
    let mut scratch_len = scratch_len.unwrap_or(5);
    let draw = |n: usize, salt: u32| -> Vec<E> {
        let w: Vec<u32> = words.iter().map(|x| x.rotate_left(salt)).collect();
        // f32 bit patterns for the narrow elements, f64 ones (beyond f32's range) for f64.
        if E::PRECISION > 24 {
            case.values
                .f64s(&w, n)
                .into_iter()
                .map(E::from_f64)
                .collect()
        } else {
            case.values
                .f32s(&w, n)
                .into_iter()
                .map(E::from_f32)
                .collect()
        }
    };
    let (mut q, mut k, mut v) = (draw(q_n, 0), draw(kv_n, 11), draw(kv_n, 23));
    let mut out_len = q_n;
    if let Some((which, longer)) = case.wrong_length {
        let z = E::from_f32(0.0);
        resize(&mut q, which, 0, longer, z);
        resize(&mut k, which, 1, longer, z);
        resize(&mut v, which, 2, longer, z);
        if which % 5 == 3 {
            out_len = if longer {
                out_len + 1
            } else {
                out_len.saturating_sub(1)
            };
        }
        if which % 5 == 4 && !longer {
            scratch_len = scratch_len.saturating_sub(1);
        }
    }
    let Some(out) = call::<E, A>(case, &s, &q, &k, &v, out_len, scratch_len) else {
        return;
    };
    assert!(s.validate().is_ok(), "Ok for an invalid shape {s:?}");
    assert_eq!(
        (q.len(), k.len(), v.len(), out.len()),
        (q_n, kv_n, kv_n, q_n)
    );
    check_rows::<E, A>(case, &q, &k, &v, &out);
    if s.batch == 2 {
        // Batch element 1 alone: the same bits as inside the batch.
        let one = AttentionShape { batch: 1, ..s };
        let (q1, kv1) = one.validate().expect("half a valid shape is valid");
        let len = match case.flash {
            true => flash_scratch_len(&one, case.tiles),
            false => baseline_scratch_len(&one),
        };
        let alone = call::<E, A>(case, &one, &q[q1..], &k[kv1..], &v[kv1..], q1, len.unwrap())
            .expect("a batch element alone is accepted when the batch was");
        assert_eq!(
            bits(&alone),
            bits(&out[q1..]),
            "batch element 1 alone differs"
        );
    }
}

/// The per-row checks: zeros, NaN propagation, finiteness, magnitude, and the oracle.
fn check_rows<E: Element, A: Accumulator>(case: &Case, q: &[E], k: &[E], v: &[E], out: &[E]) {
    let s = case.shape;
    let d = s.head_dim;
    let group = s.heads / s.kv_heads;
    let wide = |x: &[E]| x.iter().map(|e| e.to_f64()).collect::<Vec<f64>>();
    let small = s.kv_len * s.batch * s.heads * s.q_len * d <= 2048;
    // The promise of finite outputs covers accumulators at least as wide as f32 in range.
    let promises_finite = A::UNIT_ROUNDOFF != F16Acc::UNIT_ROUNDOFF;
    for b in 0..s.batch {
        for h in 0..s.heads {
            let kv_start = (b * s.kv_heads + h / group) * s.kv_capacity * d;
            for i in 0..s.q_len {
                let start = match s.layout {
                    Layout::HeadMajor => ((b * s.heads + h) * s.q_len + i) * d,
                    Layout::TokenMajor => ((b * s.q_len + i) * s.heads + h) * d,
                    Layout::FrameMajor => ((i * s.batch + b) * s.heads + h) * d,
                };
                let qi = wide(&q[start..start + d]);
                let o = wide(&out[start..start + d]);
                let n = s.visible_keys(i);
                let keys = wide(&k[kv_start..kv_start + n * d]);
                let values = wide(&v[kv_start..kv_start + n * d]);
                let at = format!("row b{b} h{h} i{i} of {s:?} {:?}", case.tiles);
                if n == 0 {
                    assert!(
                        o.iter().all(|&x| x == 0.0),
                        "{at}: sees no key but is {o:?}"
                    );
                    continue;
                }
                let read = || qi.iter().chain(&keys).chain(&values);
                // docs/numerics.md: any NaN or infinity a row reads makes the row NaN, as the
                // oracle gives.
                if read().any(|x| !x.is_finite()) {
                    assert!(
                        o.iter().all(|x| x.is_nan()),
                        "{at}: reads a NaN or an infinity, gives {o:?}"
                    );
                    continue;
                }
                if promises_finite {
                    let vmax = values.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                    let tiles = tolerance::key_tiles(n, case.flash.then_some(case.tiles.block_k));
                    let u_out = 2f64.powi(-(E::PRECISION as i32));
                    // `output_magnitude_limit` models relative rounding only; below the normal
                    // range a rounding errs by up to half the smallest subnormal, absolutely
                    // (found here: f32 values near 1.4e-39 rounded up on the bf16 grid). Each
                    // value, weight, rescaling and the output round once: `(n + 2T + 2)·η`.
                    let eta = smallest_subnormal(A::UNIT_ROUNDOFF) + smallest_subnormal(u_out);
                    let limit =
                        tolerance::output_magnitude_limit(vmax, n, tiles, A::UNIT_ROUNDOFF, u_out)
                            + (n + 2 * tiles + 2) as f64 * eta;
                    for &x in &o {
                        assert!(x.is_finite(), "{at}: finite inputs, output {o:?} q {qi:?} k {keys:?} v {values:?} E {} A {}", E::NAME, A::NAME);
                        assert!(
                            x.abs() <= limit,
                            "{at}: |{x:e}| exceeds {limit:e} (max |v| {vmax:e})"
                        );
                    }
                }
                // fp16 accumulators overflow at 65504: a row whose result or intermediates
                // exceed that is inf by the format's nature, outside the bound's model.
                if small && !promises_finite && o.iter().any(|x| !x.is_finite()) {
                    continue;
                }
                if small {
                    // vdpbf16ps (the avx512bf16 backend's bf16 QK^T) treats subnormal inputs as
                    // zero (DAZ), as the instruction is specified: the oracle gets those inputs
                    // flushed too (docs/numerics.md).
                    let daz = E::NAME == "bf16"
                        && case.backend.resolve() == tessera_kernels::simd::Backend::Avx512Bf16;
                    let flush = |x: &[f64]| -> Vec<f64> {
                        x.iter()
                            .map(|&v| {
                                if daz && v.abs() < f32::MIN_POSITIVE as f64 {
                                    0.0
                                } else {
                                    v
                                }
                            })
                            .collect()
                    };
                    let (qi, keys) = (flush(&qi), flush(&keys));
                    let scale = s.scale as f64;
                    let exact = tessera_reference::attention_row(&qi, &keys, &values, scale);
                    let block_k = case.flash.then_some(case.tiles.block_k);
                    let u_out = 2f64.powi(-(E::PRECISION as i32));
                    let bound = tolerance::row_bound(
                        &qi,
                        &keys,
                        &values,
                        scale,
                        block_k,
                        A::UNIT_ROUNDOFF,
                        u_out,
                    );
                    if !bound.is_finite() {
                        continue;
                    }
                    // `row_bound` is relative (first order) and has no term for underflow: an
                    // intermediate below the accumulator's (or the element's) subnormal range
                    // is lost absolutely. Each logit loses at most `d` such, each weight and
                    // each stored value one: `(n + 2d + 4)·(η_A + η_E)·(1 + V)`.
                    let vmax = values.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                    let eta = smallest_subnormal(A::UNIT_ROUNDOFF) + smallest_subnormal(u_out);
                    let bound = bound + (n + 2 * d + 4) as f64 * eta * (1.0 + vmax);
                    // Its bf16 P·V (flash) by vdpbf16ps also reads subnormal probabilities and
                    // values as zero and flushes subnormal sums (docs/numerics.md).
                    let bound = if daz && case.flash {
                        let tiles = tolerance::key_tiles(n, block_k);
                        bound + tolerance::pair_flush_bound(n, tiles, vmax)
                    } else {
                        bound
                    };
                    for (j, (&x, &e)) in o.iter().zip(&exact).enumerate() {
                        let err = (x - e).abs();
                        assert!(
                            err <= bound,
                            "{at}[{j}]: {x:e} vs exact {e:e}: error {err:e} > bound {bound:e}, {}/{}, q {qi:?} k {keys:?} v {values:?}", E::NAME, A::NAME
                        );
                    }
                }
            }
        }
    }
}

/// The smallest positive subnormal of the binary format with unit roundoff `u`.
fn smallest_subnormal(u: f64) -> f64 {
    match u.log2().round() as i32 {
        -8 => 2f64.powi(-133),  // bf16
        -11 => 2f64.powi(-24),  // fp16
        -24 => 2f64.powi(-149), // f32
        _ => f64::from_bits(1), // f64
    }
}

fuzz_target!(|input: Input| {
    let kv_heads = (input.kv_heads % 4) as usize;
    let heads = kv_heads * (1 + input.group as usize % 3);
    // Mostly valid shapes; a zero or a non-divisible head count now and then.
    let heads = if input.group == 255 { heads + 1 } else { heads };
    let kv_len = (input.kv_len % 24) as usize;
    let mut shape = AttentionShape::new(
        (input.batch % 3) as usize,
        heads,
        (input.q_len % 10) as usize,
        kv_len,
        (input.head_dim % 40) as usize,
    )
    .with_kv_heads(kv_heads)
    .with_kv_capacity(kv_len + (input.spare_capacity % 4) as usize)
    .with_causal(input.causal)
    .with_layout(if input.token_major {
        Layout::TokenMajor
    } else {
        Layout::HeadMajor
    });
    if input.spare_capacity == 255 {
        shape = shape.with_kv_capacity(kv_len.saturating_sub(1));
    }
    if let Some(bits) = input.scale_bits {
        shape = shape.with_scale(f32::from_bits(bits));
    }
    let case = Case {
        flash: input.flash,
        backend: backend(input.backend),
        shape,
        tiles: FlashTiles::new(input.block_q as usize % 70, input.block_k as usize % 70),
        wrong_length: input.wrong_length,
        values: input.values,
    };
    macro_rules! with_acc {
        ($e:ty) => {
            match input.accumulator % 6 {
                0 => run::<$e, f32>(&case, &input.words),
                1 => run::<$e, f64>(&case, &input.words),
                2 => run::<$e, Bf16Acc>(&case, &input.words),
                3 => run::<$e, F16Acc>(&case, &input.words),
                4 => run::<$e, Bf16Mma>(&case, &input.words),
                _ => run::<$e, F16Mma>(&case, &input.words),
            }
        };
    }
    match input.element % 3 {
        0 => with_acc!(f32),
        1 => with_acc!(bf16),
        _ => with_acc!(f64),
    }
});
