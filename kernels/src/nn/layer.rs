//! One pre-norm decoder layer, wired once:
//! `h += Wo·attn(rope(Wq·n(h)), rope(Wk·n(h)), Wv·n(h))`, then `h += mlp(n'(h))`.
//!
//! [`decoder_layer_forward`] runs it for inference against a KV cache;
//! [`decoder_layer_train_forward`] runs the same wiring over a whole sequence and also saves what
//! [`decoder_layer_backward`](crate::nn::decoder_layer_backward) needs. Both go through one
//! internal forward whose only extras are the optional save target and the
//! [`ActivationRounding`] hook, so with [`ActivationRounding::F32`] the training forward's output
//! equals the inference forward's bit for bit.

use super::activations::Activations;
use super::attention_backward::attention_logsumexp;
use super::config::{AttentionKind, LayerWeights, ModelConfig};
use super::heads::to_head_major;
use super::linear::{linear_matmul, LinearShape};
use super::mlp::{swiglu_mlp_forward_rounded, MlpShape, MlpWeights};
use super::norm::rms_norm_forward;
use super::rope::rope_forward;
use super::rounding::ActivationRounding;
use crate::attention::shape::Layout;
use crate::attention::{
    baseline_attention, baseline_scratch_len, flash_attention, flash_scratch_len, AttentionShape,
};
use crate::check::{length, mul, product, split, sum, try_const};
use crate::{Element, Error, Result};

/// The causal attention shape of `n` query tokens, the last of `kv_len` positions, against
/// key/value heads of `capacity` rows.
pub(crate) const fn attention_shape(
    c: &ModelConfig,
    n: usize,
    kv_len: usize,
    capacity: usize,
) -> AttentionShape {
    AttentionShape::new(1, c.heads, n, kv_len, c.head_dim())
        .with_kv_heads(c.kv_heads)
        .with_kv_capacity(capacity)
        .with_causal(true)
}

/// The number of tokens in `hidden` (`[n, dim]`).
pub(crate) fn tokens(c: &ModelConfig, what: &'static str, hidden: usize) -> Result<usize> {
    if c.dim == 0 || !hidden.is_multiple_of(c.dim) {
        return Err(Error::LengthMismatch {
            what,
            expected: c.dim,
            actual: hidden,
        });
    }
    Ok(hidden / c.dim)
}

/// Scratch of the forward of up to `n` tokens attending to up to `kv_len` positions.
const fn forward_scratch_len(
    c: &ModelConfig,
    n: usize,
    kv_len: usize,
    attention: AttentionKind,
) -> Result<usize> {
    let rows = try_const!(mul(n, c.dim));
    let kv = try_const!(mul(n, c.kv_dim()));
    let ffn = try_const!(mul(n, c.ffn_hidden));
    let shape = attention_shape(c, if n == 0 { 1 } else { n }, kv_len, kv_len);
    let attention = match attention {
        AttentionKind::Baseline => try_const!(baseline_scratch_len(&shape)),
        AttentionKind::Flash(tiles) => try_const!(flash_scratch_len(&shape, tiles)),
    };
    // normed, q, attention out (both token-major); k, v; gate, up, h; attention scratch.
    sum(&[
        try_const!(mul(3, rows)),
        try_const!(mul(2, kv)),
        try_const!(mul(3, ffn)),
        attention,
    ])
}

/// Floats of scratch [`decoder_layer_forward`] needs for up to `max_tokens` tokens.
pub const fn layer_scratch_len(
    config: &ModelConfig,
    max_tokens: usize,
    attention: AttentionKind,
) -> Result<usize> {
    try_const!(config.validate());
    forward_scratch_len(config, max_tokens, config.max_seq, attention)
}

/// Floats of scratch [`decoder_layer_train_forward`] needs for a sequence of `tokens` tokens.
pub const fn decoder_layer_train_scratch_len(
    config: &ModelConfig,
    tokens: usize,
    attention: AttentionKind,
) -> Result<usize> {
    try_const!(config.validate());
    forward_scratch_len(config, tokens, tokens, attention)
}

