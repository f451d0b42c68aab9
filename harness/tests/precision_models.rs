//! The deviation study's named precision models, checked bit for bit against independent scalar
//! implementations of their rounding rules (docs/numerics.md, "Precision models"):
//!
//! - `fa2`: the shipped flash kernel on `bf16` tensors with the `f32` accumulator. `S`, `m`, `l`
//!   and `O` in `f32`; each tile's `P` rounded to bf16 before `P·V`, `l` summed before that
//!   rounding; the output `O / l` rounded once (FlashAttention-2's `flash_fwd_kernel.h`).
//! - `bf16-ops`: the baseline kernel with [`Bf16Ops`]: logits `QKᵀ·scale` accumulated in `f32`
//!   and rounded once to bf16, softmax in `f32` with its quotients rounded to bf16, `P·V` in `f32`
//!   rounded once.
//!
//! The scalar versions below are written from those rules alone, in plain `f32`/`f64` arithmetic
//! with `half`'s conversions, on the generic backend's order of operations (dot products and sums
//! from the first element, no fused multiply-add).

use half::bf16;
use proptest::prelude::*;
use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{Accumulator, Bf16Ops};

/// A small problem: one head, `n` queries over `n` keys, head_dim `d`.
#[derive(Clone, Debug)]
struct Problem {
    n: usize,
    d: usize,
    causal: bool,
    q: Vec<bf16>,
    k: Vec<bf16>,
    v: Vec<bf16>,
}

impl Problem {
    fn shape(&self) -> AttentionShape {
        AttentionShape::new(1, 1, self.n, self.n, self.d).with_causal(self.causal)
    }
    fn visible(&self, row: usize) -> usize {
        if self.causal {
            row + 1
        } else {
            self.n
        }
    }
    fn logit(&self, row: usize, key: usize, scale: f32) -> f32 {
        let d = self.d;
        let mut dot = 0.0f32;
        for i in 0..d {
            dot += self.q[row * d + i].to_f32() * self.k[key * d + i].to_f32();
        }
        dot * scale
    }
}

fn problem() -> impl Strategy<Value = Problem> {
    (1usize..40, 1usize..20, any::<bool>(), 0.1f32..4.0).prop_flat_map(|(n, d, causal, spread)| {
        let values = move |len| prop::collection::vec(-spread..spread, len);
        (values(n * d), values(n * d), values(n * d)).prop_map(move |(q, k, v)| {
            let to = |x: Vec<f32>| x.into_iter().map(bf16::from_f32).collect();
            Problem {
                n,
                d,
                causal,
                q: to(q),
                k: to(k),
                v: to(v),
            }
        })
    })
}

/// FlashAttention-2's forward by its rounding rules, one row at a time.
fn fa2_scalar(p: &Problem, block_k: usize) -> Vec<bf16> {
    let (n, d) = (p.n, p.d);
    let scale = p.shape().scale;
    let mut out = vec![bf16::ZERO; n * d];
    for row in 0..n {
        let visible = p.visible(row);
        let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
        let mut o = vec![0.0f32; d];
        let mut j0 = 0;
        while j0 < visible {
            let j1 = (j0 + block_k).min(visible);
            let s: Vec<f32> = (j0..j1).map(|j| p.logit(row, j, scale)).collect();
            let m_new = s.iter().fold(m, |a, &x| a.max(x));
            let e: Vec<f32> = s.iter().map(|&x| libm::expf(x - m_new)).collect();
            let p_sum = e.iter().fold(0.0f32, |a, &x| a + x);
            if m == f32::NEG_INFINITY {
                l = p_sum;
            } else {
                let alpha = libm::expf(m - m_new);
                if alpha != 1.0 {
                    o.iter_mut().for_each(|x| *x *= alpha);
                }
                l = l * alpha + p_sum;
            }
            for (jj, &pj) in e.iter().enumerate() {
                let pj = bf16::from_f32(pj).to_f32(); // P in bf16 for the second matmul
                let v_row = &p.v[(j0 + jj) * d..][..d];
                for (o, v) in o.iter_mut().zip(v_row) {
                    *o += pj * v.to_f32();
                }
            }
            m = m_new;
            j0 += block_k;
        }
        for i in 0..d {
            out[row * d + i] = bf16::from_f32(o[i] / l);
        }
    }
    out
}

