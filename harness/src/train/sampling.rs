//! Sampling with temperature from the early-exit model: plain sampling from the full model, and
//! self-speculative *sampling* (Leviathan et al. 2023, "Fast Inference from Transformers via
//! Speculative Decoding", Algorithm 1) with the first `E` layers as the draft model. Its output
//! has exactly the full model's distribution:
//!
//! - the draft samples `y_i ~ q_i = softmax(draft logits / T)` one token at a time;
//! - the full model's `p_i = softmax(full logits / T)` for every draft position comes from one
//!   verify pass over layers `E..L` (the same round structure as
//!   [`self_speculative_decode`](tessera_kernels::nn::self_speculative_decode));
//! - `y_i` is accepted with probability `min(1, p_i(y_i) / q_i(y_i))`; at the first rejection the
//!   token is drawn from the residual `norm(max(0, p_i − q_i))` and the round ends; when every
//!   draft is accepted one more token is drawn from `p_{d+1}`.
//!
//! The kernels compute a row the same way alone or in a batch, so the verifier's `p_i` equal the
//! full model's one-token-at-a-time distributions bit for bit. Harness code (std, allocates per
//! call); the kernels it calls are the no_std ones.

use anyhow::{ensure, Context};
use rand::Rng;
use tessera_kernels::nn::{
    embed_tokens, exit_logits, forward_layers, kv_cache_len, layer_scratch_len, AttentionKind,
    ModelWeights,
};

/// What a sampling run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SampleStats {
    /// Draft tokens proposed.
    pub drafted: usize,
    /// Draft tokens accepted.
    pub accepted: usize,
    /// Draft-verify rounds.
    pub rounds: usize,
}

/// The acceptance rule on a rejected draft token (only [`Rule::Leviathan`] is correct; the other
/// exists so the distribution test can show that it detects a wrong rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Resample from `norm(max(0, p − q))`: the output has the full model's distribution.
    Leviathan,
    /// Wrong on purpose: resample from `p` itself, which over-weights tokens the draft favours.
    ResampleFromTarget,
}

/// `softmax(logits / t)` in place.
fn softmax_t(logits: &mut [f32], t: f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for x in logits.iter_mut() {
        let e = (((*x - max) / t) as f64).exp();
        *x = e as f32;
        sum += e;
    }
    logits
        .iter_mut()
        .for_each(|x| *x = (*x as f64 / sum) as f32);
}

/// A draw from the (unnormalised, non-negative) weights `w`.
fn draw(w: &[f32], rng: &mut impl Rng) -> u32 {
    let total: f64 = w.iter().map(|&x| x as f64).sum();
    let mut u = rng.random::<f64>() * total;
    for (i, &x) in w.iter().enumerate() {
        u -= x as f64;
        if u < 0.0 {
            return i as u32;
        }
    }
    // Rounding left u >= 0 past the end: the last token with weight.
    w.iter().rposition(|&x| x > 0.0).unwrap_or(0) as u32
}

/// Buffers of one sampling run.
struct Work {
    kv: Vec<f32>,
    scratch: Vec<f32>,
    states: Vec<f32>,
    logits: Vec<f32>,
}

impl Work {
    fn new(w: &ModelWeights<'_, f32>, tokens: usize) -> anyhow::Result<Work> {
        let c = w.config();
        let n = tokens.max(1);
        Ok(Work {
            kv: vec![0.0; kv_cache_len(c)?],
            scratch: vec![0.0; layer_scratch_len(c, n, AttentionKind::Baseline)?.max(n * c.dim)],
            states: vec![0.0; n * c.dim],
            logits: vec![0.0; n * c.vocab],
        })
    }

    /// Runs every prompt token but the last through all layers.
    fn prefill(&mut self, w: &ModelWeights<'_, f32>, prompt: &[u32]) -> anyhow::Result<()> {
        let c = *w.config();
        let body = &prompt[..prompt.len() - 1];
        if !body.is_empty() {
            let h = &mut self.states[..body.len() * c.dim];
            embed_tokens(w, body, h)?;
            let a = AttentionKind::Baseline;
            forward_layers(w, 0..c.layers, a, 0, h, &mut self.kv, &mut self.scratch)?;
        }
        Ok(())
    }
}

fn check(w: &ModelWeights<'_, f32>, prompt: &[u32], out: &[u32], t: f32) -> anyhow::Result<()> {
    let c = w.config();
    ensure!(!prompt.is_empty(), "the prompt is empty");
    ensure!(
        t.is_finite() && t > 0.0,
        "the temperature must be finite and positive, not {t}"
    );
    ensure!(
        prompt.len() + out.len() <= c.max_seq,
        "prompt + generated tokens ({}) exceed max_seq {}",
        prompt.len() + out.len(),
        c.max_seq
    );
    Ok(())
}

