//! Attention backward (`attention_logsumexp` + `attention_backward`) on arbitrary shapes (GQA,
//! causal, decode shapes with `q_len < kv_len`, KV capacity beyond `kv_len`), slice lengths and
//! float bits. Asserts:
//! - `Err` leaves `lse`, `dq`, `dk`, `dv` untouched (sentinel-filled, compared bitwise);
//! - a row that sees no key has `lse = -inf` and a zero `dq` row;
//! - for inputs in `[-2, 2]`: `lse`, `dq`, `dk`, `dv` within `2e-4·(1 + |ref|)` of the closed-form
//!   gradients computed here in `f64` (`dv_j = Σ p_j dO`, `ds_j = p_j (dO·v_j − dO·o)`,
//!   `dq = scale Σ ds_j k_j`, `dk_j = scale Σ ds_j q`), the tolerance of
//!   `harness/tests/nn_attention_backward.rs`: f32 sums of at most a few hundred O(1) terms.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{assert_close, assert_untouched, bits, sentinel, wide, Values};
use tessera_kernels::attention::{baseline_attention, baseline_scratch_len, AttentionShape};
use tessera_kernels::nn::{
    attention_backward, attention_backward_scratch_len, attention_logsumexp,
};

const TOL: f64 = 2e-4;

#[derive(Arbitrary, Debug)]
struct Input {
    batch: u8,
    kv_heads: u8,
    group: u8,
    q_len: u8,
    kv_len: u8,
    spare_capacity: u8,
    head_dim: u8,
    causal: bool,
    /// One slice (by index: q, k, v, out, d_out, lse, dq, dk, dv, scratch) one element short.
    short: Option<u8>,
    values: Values,
    words: Vec<u32>,
}

/// f64 forward and backward with the kernels' layout: (out, lse, dq, dk, dv).
#[allow(clippy::type_complexity)]
fn reference(
    s: &AttentionShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    d_out: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = s.head_dim;
    let group = s.heads / s.kv_heads;
    let scale = s.scale as f64;
    let mut out = vec![0.0; q.len()];
    let mut lse = vec![f64::NEG_INFINITY; s.batch * s.heads * s.q_len];
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for b in 0..s.batch {
        for h in 0..s.heads {
            let kvh = b * s.kv_heads + h / group;
            for i in 0..s.q_len {
                let row = (b * s.heads + h) * s.q_len + i;
                let n = s.visible_keys(i);
                if n == 0 {
                    continue;
                }
                let qi = &q[row * d..][..d];
                let key = |j: usize| &k[(kvh * s.kv_capacity + j) * d..][..d];
                let val = |j: usize| &v[(kvh * s.kv_capacity + j) * d..][..d];
                let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
                let logits: Vec<f64> = (0..n).map(|j| scale * dot(qi, key(j))).collect();
                let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|x| (x - m).exp()).sum();
                lse[row] = m + sum.ln();
                let p: Vec<f64> = logits.iter().map(|x| (x - m).exp() / sum).collect();
                let o = &mut out[row * d..][..d];
                for (j, &pj) in p.iter().enumerate() {
                    for (ot, vt) in o.iter_mut().zip(val(j)) {
                        *ot += pj * vt;
                    }
                }
                let o = o.to_vec();
                let dout = &d_out[row * d..][..d];
                let big_d = dot(dout, &o);
                for (j, &pj) in p.iter().enumerate() {
                    let ds = pj * (dot(dout, val(j)) - big_d);
                    let base = (kvh * s.kv_capacity + j) * d;
                    for t in 0..d {
                        dv[base + t] += pj * dout[t];
                        dq[row * d + t] += scale * ds * key(j)[t];
                        dk[base + t] += scale * ds * qi[t];
                    }
                }
            }
        }
    }
    (out, lse, dq, dk, dv)
}

/// Drops the last element when `short` names this slice; whether one was dropped.
fn shorten(x: &mut Vec<f32>, short: Option<u8>, me: u8) -> bool {
    short.map(|s| s % 10) == Some(me) && x.pop().is_some()
}

