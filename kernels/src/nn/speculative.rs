//! Greedy decoding with the full model, and greedy self-speculative decoding (LayerSkip §4):
//! draft with the first `E` layers and the shared exit, verify with layers `E..L` in one pass.
//!
//! One round, with `n` tokens known, caches valid for positions `0..n-1` in every layer and the
//! last token `x` not yet processed, and `d' = min(d, tokens still wanted − 1)`:
//! 1. **Draft**: feed `x`, then each drafted token, through layers `0..E` one at a time at
//!    positions `n−1 .. n−1+d'` (filling those layers' KV cache), keeping each token's hidden
//!    state after layer `E` (the *exit query cache*); the exit of the first `d'` gives the drafts
//!    `y_1..y_d'`.
//! 2. **Verify**: run layers `E..L` once over the `d'+1` saved hidden states (positions
//!    `n−1 .. n−1+d'`): the full model's greedy tokens `z_1..z_{d'+1}` for every draft position.
//!    Layers `< E` are not run again: their KV entries from drafting are exactly the full model's.
//! 3. **Accept** the longest prefix `y_1..y_a` with `y_i = z_i`, then append `z_{a+1}`.
//! 4. **Roll back**: the next round starts at position `n + a`; cache entries past it (from
//!    rejected drafts) are overwritten before anything reads them.
//!
//! Every kernel computes a row the same way whether it is alone or in a batch (see
//! [`linear_matmul`](crate::nn::linear_matmul)), so the verifier's logits equal the full model's bit
//! for bit and the output is identical to [`greedy_decode`].

use super::config::{kv_cache_len, AttentionKind, ModelConfig, ModelWeights};
use super::layer::layer_scratch_len;
use super::loss::argmax;
use super::model::{embed_tokens, exit_logits, forward_layers};
use crate::check::{add, length, mul, split, sum, try_const};
use crate::{Element, Error, Result};

/// What a decoding run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Tokens generated.
    pub generated: usize,
    /// Draft-verify rounds (one per token for full decoding).
    pub rounds: usize,
    /// Tokens drafted by the early exit.
    pub drafted: usize,
    /// Drafted tokens the full model agreed with.
    pub accepted: usize,
    /// Layer passes, a batched pass over several tokens counting once (the paper's
    /// memory-bound cost model); full decoding makes `generated · L`.
    pub layer_passes: usize,
    /// Layer evaluations per token (the compute cost); full decoding makes `generated · L`.
    pub token_layer_evals: usize,
}

