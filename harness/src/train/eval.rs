//! Per-exit evaluation through the kernel inference path: cross-entropy, perplexity and top-1
//! agreement with the last layer for every early exit.

use crate::budget::{ensure_fits, Need};
use anyhow::{ensure, Context};
use tessera_kernels::nn::{
    argmax, embed_tokens, exit_logits, forward_layers, kv_cache_len, layer_scratch_len,
    softmax_cross_entropy, AttentionKind, ModelConfig, ModelWeights,
};

/// How one exit did on held-out text.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ExitEval {
    /// Layers run before the exit (`E`, 1-based; `L` is the full model).
    pub exit_layer: usize,
    /// Mean cross-entropy (nats/token).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Fraction of positions whose argmax equals the last layer's.
    pub agreement: f64,
}

/// Runs `windows` windows of `seq_len` tokens spread evenly over `tokens` through every exit,
/// calling `each(window, layer, logits, targets)` with the `[seq_len, vocab]` logits of the exit
/// after `layer` (0-based) in order of windows, then layers.
pub fn scan_exits(
    config: &ModelConfig,
    params: &[f32],
    tokens: &[u32],
    seq_len: usize,
    windows: usize,
    mut each: impl FnMut(usize, usize, &[f32], &[u32]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    ensure!(
        seq_len != 0 && seq_len <= config.max_seq,
        "seq_len {seq_len} is outside 1..={} (the model's max_seq)",
        config.max_seq
    );
    ensure!(
        tokens.len() > seq_len,
        "it needs more than seq_len {seq_len} tokens, the text has {}",
        tokens.len()
    );
    // The KV cache holds the window's positions, not the config's max_seq (only a bound).
    let c = ModelConfig {
        max_seq: seq_len,
        ..*config
    };
    let w = ModelWeights::new(c, params)?;
    let attention = AttentionKind::Baseline;
    ensure_fits(
        &[
            Need::floats("the KV cache", kv_cache_len(&c)),
            Need::floats("the scratch", layer_scratch_len(&c, seq_len, attention)),
            Need::floats("the hidden states", seq_len.checked_mul(c.dim).ok_or(())),
            Need::floats("the logits", seq_len.checked_mul(c.vocab).ok_or(())),
        ],
        "lower --seq-len",
    )?;
    let mut kv = vec![0.0f32; kv_cache_len(&c)?];
    let mut scratch = vec![0.0f32; layer_scratch_len(&c, seq_len, attention)?];
    let mut hidden = vec![0.0f32; seq_len * c.dim];
    let mut logits = vec![0.0f32; seq_len * c.vocab];
    let span = tokens.len() - seq_len - 1;
    ensure!(
        (1..=span + 1).contains(&windows),
        "{windows} windows is outside 1..={} (the distinct windows of the text)",
        span + 1
    );
    for wi in 0..windows {
        // wi < windows <= span + 1: the product fits in u128 and the quotient in span.
        let start = (span as u128 * wi as u128 / windows as u128) as usize;
        let inputs = &tokens[start..start + seq_len];
        let targets = &tokens[start + 1..start + 1 + seq_len];
        embed_tokens(&w, inputs, &mut hidden)?;
        for l in 0..c.layers {
            forward_layers(
                &w,
                l..l + 1,
                attention,
                0,
                &mut hidden,
                &mut kv,
                &mut scratch,
            )?;
            exit_logits(&w, &hidden, &mut logits, &mut scratch)?;
            each(wi, l, &logits, targets)?;
        }
    }
    Ok(())
}

/// Evaluates every exit on `windows` windows of `seq_len` tokens spread evenly over `tokens`.
pub fn evaluate_exits(
    config: &ModelConfig,
    params: &[f32],
    tokens: &[u32],
    seq_len: usize,
    windows: usize,
) -> anyhow::Result<Vec<ExitEval>> {
    let evaluate = || -> anyhow::Result<Vec<ExitEval>> {
        let (layers, vocab) = (config.layers, config.vocab);
        let mut preds = vec![vec![0u32; seq_len]; layers];
        let mut loss = vec![0.0f64; layers];
        let mut agree = vec![0usize; layers];
        scan_exits(
            config,
            params,
            tokens,
            seq_len,
            windows,
            |_, l, logits, targets| {
                let x = softmax_cross_entropy(vocab, logits, targets, 1.0, None)?;
                ensure!(
                    x.is_finite(),
                    "exit {} gives a non-finite loss ({x}): the weights are broken",
                    l + 1
                );
                loss[l] += x;
                for (p, row) in preds[l].iter_mut().zip(logits.chunks_exact(vocab)) {
                    *p = argmax(row)?;
                }
                if l + 1 == layers {
                    let (last, rest) = preds.split_last().context("the model has no layers")?;
                    for (k, p) in rest.iter().enumerate() {
                        agree[k] += p.iter().zip(last).filter(|(a, b)| a == b).count();
                    }
                    agree[layers - 1] += seq_len;
                }
                Ok(())
            },
        )?;
        let n = windows as f64 * seq_len as f64;
        Ok((0..layers)
            .map(|l| ExitEval {
                exit_layer: l + 1,
                loss: loss[l] / n,
                perplexity: (loss[l] / n).exp(),
                agreement: agree[l] as f64 / n,
            })
            .collect())
    };
    evaluate().context("evaluation")
}