/// Where a forward writes keys and values: `[kv_heads, capacity, head_dim]` each.
struct KvCache<'a> {
    k: &'a mut [f32],
    v: &'a mut [f32],
    capacity: usize,
}

/// Copies `src` into the saved activation `dst`.
fn keep(dst: &mut [f32], src: &[f32]) -> Result<()> {
    length("saved activation", src.len(), dst.len())?;
    dst.copy_from_slice(src);
    Ok(())
}

/// The layer's one wiring. Runs the tokens at positions `pos..pos + n` of `hidden` (`[n, dim]`,
/// updated in place) through the layer, writing their keys and values into `cache`, rounding
/// every activation an op produces by `rounding`, and copying into `save` (whose `k_h`, `v_h`
/// are unused: the cache is where those live) what the backward needs.
#[allow(clippy::too_many_arguments)]
fn forward<W: Element>(
    c: &ModelConfig,
    weights: &LayerWeights<'_, W>,
    attention: AttentionKind,
    rounding: ActivationRounding,
    pos: usize,
    hidden: &mut [f32],
    cache: KvCache<'_>,
    scratch: &mut [f32],
    mut save: Option<&mut Activations<&mut [f32]>>,
) -> Result<()> {
    let (dim, hd, kvd) = (c.dim, c.head_dim(), c.kv_dim());
    let n = tokens(c, "hidden", hidden.len())?;
    let end = pos.checked_add(n).ok_or(Error::Overflow)?;
    if end > cache.capacity {
        return Err(Error::BadParameter(
            "positions past max_seq (KV cache full)",
        ));
    }
    let cache_len = product(&[c.kv_heads, cache.capacity, hd])?;
    let KvCache {
        k: k_cache,
        v: v_cache,
        capacity,
    } = cache;
    length("k_cache", k_cache.len(), cache_len)?;
    length("v_cache", v_cache.len(), cache_len)?;
    let rows = mul(n, dim)?;
    let (normed, rest) = split(scratch, rows)?;
    let (q, rest) = split(rest, rows)?;
    let (o, rest) = split(rest, rows)?;
    let (k, rest) = split(rest, mul(n, kvd)?)?;
    let (v, rest) = split(rest, mul(n, kvd)?)?;
    let ffn = mul(n, c.ffn_hidden)?;
    let (gate, rest) = split(rest, ffn)?;
    let (up, rest) = split(rest, ffn)?;
    let (h, attn_scratch) = split(rest, ffn)?;
    if let Some(s) = save.as_deref_mut() {
        keep(s.x_in, hidden)?;
    }

    // Attention block.
    rms_norm_forward(dim, c.norm_eps, hidden, weights.attn_norm, normed)?;
    rounding.round(normed);
    linear_matmul(LinearShape::new(n, dim, dim), normed, weights.wq, q)?;
    linear_matmul(LinearShape::new(n, dim, kvd), normed, weights.wk, k)?;
    linear_matmul(LinearShape::new(n, dim, kvd), normed, weights.wv, v)?;
    rope_forward(c.heads, hd, pos, c.rope_theta, q)?;
    rope_forward(c.kv_heads, hd, pos, c.rope_theta, k)?;
    for x in [&mut *q, &mut *k, &mut *v] {
        rounding.round(x);
    }
    // `.max(1)`: positive in a valid config; no chunks_exact(0) panic is compiled.
    // Indexed, not zipped: a zip of `ChunksExact` may be compiled out of line with a division
    // that could panic (opt-level "s").
    for (t, k_row) in k.chunks_exact(kvd.max(1)).enumerate() {
        let v_row = v.get(t * kvd..(t + 1) * kvd).ok_or(Error::Overflow)?;
        for (g, kf) in k_row.chunks_exact(hd.max(1)).enumerate() {
            let vf = v_row.get(g * hd..(g + 1) * hd).ok_or(Error::Overflow)?;
            let at = (g * capacity + pos + t) * hd;
            let (kd, vd) = match (k_cache.get_mut(at..at + hd), v_cache.get_mut(at..at + hd)) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(Error::Overflow),
            };
            // Element-wise (the lengths are equal): no length-mismatch panic is compiled.
            kd.iter_mut().zip(kf).for_each(|(d, &s)| *d = s);
            vd.iter_mut().zip(vf).for_each(|(d, &s)| *d = s);
        }
    }
    // Attention reads the token-major queries and writes a token-major output (row strides):
    // no transposes. A training forward saves head-major copies for the backward pass.
    let shape = attention_shape(c, n, end, capacity);
    let tokens = shape.with_layout(Layout::TokenMajor);
    match attention {
        AttentionKind::Baseline => {
            baseline_attention(&tokens, q, k_cache, v_cache, o, attn_scratch)?
        }
        AttentionKind::Flash(tiles) => {
            flash_attention(&tokens, tiles, q, k_cache, v_cache, o, attn_scratch)?
        }
    }
    rounding.round(o);
    if let Some(s) = save.as_deref_mut() {
        keep(s.xn1, normed)?;
        to_head_major(q, s.q_h, n, c.heads, hd)?;
        to_head_major(o, s.o_h, n, c.heads, hd)?;
        keep(s.o_t, o)?;
        attention_logsumexp(&shape, s.q_h, k_cache, s.lse)?;
    }
    linear_matmul(LinearShape::new(n, dim, dim), o, weights.wo, normed)?;
    for (x, &a) in hidden.iter_mut().zip(normed.iter()) {
        *x += a;
    }
    rounding.round(hidden);
    if let Some(s) = save.as_deref_mut() {
        keep(s.x_mid, hidden)?;
    }

    // MLP block.
    rms_norm_forward(dim, c.norm_eps, hidden, weights.mlp_norm, normed)?;
    rounding.round(normed);
    let mlp = MlpWeights {
        gate: weights.w_gate,
        up: weights.w_up,
        down: weights.w_down,
    };
    let shape = MlpShape::new(n, dim, c.ffn_hidden);
    swiglu_mlp_forward_rounded(shape, &mlp, normed, [gate, up, h], q, rounding)?;
    if let Some(s) = save {
        keep(s.xn2, normed)?;
        keep(s.gate, gate)?;
        keep(s.up, up)?;
    }
    for (x, &a) in hidden.iter_mut().zip(q.iter()) {
        *x += a;
    }
    rounding.round(hidden);
    Ok(())
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
    let cache = KvCache {
        k: k_cache,
        v: v_cache,
        capacity: config.max_seq,
    };
    forward(
        config,
        weights,
        attention,
        ActivationRounding::F32,
        pos,
        hidden,
        cache,
        scratch,
        None,
    )
}