fuzz_target!(|inp: Input| {
    let kv_heads = (inp.kv_heads % 3) as usize;
    let kv_len = (inp.kv_len % 17) as usize;
    let s = AttentionShape::new(
        (inp.batch % 3) as usize,
        kv_heads * (1 + inp.group as usize % 3),
        (inp.q_len % 9) as usize,
        kv_len,
        (inp.head_dim % 21) as usize,
    )
    .with_kv_heads(kv_heads)
    .with_kv_capacity(kv_len + (inp.spare_capacity % 3) as usize)
    .with_causal(inp.causal);
    let Ok((q_n, kv_n)) = s.validate() else {
        let mut lse = vec![sentinel(); 4];
        let before = bits(&lse);
        let e = attention_logsumexp(&s, &[], &[], &mut lse).expect_err("invalid shape accepted");
        assert_untouched("lse", &before, &lse, &e);
        return;
    };
    let rows = s.batch * s.heads * s.q_len;
    let draw = |n: usize, salt: u32| {
        let w: Vec<u32> = inp.words.iter().map(|x| x.rotate_left(salt)).collect();
        inp.values.f32s(&w, n)
    };
    let (mut q, mut k, mut v, mut d_out) =
        (draw(q_n, 0), draw(kv_n, 9), draw(kv_n, 18), draw(q_n, 27));
    let mut out = vec![0.0f32; q_n];
    let mut scratch = vec![0.0f32; baseline_scratch_len(&s).unwrap()];
    baseline_attention(&s, &q, &k, &v, &mut out, &mut scratch).expect("valid shape");
    let mut cut = false;
    for (i, x) in [&mut q, &mut k, &mut v, &mut out, &mut d_out]
        .into_iter()
        .enumerate()
    {
        cut |= shorten(x, inp.short, i as u8);
    }
    let mut lse = vec![sentinel(); rows];
    cut |= shorten(&mut lse, inp.short, 5);
    let before = bits(&lse);
    if let Err(e) = attention_logsumexp(&s, &q, &k, &mut lse) {
        assert_untouched("lse", &before, &lse, &e);
        // Fill it so the backward below still gets to check its own lengths.
        lse.iter_mut().for_each(|x| *x = 0.0);
    }
    let (mut dq, mut dk, mut dv) = (
        vec![sentinel(); q_n],
        vec![sentinel(); kv_n],
        vec![sentinel(); kv_n],
    );
    cut |= shorten(&mut dq, inp.short, 6);
    cut |= shorten(&mut dk, inp.short, 7);
    cut |= shorten(&mut dv, inp.short, 8);
    let mut scratch = vec![0.0f32; attention_backward_scratch_len(&s).unwrap()];
    cut |= shorten(&mut scratch, inp.short, 9);
    let before = [bits(&dq), bits(&dk), bits(&dv)];
    let result = attention_backward(
        &s,
        &q,
        &k,
        &v,
        &out,
        &d_out,
        &lse,
        &mut dq,
        &mut dk,
        &mut dv,
        &mut scratch,
    );
    if let Err(e) = result {
        for (b, (name, x)) in before.iter().zip([("dq", &dq), ("dk", &dk), ("dv", &dv)]) {
            assert_untouched(name, b, x, &e);
        }
        return;
    }
    assert!(!cut, "accepted a slice one element short ({:?})", inp.short);
    let (_, lse_ref, dq_ref, dk_ref, dv_ref) =
        reference(&s, &wide(&q), &wide(&k), &wide(&v), &wide(&d_out));
    for r in 0..rows {
        let i = r % s.q_len;
        if s.visible_keys(i) == 0 {
            assert_eq!(lse[r], f32::NEG_INFINITY, "lse of a row that sees no key");
            assert!(
                dq[r * s.head_dim..][..s.head_dim].iter().all(|&x| x == 0.0),
                "dq of a masked row"
            );
        }
    }
    if inp.values != Values::Unit {
        return;
    }
    let finite = |x: &[f64]| {
        x.iter()
            .map(|&v| if v.is_finite() { v } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let lse_got: Vec<f32> = lse
        .iter()
        .map(|&v| if v.is_finite() { v } else { 0.0 })
        .collect();
    assert_close("lse", &lse_got, &finite(&lse_ref), TOL);
    assert_close("dq", &dq, &dq_ref, TOL);
    // Capacity rows past kv_len are not gradients of anything: compare the used rows.
    let used = |x: &[f32]| -> Vec<f32> {
        x.chunks(s.kv_capacity * s.head_dim)
            .flat_map(|head| head[..s.kv_len * s.head_dim].to_vec())
            .collect()
    };
    let used_ref = |x: &[f64]| -> Vec<f64> {
        x.chunks(s.kv_capacity * s.head_dim)
            .flat_map(|head| head[..s.kv_len * s.head_dim].to_vec())
            .collect()
    };
    if s.kv_capacity > 0 {
        assert_close("dk", &used(&dk), &used_ref(&dk_ref), TOL);
        assert_close("dv", &used(&dv), &used_ref(&dv_ref), TOL);
    }
});
