//! One pre-norm decoder layer for inference with a KV cache:
//! `h += Wo·attn(rope(Wq·n(h)), rope(Wk·n(h)), Wv·n(h))`, then `h += mlp(n'(h))`.

use super::config::{AttentionKind, LayerWeights, ModelConfig};
use super::linear::{linear_matmul, LinearShape};
use super::mlp::swiglu_mlp_forward;
use super::norm::rms_norm_forward;
use super::rope::rope_forward;
use crate::check::{length, mul, split};
use crate::{
    baseline_attention, baseline_scratch_len, flash_attention, flash_scratch_len, AttentionShape,
    Element, Error, Result,
};

/// The attention shape of `n` query tokens at positions `pos..pos + n` against a cache of
/// capacity `max_seq`.
fn attention_shape(c: &ModelConfig, n: usize, kv_len: usize) -> AttentionShape {
    AttentionShape::new(1, c.heads, n, kv_len, c.head_dim())
        .with_kv_heads(c.kv_heads)
        .with_kv_capacity(c.max_seq)
        .with_causal(true)
}

fn attention_scratch(c: &ModelConfig, n: usize, attention: AttentionKind) -> Result<usize> {
    let shape = attention_shape(c, n.max(1), c.max_seq);
    match attention {
        AttentionKind::Baseline => baseline_scratch_len(&shape),
        AttentionKind::Flash(tiles) => flash_scratch_len(&shape, tiles),
    }
}

/// Floats of scratch [`decoder_layer_forward`] needs for up to `max_tokens` tokens.
pub fn layer_scratch_len(
    config: &ModelConfig,
    max_tokens: usize,
    attention: AttentionKind,
) -> Result<usize> {
    config.validate()?;
    let n = max_tokens;
    let rows = mul(n, config.dim)?;
    let kv = mul(n, config.kv_dim())?;
    let ffn = mul(n, config.ffn_hidden)?;
    // normed, q, q head-major, attention out head-major; k, v; gate, up, h; attention scratch.
    [
        mul(4, rows)?,
        mul(2, kv)?,
        mul(3, ffn)?,
        attention_scratch(config, n, attention)?,
    ]
    .iter()
    .try_fold(0usize, |a, &b| a.checked_add(b).ok_or(Error::Overflow))
}

/// `[n, heads, hd]` → `[heads, n, hd]`.
fn to_head_major(src: &[f32], dst: &mut [f32], n: usize, heads: usize, hd: usize) {
    for (t, row) in src.chunks_exact(heads * hd).enumerate().take(n) {
        for (h, feat) in row.chunks_exact(hd).enumerate() {
            let at = (h * n + t) * hd;
            if let Some(d) = dst.get_mut(at..at + hd) {
                d.copy_from_slice(feat);
            }
        }
    }
}

/// `[heads, n, hd]` → `[n, heads, hd]`.
fn to_token_major(src: &[f32], dst: &mut [f32], n: usize, heads: usize, hd: usize) {
    for (t, row) in dst.chunks_exact_mut(heads * hd).enumerate().take(n) {
        for (h, feat) in row.chunks_exact_mut(hd).enumerate() {
            let at = (h * n + t) * hd;
            if let Some(s) = src.get(at..at + hd) {
                feat.copy_from_slice(s);
            }
        }
    }
}

/// Runs one decoder layer over the hidden states `hidden` (`[n, dim]`, updated in place) of the
/// tokens at positions `pos..pos + n`. Their keys and values are written into `k_cache` and
/// `v_cache` (each `[kv_heads, max_seq, head_dim]`) at those positions, and every token attends
/// causally to cache positions `0..=its own`. `scratch` holds [`layer_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub fn decoder_layer_forward<W: Element>(
    config: &ModelConfig,
    weights: &LayerWeights<'_, W>,
    attention: AttentionKind,
    pos: usize,
    hidden: &mut [f32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let c = config;
    let (dim, hd, kvd) = (c.dim, c.head_dim(), c.kv_dim());
    if dim == 0 || !hidden.len().is_multiple_of(dim) {
        return Err(Error::LengthMismatch {
            what: "hidden",
            expected: dim,
            actual: hidden.len(),
        });
    }
    let n = hidden.len() / dim;
    let end = pos.checked_add(n).ok_or(Error::Overflow)?;
    if end > c.max_seq {
        return Err(Error::BadParameter(
            "positions past max_seq (KV cache full)",
        ));
    }
    let cache_len = mul(c.kv_heads, mul(c.max_seq, hd)?)?;
    length("k_cache", k_cache.len(), cache_len)?;
    length("v_cache", v_cache.len(), cache_len)?;
    let rows = mul(n, dim)?;
    let (normed, rest) = split(scratch, rows)?;
    let (q, rest) = split(rest, rows)?;
    let (q_heads, rest) = split(rest, rows)?;
    let (o_heads, rest) = split(rest, rows)?;
    let (k, rest) = split(rest, mul(n, kvd)?)?;
    let (v, rest) = split(rest, mul(n, kvd)?)?;
    let ffn = mul(n, c.ffn_hidden)?;
    let (gate, rest) = split(rest, ffn)?;
    let (up, rest) = split(rest, ffn)?;
    let (h, attn_scratch) = split(rest, ffn)?;

    // Attention block.
    rms_norm_forward(dim, c.norm_eps, hidden, weights.attn_norm, normed)?;
    linear_matmul(LinearShape::new(n, dim, dim), normed, weights.wq, q)?;
    linear_matmul(LinearShape::new(n, dim, kvd), normed, weights.wk, k)?;
    linear_matmul(LinearShape::new(n, dim, kvd), normed, weights.wv, v)?;
    rope_forward(c.heads, hd, pos, c.rope_theta, q)?;
    rope_forward(c.kv_heads, hd, pos, c.rope_theta, k)?;
    for (t, (k_row, v_row)) in k.chunks_exact(kvd).zip(v.chunks_exact(kvd)).enumerate() {
        for (g, (kf, vf)) in k_row
            .chunks_exact(hd)
            .zip(v_row.chunks_exact(hd))
            .enumerate()
        {
            let at = (g * c.max_seq + pos + t) * hd;
            let (kd, vd) = match (k_cache.get_mut(at..at + hd), v_cache.get_mut(at..at + hd)) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(Error::Overflow),
            };
            kd.copy_from_slice(kf);
            vd.copy_from_slice(vf);
        }
    }
    to_head_major(q, q_heads, n, c.heads, hd);
    let shape = attention_shape(c, n, end);
    match attention {
        AttentionKind::Baseline => {
            baseline_attention(&shape, q_heads, k_cache, v_cache, o_heads, attn_scratch)?
        }
        AttentionKind::Flash(tiles) => flash_attention(
            &shape,
            tiles,
            q_heads,
            k_cache,
            v_cache,
            o_heads,
            attn_scratch,
        )?,
    }
    to_token_major(o_heads, q, n, c.heads, hd);
    linear_matmul(LinearShape::new(n, dim, dim), q, weights.wo, normed)?;
    for (x, &a) in hidden.iter_mut().zip(normed.iter()) {
        *x += a;
    }

    // MLP block.
    rms_norm_forward(dim, c.norm_eps, hidden, weights.mlp_norm, normed)?;
    swiglu_mlp_forward(
        n,
        dim,
        c.ffn_hidden,
        normed,
        weights.w_gate,
        weights.w_up,
        weights.w_down,
        gate,
        up,
        h,
        q,
    )?;
    for (x, &a) in hidden.iter_mut().zip(q.iter()) {
        *x += a;
    }
    Ok(())
}
