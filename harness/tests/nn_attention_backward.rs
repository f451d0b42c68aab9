//! Attention backward (recomputation from the row logsumexp) against central finite differences
//! of an independent `f64` attention, for causal and full masks, decode shapes (`q_len < kv_len`)
//! and grouped-query heads. Tolerances as in nn_blocks.rs: values `1e-4·(1+|ref|)`, gradients
//! `2e-4·(1+|ref|)` (f32 sums of at most a few hundred O(1) terms; f64 differences with step 1e-5).

use proptest::prelude::*;
use tessera_kernels::attention::{baseline_attention, baseline_scratch_len, AttentionShape};
use tessera_kernels::nn::{
    attention_backward, attention_backward_scratch_len, attention_logsumexp,
};

const VALUE_TOL: f64 = 1e-4;
const GRAD_TOL: f64 = 2e-4;
const FD_STEP: f64 = 1e-5;

/// f64 attention with the kernel's layout and masking; returns (out, lse).
fn ref_attention(s: &AttentionShape, q: &[f64], k: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let d = s.head_dim;
    let group = s.heads / s.kv_heads;
    let mut out = vec![0.0; q.len()];
    let mut lse = vec![f64::NEG_INFINITY; s.batch * s.heads * s.q_len];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let kvh = b * s.kv_heads + h / group;
            for i in 0..s.q_len {
                let row = (b * s.heads + h) * s.q_len + i;
                let qi = &q[row * d..(row + 1) * d];
                let vis = s.visible_keys(i);
                if vis == 0 {
                    continue;
                }
                let logits: Vec<f64> = (0..vis)
                    .map(|j| {
                        let kj = &k[(kvh * s.kv_capacity + j) * d..][..d];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * s.scale as f64
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|x| (x - m).exp()).sum();
                lse[row] = m + sum.ln();
                for (j, &x) in logits.iter().enumerate() {
                    let p = (x - m).exp() / sum;
                    let vj = &v[(kvh * s.kv_capacity + j) * d..][..d];
                    for t in 0..d {
                        out[row * d + t] += p * vj[t];
                    }
                }
            }
        }
    }
    (out, lse)
}

fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + FD_STEP;
            let up = f(&x);
            x[i] = x0 - FD_STEP;
            let down = f(&x);
            x[i] = x0;
            (up - down) / (2.0 * FD_STEP)
        })
        .collect()
}

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn attention_gradients_match_f64_finite_differences(
        batch in 1usize..3, kv_heads in 1usize..3, group in 1usize..3, q_len in 1usize..6,
        extra_kv in 0usize..4, spare in 0usize..2, half in 1usize..4, causal in any::<bool>(),
        pool in prop::collection::vec(-1.5f32..1.5, 2 * 4 * 5 * 6 + 2 * 2 * 12 * 6 * 3),
    ) {
        let heads = kv_heads * group;
        let d = 2 * half;
        let kv_len = q_len + extra_kv;
        let shape = AttentionShape::new(batch, heads, q_len, kv_len, d)
            .with_kv_heads(kv_heads)
            .with_kv_capacity(kv_len + spare)
            .with_causal(causal);
        let (nq, nkv) = shape.validate().unwrap();
        let mut it = pool.iter().copied();
        let mut take = |n: usize| -> Vec<f32> { (0..n).map(|_| it.next().unwrap()).collect() };
        let (q, k, v, dout) = (take(nq), take(nkv), take(nkv), take(nq));
        let w = |x: &[f32]| -> Vec<f64> { x.iter().map(|&a| a as f64).collect() };
        let (qd, kd, vd, dd) = (w(&q), w(&k), w(&v), w(&dout));

        let mut out = vec![f32::NAN; nq];
        let mut scratch = vec![0.0f32; baseline_scratch_len(&shape).unwrap()];
        baseline_attention(&shape, &q, &k, &v, &mut out, &mut scratch).unwrap();
        let mut lse = vec![f32::NAN; batch * heads * q_len];
        attention_logsumexp(&shape, &q, &k, &mut lse).unwrap();
        let (ref_out, ref_lse) = ref_attention(&shape, &qd, &kd, &vd);
        close("out", &out, &ref_out, VALUE_TOL)?;
        for (&g, &r) in lse.iter().zip(&ref_lse) {
            prop_assert!(g as f64 == r || (g as f64 - r).abs() <= VALUE_TOL * (1.0 + r.abs()), "lse {g} vs {r}");
        }

        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            ref_attention(&shape, q, k, v).0.iter().zip(&dd).map(|(a, b)| a * b).sum()
        };
        let gq = fd(&|x| loss(x, &kd, &vd), &qd);
        let gk = fd(&|x| loss(&qd, x, &vd), &kd);
        let gv = fd(&|x| loss(&qd, &kd, x), &vd);
        let (mut dq, mut dk, mut dv) = (vec![f32::NAN; nq], vec![f32::NAN; nkv], vec![f32::NAN; nkv]);
        let mut bscratch = vec![0.0f32; attention_backward_scratch_len(&shape).unwrap()];
        attention_backward(&shape, &q, &k, &v, &out, &dout, &lse, &mut dq, &mut dk, &mut dv, &mut bscratch).unwrap();
        close("dq", &dq, &gq, GRAD_TOL)?;
        close("dk", &dk, &gk, GRAD_TOL)?;
        close("dv", &dv, &gv, GRAD_TOL)?;
    }
}

#[test]
fn attention_backward_rejects_bad_lengths() {
    let shape = AttentionShape::new(1, 1, 2, 2, 2);
    let x = [0.0f32; 4];
    let mut g = [0.0f32; 4];
    let (mut a, mut b) = ([0.0f32; 4], [0.0f32; 4]);
    assert!(attention_backward(
        &shape,
        &x,
        &x,
        &x,
        &x,
        &x,
        &[0.0; 1],
        &mut g,
        &mut a,
        &mut b,
        &mut [0.0; 64]
    )
    .is_err());
    assert!(attention_backward(
        &shape,
        &x,
        &x,
        &x,
        &x,
        &x,
        &[0.0; 2],
        &mut g,
        &mut a,
        &mut b,
        &mut [0.0; 3]
    )
    .is_err());
}
