//! Token-major and frame-major queries and output (`Layout::TokenMajor`, `Layout::FrameMajor`,
//! read through a row stride) give the head-major results bit for bit, on every backend, for both
//! algorithms and both element types.

use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles, Layout,
};
use tessera_kernels::simd::available_backends;
use tessera_kernels::{bf16, Element};

/// `[batch, heads, seq, d]` -> `[batch, seq, heads, d]` (token-major) or `[seq, batch, heads,
/// d]` (frame-major), or back with `back`.
fn transpose<T: Copy>(
    layout: Layout,
    x: &[T],
    batch: usize,
    heads: usize,
    seq: usize,
    d: usize,
    back: bool,
) -> Vec<T> {
    let mut out = x.to_vec();
    for b in 0..batch {
        for h in 0..heads {
            for t in 0..seq {
                let hm = ((b * heads + h) * seq + t) * d;
                let tm = match layout {
                    Layout::FrameMajor => ((t * batch + b) * heads + h) * d,
                    _ => ((b * seq + t) * heads + h) * d,
                };
                let (from, to) = if back { (tm, hm) } else { (hm, tm) };
                out[to..to + d].copy_from_slice(&x[from..from + d]);
            }
        }
    }
    out
}

fn check<E: Element>(flash: bool) {
    // Under Miri (interpreted) the same kinds of shape, shrunk.
    #[cfg(miri)]
    let shapes = [
        AttentionShape::new(2, 2, 3, 3, 5)
            .with_kv_heads(1)
            .with_causal(true),
        AttentionShape::new(1, 2, 1, 5, 4).with_kv_heads(1),
        AttentionShape::new(1, 2, 3, 4, 8)
            .with_kv_capacity(6)
            .with_causal(true),
    ];
    #[cfg(not(miri))]
    let shapes = [
        AttentionShape::new(2, 4, 9, 9, 33)
            .with_kv_heads(2)
            .with_causal(true),
        AttentionShape::new(1, 3, 1, 20, 16).with_kv_heads(1),
        AttentionShape::new(1, 2, 5, 12, 64)
            .with_kv_capacity(16)
            .with_causal(true),
    ];
    for shape in shapes {
        let (q_n, kv_n) = shape.validate().unwrap();
        let q: Vec<E> = (0..q_n)
            .map(|i| E::from_f32((i as f32 * 0.37).sin()))
            .collect();
        let k: Vec<E> = (0..kv_n)
            .map(|i| E::from_f32((i as f32 * 0.11).cos()))
            .collect();
        let v: Vec<E> = (0..kv_n)
            .map(|i| E::from_f32((i as f32 * 0.23).sin()))
            .collect();
        let (b, h, n, d) = (shape.batch, shape.heads, shape.q_len, shape.head_dim);
        let tiles = FlashTiles::new(4, 8);
        for backend in available_backends() {
            let run = |s: &AttentionShape, q: &[E]| {
                let mut out = vec![E::from_f32(f32::NAN); q_n];
                if flash {
                    let mut scratch = vec![0.0f32; flash_scratch_len(s, tiles).unwrap()];
                    flash_attention_with(backend, s, tiles, q, &k, &v, &mut out, &mut scratch)
                        .unwrap();
                } else {
                    let mut scratch = vec![0.0f32; baseline_scratch_len(s).unwrap()];
                    baseline_attention_with(backend, s, q, &k, &v, &mut out, &mut scratch).unwrap();
                }
                out
            };
            let want = run(&shape, &q);
            for layout in [Layout::TokenMajor, Layout::FrameMajor] {
                let q_t = transpose(layout, &q, b, h, n, d, false);
                let strided = shape.with_layout(layout);
                let got = transpose(layout, &run(&strided, &q_t), b, h, n, d, true);
                let bits = |x: &[E]| x.iter().map(|e| e.to_f64().to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{shape:?} {layout:?} flash {flash} on {backend:?}"
                );
            }
        }
    }
}

#[test]
fn strided_layouts_equal_head_major() {
    for flash in [false, true] {
        check::<f32>(flash);
        check::<bf16>(flash);
    }
}