/// Samples `out.len()` tokens after `prompt` from the full model at temperature `t`.
pub fn sample_full(
    w: &ModelWeights<'_, f32>,
    prompt: &[u32],
    t: f32,
    rng: &mut impl Rng,
    out: &mut [u32],
) -> anyhow::Result<()> {
    check(w, prompt, out, t)?;
    let c = *w.config();
    let mut k = Work::new(w, prompt.len())?;
    k.prefill(w, prompt)?;
    let mut last = prompt[prompt.len() - 1];
    let a = AttentionKind::Baseline;
    for (g, slot) in out.iter_mut().enumerate() {
        let h = &mut k.states[..c.dim];
        embed_tokens(w, &[last], h)?;
        forward_layers(
            w,
            0..c.layers,
            a,
            prompt.len() - 1 + g,
            h,
            &mut k.kv,
            &mut k.scratch,
        )?;
        let logits = &mut k.logits[..c.vocab];
        exit_logits(w, h, logits, &mut k.scratch)?;
        softmax_t(logits, t);
        last = draw(logits, rng);
        *slot = last;
    }
    Ok(())
}

/// Self-speculative sampling: drafts up to `draft` tokens with the first `exit_layer` layers
/// (`1..L`), verifies them with layers `exit_layer..L` in one pass and accepts by `rule`
/// ([`Rule::Leviathan`] for the full model's distribution).
#[allow(clippy::too_many_arguments)]
pub fn speculative_sample(
    w: &ModelWeights<'_, f32>,
    prompt: &[u32],
    exit_layer: usize,
    draft: usize,
    t: f32,
    rule: Rule,
    rng: &mut impl Rng,
    out: &mut [u32],
) -> anyhow::Result<SampleStats> {
    check(w, prompt, out, t)?;
    let c = *w.config();
    ensure!(
        (1..c.layers).contains(&exit_layer),
        "the exit layer must be in 1..{} (the model's layers)",
        c.layers
    );
    ensure!(draft >= 1, "the draft must be at least 1 token");
    let (e, dim, vocab) = (exit_layer, c.dim, c.vocab);
    let mut k = Work::new(w, prompt.len().max(draft + 1))?;
    k.prefill(w, prompt)?;
    let a = AttentionKind::Baseline;
    let mut q = vec![0.0f32; draft * vocab];
    let mut residual = vec![0.0f32; vocab];
    let mut stats = SampleStats::default();
    let mut last = prompt[prompt.len() - 1];
    let mut produced = 0usize;
    while produced < out.len() {
        let base = prompt.len() - 1 + produced;
        let d = draft.min(out.len() - produced - 1);
        let mut tok = last;
        let mut drafts = Vec::with_capacity(d);
        for i in 0..=d {
            let h = &mut k.states[i * dim..(i + 1) * dim];
            embed_tokens(w, &[tok], h)?;
            forward_layers(w, 0..e, a, base + i, h, &mut k.kv, &mut k.scratch)?;
            if i < d {
                let qi = &mut q[i * vocab..(i + 1) * vocab];
                exit_logits(w, h, qi, &mut k.scratch)?;
                softmax_t(qi, t);
                tok = draw(qi, rng);
                drafts.push(tok);
            }
        }
        let states = &mut k.states[..(d + 1) * dim];
        forward_layers(w, e..c.layers, a, base, states, &mut k.kv, &mut k.scratch)?;
        let p = &mut k.logits[..(d + 1) * vocab];
        exit_logits(w, states, p, &mut k.scratch)?;
        for row in p.chunks_exact_mut(vocab) {
            softmax_t(row, t);
        }
        let mut accepted = 0;
        let mut next = None;
        for (i, &y) in drafts.iter().enumerate() {
            let (pi, qi) = (
                &p[i * vocab..(i + 1) * vocab],
                &q[i * vocab..(i + 1) * vocab],
            );
            let (py, qy) = (pi[y as usize] as f64, qi[y as usize] as f64);
            // qy > 0: y was drawn from q.
            if rng.random::<f64>() < (py / qy).min(1.0) {
                accepted += 1;
                continue;
            }
            next = Some(match rule {
                Rule::Leviathan => {
                    for ((r, &pp), &qq) in residual.iter_mut().zip(pi).zip(qi) {
                        *r = (pp - qq).max(0.0);
                    }
                    // p ≠ q here (a rejection needs p(y) < q(y)), so the residual has mass.
                    draw(&residual, rng)
                }
                Rule::ResampleFromTarget => draw(pi, rng),
            });
            break;
        }
        let next = match next {
            Some(x) => x,
            None => draw(&p[d * vocab..(d + 1) * vocab], rng),
        };
        for (i, &y) in drafts[..accepted].iter().enumerate() {
            out[produced + i] = y;
        }
        *out.get_mut(produced + accepted)
            .context("sampling ran past the output")? = next;
        stats.drafted += d;
        stats.accepted += accepted;
        stats.rounds += 1;
        produced += accepted + 1;
        last = next;
    }
    Ok(stats)
}
