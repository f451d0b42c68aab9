//! Attention backward by recomputation (FlashAttention-2's backward): the forward keeps only its
//! output `O` and each row's logsumexp `L_i = log sum_j exp(s_ij)`; the backward recomputes the
//! scores tile by tile from `q` and `k`, `p_ij = exp(s_ij − L_i)`, and with `D_i = dO_i·O_i`:
//! `dV_j += p_ij·dO_i`, `ds_ij = p_ij·(dO_i·V_j − D_i)`, `dQ_i += scale·ds_ij·K_j`,
//! `dK_j += scale·ds_ij·Q_i`. Layouts and masking are those of [`AttentionShape`]; `f32` only.

use super::linear::axpy;
use crate::attention::AttentionShape;
use crate::check::{length, product, split};
use crate::rows::dense::dot;
use crate::{Error, Result};

/// Keys per recomputed score tile.
const TILE: usize = 64;

/// Floats of scratch [`attention_backward`] needs: one tile of scores.
pub fn attention_backward_scratch_len(shape: &AttentionShape) -> Result<usize> {
    shape.validate()?;
    Ok(TILE)
}

/// The start of the K/V rows that query head `bh = b·heads + h` reads.
fn kv_start(shape: &AttentionShape, bh: usize) -> Result<usize> {
    let group = shape.heads / shape.kv_heads;
    let (b, h) = (bh / shape.heads, bh % shape.heads);
    product(&[
        b * shape.kv_heads + h / group,
        shape.kv_capacity,
        shape.head_dim,
    ])
}

fn check(shape: &AttentionShape, q: usize, k: usize, rows: usize) -> Result<(usize, usize)> {
    let (q_len, kv_len) = shape.validate()?;
    length("q", q, q_len)?;
    length("k", k, kv_len)?;
    let n_rows = product(&[shape.batch, shape.heads, shape.q_len])?;
    length("lse", rows, n_rows)?;
    Ok((q_len, kv_len))
}

/// Per-row logsumexp of the scaled, masked logits: `lse` is `[batch, heads, q_len]`; a row that
/// sees no key gets `-inf`. Computed tile by tile with a running max, in `f32`.
pub fn attention_logsumexp(
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    lse: &mut [f32],
) -> Result<()> {
    check(shape, q.len(), k.len(), lse.len())?;
    let d = shape.head_dim;
    let per_head = shape.q_len;
    if per_head == 0 {
        return Ok(());
    }
    for (bh, (q_head, lse_head)) in q
        .chunks_exact(per_head * d)
        .zip(lse.chunks_exact_mut(per_head))
        .enumerate()
    {
        let start = kv_start(shape, bh)?;
        let k_head = k
            .get(start..start + shape.kv_len * d)
            .ok_or(Error::Overflow)?;
        for (i, (q_row, out)) in q_head.chunks_exact(d).zip(lse_head.iter_mut()).enumerate() {
            let visible = shape.visible_keys(i);
            let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
            for key in k_head[..visible * d].chunks_exact(d) {
                let s = dot(q_row, key) * shape.scale;
                if s > m {
                    l = l * libm::expf(m - s) + 1.0;
                    m = s;
                } else {
                    l += libm::expf(s - m);
                }
                if s.is_nan() {
                    m = f32::NAN;
                }
            }
            *out = if visible == 0 {
                f32::NEG_INFINITY
            } else {
                m + libm::logf(l)
            };
        }
    }
    Ok(())
}

/// Gradients of attention with respect to `q`, `k` and `v` from the forward output `out`, its
/// gradient `d_out` and the row logsumexps `lse` of [`attention_logsumexp`]. `dq` is overwritten;
/// `dk` and `dv` are zeroed and then accumulated over every query head of their group. `scratch`
/// holds [`attention_backward_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    d_out: &[f32],
    lse: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let (q_total, kv_total) = check(shape, q.len(), k.len(), lse.len())?;
    for (what, len, expected) in [
        ("v", v.len(), kv_total),
        ("out", out.len(), q_total),
        ("d_out", d_out.len(), q_total),
        ("dq", dq.len(), q_total),
        ("dk", dk.len(), kv_total),
        ("dv", dv.len(), kv_total),
    ] {
        length(what, len, expected)?;
    }
    let (scores, _) = split(scratch, TILE)?;
    dk.fill(0.0);
    dv.fill(0.0);
    dq.fill(0.0);
    let d = shape.head_dim;
    let per_head = shape.q_len * d;
    if per_head == 0 {
        return Ok(());
    }
    let scale = shape.scale;
    let heads = q
        .chunks_exact(per_head)
        .zip(out.chunks_exact(per_head))
        .zip(d_out.chunks_exact(per_head))
        .zip(dq.chunks_exact_mut(per_head))
        .zip(lse.chunks_exact(shape.q_len));
    for (bh, ((((q_head, o_head), do_head), dq_head), lse_head)) in heads.enumerate() {
        let start = kv_start(shape, bh)?;
        let end = start + shape.kv_len * d;
        let (k_head, v_head) = match (k.get(start..end), v.get(start..end)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Error::Overflow),
        };
        let (dk_head, dv_head) = match (dk.get_mut(start..end), dv.get_mut(start..end)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Error::Overflow),
        };
        let rows = q_head
            .chunks_exact(d)
            .zip(o_head.chunks_exact(d))
            .zip(do_head.chunks_exact(d))
            .zip(dq_head.chunks_exact_mut(d))
            .zip(lse_head);
        for (i, ((((q_row, o_row), do_row), dq_row), &l)) in rows.enumerate() {
            let visible = shape.visible_keys(i);
            let big_d = dot(do_row, o_row);
            for j0 in (0..visible).step_by(TILE) {
                let j1 = (j0 + TILE).min(visible);
                let s = &mut scores[..j1 - j0];
                for (sj, key) in s.iter_mut().zip(k_head[j0 * d..j1 * d].chunks_exact(d)) {
                    *sj = libm::expf(dot(q_row, key) * scale - l);
                }
                let tile = k_head[j0 * d..j1 * d]
                    .chunks_exact(d)
                    .zip(v_head[j0 * d..j1 * d].chunks_exact(d))
                    .zip(dk_head[j0 * d..j1 * d].chunks_exact_mut(d))
                    .zip(dv_head[j0 * d..j1 * d].chunks_exact_mut(d));
                for ((((key, value), dk_row), dv_row), &p) in tile.zip(s.iter()) {
                    axpy(dv_row, p, do_row);
                    let ds = p * (dot(do_row, value) - big_d) * scale;
                    axpy(dq_row, ds, key);
                    axpy(dk_row, ds, q_row);
                }
            }
        }
    }
    Ok(())
}