/// `softmax(q @ k.T * scale) @ v` on bf16 tensors, op by op.
fn eager_scalar(p: &Problem) -> Vec<bf16> {
    let (n, d) = (p.n, p.d);
    let scale = p.shape().scale;
    let mut out = vec![bf16::ZERO; n * d];
    for row in 0..n {
        let visible = p.visible(row);
        // The matmul and the scale: f32 accumulation, the scaled logit stored once in bf16.
        let s: Vec<f32> = (0..visible)
            .map(|j| {
                let mut dot = 0.0f32;
                for i in 0..d {
                    dot += p.q[row * d + i].to_f32() * p.k[j * d + i].to_f32();
                }
                bf16_nearest(dot as f64 * scale as f64)
            })
            .collect();
        // Softmax in f32, probabilities stored in bf16.
        let m = s.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
        let e: Vec<f32> = s.iter().map(|&x| libm::expf(x - m)).collect();
        let sum = e.iter().fold(0.0f32, |a, &x| a + x);
        let probs: Vec<f32> = e
            .iter()
            .map(|&x| bf16_nearest(x as f64 / sum as f64))
            .collect();
        // P·V: f32 accumulation, stored once.
        for i in 0..d {
            let mut acc = 0.0f32;
            for (j, &pj) in probs.iter().enumerate() {
                acc += pj * p.v[j * d + i].to_f32();
            }
            out[row * d + i] = bf16::from_f32(acc);
        }
    }
    out
}

/// `x` rounded to the nearest bf16, ties to even, correctly (not `half`'s `from_f64`, which drops
/// the low 32 bits first): scale by the bf16 ulp at `x`'s binade (or the subnormal ulp 2^-133),
/// round to an even integer in `f64` (exact: the scaling is by a power of two), scale back.
fn bf16_nearest(x: f64) -> f32 {
    if x == 0.0 || !x.is_finite() {
        return x as f32;
    }
    let exponent = ((x.abs().to_bits() >> 52) as i32) - 1023;
    let ulp = 2f64.powi((exponent - 7).max(-133));
    ((x / ulp).round_ties_even() * ulp) as f32
}

fn bits(x: &[bf16]) -> Vec<u16> {
    x.iter().map(|v| v.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

    #[test]
    fn fa2_model_is_flash_attention_2s_rounding(p in problem(), block_q in 1usize..16, block_k in 1usize..24) {
        let shape = p.shape();
        let tiles = FlashTiles::new(block_q, block_k);
        let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles).unwrap()];
        let mut out = vec![bf16::from_f32(f32::NAN); p.n * p.d];
        flash_attention_with(Backend::Generic, &shape, tiles, &p.q, &p.k, &p.v, &mut out, &mut scratch).unwrap();
        prop_assert_eq!(bits(&out), bits(&fa2_scalar(&p, block_k)));
    }

    #[test]
    fn bf16_ops_model_is_eager_attention(p in problem()) {
        let shape = p.shape();
        let mut scratch = vec![Bf16Ops::ZERO; baseline_scratch_len(&shape).unwrap()];
        let mut out = vec![bf16::from_f32(f32::NAN); p.n * p.d];
        baseline_attention_with(Backend::Generic, &shape, &p.q, &p.k, &p.v, &mut out, &mut scratch).unwrap();
        prop_assert_eq!(bits(&out), bits(&eager_scalar(&p)));
    }
}

/// The `fa2` rounding of `P` is visible: on inputs where `P` has bits below bf16's, the kernel
/// differs from the same algorithm with `P` kept in `f32` (so the test above can fail).
#[test]
fn rounding_p_changes_the_output() {
    let (n, d) = (33, 8);
    let gen = |seed: u32| -> Vec<bf16> {
        (0..n * d)
            .map(|i| {
                bf16::from_f32(
                    (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0,
                )
            })
            .collect()
    };
    let p = Problem {
        n,
        d,
        causal: false,
        q: gen(1),
        k: gen(2),
        v: gen(3),
    };
    let fa2 = fa2_scalar(&p, 8);
    // Same algorithm, P unrounded.
    let shape = p.shape();
    let mut unrounded = vec![bf16::ZERO; n * d];
    let widen = |x: &[bf16]| x.iter().map(|v| v.to_f32()).collect::<Vec<f32>>();
    let tiles = FlashTiles::new(4, 8);
    let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles).unwrap()];
    let mut out32 = vec![0.0f32; n * d];
    flash_attention_with(
        Backend::Generic,
        &shape,
        tiles,
        &widen(&p.q),
        &widen(&p.k),
        &widen(&p.v),
        &mut out32,
        &mut scratch,
    )
    .unwrap();
    for (u, &x) in unrounded.iter_mut().zip(&out32) {
        *u = bf16::from_f32(x);
    }
    assert_ne!(
        bits(&fa2),
        bits(&unrounded),
        "rounding P to bf16 made no difference"
    );
}
