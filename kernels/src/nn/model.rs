//! The early-exit decoder-only model: forward passes over any range of layers with a
//! caller-owned KV cache, and the shared exit. The configuration and weight layout are in
//! [`config`](super::config).
//!
//! A forward over tokens at positions `pos..pos + n` writes their keys and values at those
//! positions and attends to positions `0..pos + n`; entries past that point are never read, so
//! rolling the cache back is just decoding from an earlier position.

use super::config::{kv_cache_len, AttentionKind, ModelConfig, ModelWeights, TensorKind};
use super::embedding::embedding_forward;
use super::layer::{decoder_layer_forward, layer_scratch_len};
use super::linear::{linear_matmul, LinearShape};
use super::norm::rms_norm_forward;
use crate::check::{add, length, mul, split, try_const};
use crate::{Element, Error, Result};
use core::ops::Range;

/// Floats of scratch [`model_forward`] needs for up to `max_tokens` tokens per call (the hidden
/// states plus one layer's working space). [`forward_layers`] and [`exit_logits`] need less.
pub const fn model_scratch_len(
    config: &ModelConfig,
    max_tokens: usize,
    attention: AttentionKind,
) -> Result<usize> {
    add(
        try_const!(mul(max_tokens, config.dim)),
        try_const!(layer_scratch_len(config, max_tokens, attention)),
    )
}

/// The token embeddings of `tokens` into `hidden` (`[n, dim]`).
pub fn embed_tokens<W: Element>(
    weights: &ModelWeights<'_, W>,
    tokens: &[u32],
    hidden: &mut [f32],
) -> Result<()> {
    let c = weights.config();
    embedding_forward(
        c.vocab,
        c.dim,
        weights.shared(TensorKind::Embedding)?,
        tokens,
        hidden,
    )
}

/// Runs layers `layers` (a sub-range of `0..L`) over the hidden states of `n = hidden.len()/dim`
/// tokens at positions `pos..pos + n`, in place, reading and writing those layers' KV cache.
/// `scratch` holds [`layer_scratch_len`] floats for `n` tokens.
pub fn forward_layers<W: Element>(
    weights: &ModelWeights<'_, W>,
    layers: Range<usize>,
    attention: AttentionKind,
    pos: usize,
    hidden: &mut [f32],
    kv: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let c = *weights.config();
    if layers.end > c.layers || layers.start > layers.end {
        return Err(Error::BadParameter("layer range outside the model"));
    }
    length("kv cache", kv.len(), kv_cache_len(&c)?)?;
    let block = mul(c.kv_heads, mul(c.max_seq, c.head_dim())?)?;
    for l in layers {
        let lw = weights.layer(l)?;
        let start = mul(l, mul(2, block)?)?;
        let cache = kv
            .get_mut(start..start + 2 * block)
            .ok_or(Error::Overflow)?;
        let (k_cache, v_cache) = cache.split_at_mut(block);
        decoder_layer_forward(&c, &lw, attention, pos, hidden, k_cache, v_cache, scratch)?;
    }
    Ok(())
}

/// The shared exit `g`: final RMSNorm and LM head of `n` hidden states (`[n, dim]`) into `logits`
/// (`[n, vocab]`). `scratch` holds at least `n · dim` floats.
pub fn exit_logits<W: Element>(
    weights: &ModelWeights<'_, W>,
    hidden: &[f32],
    logits: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let c = weights.config();
    let (normed, _) = split(scratch, hidden.len())?;
    rms_norm_forward(
        c.dim,
        c.norm_eps,
        hidden,
        weights.shared(TensorKind::FinalNorm)?,
        normed,
    )?;
    let rows = hidden.len().checked_div(c.dim).unwrap_or(0);
    linear_matmul(
        LinearShape::new(rows, c.dim, c.vocab),
        normed,
        weights.shared(TensorKind::LmHead)?,
        logits,
    )
}

/// Early-exit forward: embeds `tokens` (positions `pos..pos + n`), runs the first `exit_layer`
/// layers (`1..=L`; `L` is the full model) and the shared exit, writing `[n, vocab]` logits.
/// `scratch` holds [`model_scratch_len`] floats for `n` tokens.
#[allow(clippy::too_many_arguments)]
pub fn model_forward<W: Element>(
    weights: &ModelWeights<'_, W>,
    tokens: &[u32],
    pos: usize,
    exit_layer: usize,
    attention: AttentionKind,
    kv: &mut [f32],
    logits: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let c = *weights.config();
    if exit_layer == 0 || exit_layer > c.layers {
        return Err(Error::BadParameter("exit_layer must be in 1..=layers"));
    }
    let (hidden, rest) = split(scratch, mul(tokens.len(), c.dim)?)?;
    embed_tokens(weights, tokens, hidden)?;
    forward_layers(weights, 0..exit_layer, attention, pos, hidden, kv, rest)?;
    exit_logits(weights, hidden, logits, rest)
}