/// The training forward of one decoder layer over a whole sequence: the tokens of `hidden`
/// (`[n, dim]`, `n <= max_seq`, updated in place) at positions `0..n`, each attending causally
/// to the tokens up to its own. Every activation an op produces is rounded by `rounding`
/// ([`ActivationRounding::F32`]: none, and `hidden` ends up exactly as [`decoder_layer_forward`]
/// at `pos = 0` leaves it). What the backward needs (keys and values included; there is no KV
/// cache) is written into `activations`, of
/// [`decoder_layer_activations_len`](crate::nn::decoder_layer_activations_len) floats for `n`
/// tokens. `scratch` holds [`decoder_layer_train_scratch_len`] floats.
pub fn decoder_layer_train_forward<W: Element>(
    config: &ModelConfig,
    weights: &LayerWeights<'_, W>,
    attention: AttentionKind,
    rounding: ActivationRounding,
    hidden: &mut [f32],
    activations: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let n = tokens(config, "hidden", hidden.len())?;
    if n > config.max_seq {
        return Err(Error::BadParameter("a sequence longer than max_seq"));
    }
    let mut save = Activations::split_mut(config, n, activations)?;
    let cache = KvCache {
        k: core::mem::take(&mut save.k_h),
        v: core::mem::take(&mut save.v_h),
        capacity: n,
    };
    forward(
        config,
        weights,
        attention,
        rounding,
        0,
        hidden,
        cache,
        scratch,
        Some(&mut save),
    )
}