impl DecodeStats {
    /// `accepted / drafted` (0 when nothing was drafted).
    pub fn acceptance(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

/// Floats of scratch [`self_speculative_decode`] needs for drafts of up to `draft` tokens
/// (`draft = 0` for [`greedy_decode`]): room for `draft + 1` tokens per layer call, which is also
/// the prefill's chunk. A `const fn`.
pub const fn speculative_scratch_len(
    config: &ModelConfig,
    draft: usize,
    attention: AttentionKind,
) -> Result<usize> {
    decode_scratch_len(config, try_const!(add(draft, 1)), attention)
}

/// Floats of scratch for `tokens` tokens per layer call. Decoding with drafts of up to
/// `tokens - 1` accepts it, and the prompt is then prefilled `tokens` at a time: more scratch,
/// fewer passes over the weights for a long prompt. A `const fn`.
pub const fn decode_scratch_len(
    config: &ModelConfig,
    tokens: usize,
    attention: AttentionKind,
) -> Result<usize> {
    let n = if tokens == 0 { 1 } else { tokens };
    sum(&[
        try_const!(mul(n, config.dim)),
        try_const!(mul(n, config.vocab)),
        try_const!(layer_scratch_len(config, n, attention)),
    ])
}

struct Buffers<'s> {
    states: &'s mut [f32],
    logits: &'s mut [f32],
    rest: &'s mut [f32],
}

/// Splits the scratch for the most tokens per call it holds (at least `draft + 1`, at most
/// `max_seq`).
fn buffers<'s>(
    c: &ModelConfig,
    draft: usize,
    attention: AttentionKind,
    scratch: &'s mut [f32],
) -> Result<Buffers<'s>> {
    let fits =
        |n: usize| matches!(decode_scratch_len(c, n, attention), Ok(len) if len <= scratch.len());
    let least = add(draft, 1)?;
    if !fits(least) {
        return Err(Error::ScratchTooSmall {
            needed: speculative_scratch_len(c, draft, attention)?,
            actual: scratch.len(),
        });
    }
    // The scratch length grows with the tokens per call: find the largest that fits.
    let (mut lo, mut hi) = (least, c.max_seq.max(least));
    while lo < hi {
        let mid = hi - (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let (states, rest) = split(scratch, mul(lo, c.dim)?)?;
    let (logits, rest) = split(rest, mul(lo, c.vocab)?)?;
    Ok(Buffers {
        states,
        logits,
        rest,
    })
}

/// Checks the inputs and runs every prompt token but the last through all layers, in chunks.
fn prefill<W: Element>(
    weights: &ModelWeights<'_, W>,
    prompt: &[u32],
    generate: usize,
    attention: AttentionKind,
    kv: &mut [f32],
    buf: &mut Buffers<'_>,
) -> Result<()> {
    let c = *weights.config();
    if prompt.is_empty() {
        return Err(Error::ZeroDimension("prompt"));
    }
    let total = prompt.len().checked_add(generate).ok_or(Error::Overflow)?;
    if total > c.max_seq {
        return Err(Error::BadParameter(
            "prompt + generated tokens exceed max_seq",
        ));
    }
    length("kv cache", kv.len(), kv_cache_len(&c)?)?;
    let chunk = buf.states.len().checked_div(c.dim).unwrap_or(0).max(1);
    let (_, body) = prompt.split_last().ok_or(Error::ZeroDimension("prompt"))?;
    for (i, toks) in body.chunks(chunk).enumerate() {
        let h = buf
            .states
            .get_mut(..toks.len() * c.dim)
            .ok_or(Error::Overflow)?;
        embed_tokens(weights, toks, h)?;
        forward_layers(weights, 0..c.layers, attention, i * chunk, h, kv, buf.rest)?;
    }
    Ok(())
}

/// Greedy decoding with the full model, one token per step: fills `out` with the next
/// `out.len()` tokens after `prompt`. `kv` holds [`kv_cache_len`] floats, `scratch`
/// [`speculative_scratch_len`] with `draft = 0`.
pub fn greedy_decode<W: Element>(
    weights: &ModelWeights<'_, W>,
    prompt: &[u32],
    attention: AttentionKind,
    kv: &mut [f32],
    scratch: &mut [f32],
    out: &mut [u32],
) -> Result<DecodeStats> {
    let c = *weights.config();
    let mut buf = buffers(&c, 0, attention, scratch)?;
    prefill(weights, prompt, out.len(), attention, kv, &mut buf)?;
    let mut last = *prompt.last().ok_or(Error::ZeroDimension("prompt"))?;
    let mut stats = DecodeStats::default();
    let h = buf.states.get_mut(..c.dim).ok_or(Error::Overflow)?;
    let logits = buf.logits.get_mut(..c.vocab).ok_or(Error::Overflow)?;
    for (g, slot) in out.iter_mut().enumerate() {
        let pos = prompt.len() - 1 + g;
        embed_tokens(weights, &[last], h)?;
        forward_layers(weights, 0..c.layers, attention, pos, h, kv, buf.rest)?;
        exit_logits(weights, h, logits, buf.rest)?;
        last = argmax(logits)?;
        *slot = last;
        stats.generated += 1;
        stats.rounds += 1;
        stats.layer_passes += c.layers;
        stats.token_layer_evals += c.layers;
    }
    Ok(stats)
}

/// Greedy self-speculative decoding: drafts up to `draft` tokens with the first `exit_layer`
/// layers, verifies them with the remaining layers in one pass, and fills `out` with exactly the
/// tokens [`greedy_decode`] would produce. `exit_layer` is in `1..=L` (`L` accepts every draft);
/// `draft >= 1`. `kv` holds [`kv_cache_len`] floats, `scratch` [`speculative_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn self_speculative_decode<W: Element>(
    weights: &ModelWeights<'_, W>,
    prompt: &[u32],
    exit_layer: usize,
    draft: usize,
    attention: AttentionKind,
    kv: &mut [f32],
    scratch: &mut [f32],
    out: &mut [u32],
) -> Result<DecodeStats> {
    let c = *weights.config();
    if exit_layer == 0 || exit_layer > c.layers {
        return Err(Error::BadParameter("exit_layer must be in 1..=layers"));
    }
    if draft == 0 {
        return Err(Error::ZeroDimension("draft"));
    }
    let (e, dim, vocab) = (exit_layer, c.dim, c.vocab);
    let mut buf = buffers(&c, draft, attention, scratch)?;
    prefill(weights, prompt, out.len(), attention, kv, &mut buf)?;
    let mut last = *prompt.last().ok_or(Error::ZeroDimension("prompt"))?;
    let mut stats = DecodeStats::default();
    let mut produced = 0usize;
    while produced < out.len() {
        let base = prompt.len() - 1 + produced; // position of `last`
        let d = draft.min(out.len() - produced - 1);
        // Draft: d + 1 tokens through layers 0..E, one at a time; heads for the first d.
        let mut tok = last;
        for i in 0..=d {
            let h = buf
                .states
                .get_mut(i * dim..(i + 1) * dim)
                .ok_or(Error::Overflow)?;
            embed_tokens(weights, &[tok], h)?;
            forward_layers(weights, 0..e, attention, base + i, h, kv, buf.rest)?;
            stats.layer_passes += e;
            stats.token_layer_evals += e;
            if i < d {
                let logits = buf.logits.get_mut(..vocab).ok_or(Error::Overflow)?;
                exit_logits(weights, h, logits, buf.rest)?;
                tok = argmax(logits)?;
                if let Some(slot) = out.get_mut(produced + i) {
                    *slot = tok;
                }
            }
        }
        // Verify: layers E..L once over the exit query cache, then the shared exit.
        let states = buf.states.get_mut(..(d + 1) * dim).ok_or(Error::Overflow)?;
        forward_layers(weights, e..c.layers, attention, base, states, kv, buf.rest)?;
        let logits = buf
            .logits
            .get_mut(..(d + 1) * vocab)
            .ok_or(Error::Overflow)?;
        exit_logits(weights, states, logits, buf.rest)?;
        stats.layer_passes += c.layers - e;
        stats.token_layer_evals += (d + 1) * (c.layers - e);
        // Accept the agreeing prefix, then the verifier's own token.
        let mut accepted = 0;
        let mut next = 0;
        for (i, row) in logits.chunks_exact(vocab.max(1)).enumerate() {
            next = argmax(row)?;
            if i < d && out.get(produced + i) == Some(&next) {
                accepted += 1;
            } else {
                break;
            }
        }
        if let Some(slot) = out.get_mut(produced + accepted) {
            *slot = next;
        }
        stats.drafted += d;
        stats.accepted += accepted;
        stats.rounds += 1;
        produced += accepted + 1;
        last = next;
    }
    stats.generated = out.len();
    Ok(stats)
}
