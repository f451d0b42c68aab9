//! Per-exit evaluation through the kernel inference path: cross-entropy, perplexity and top-1
//! agreement with the last layer for every early exit.

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

/// Evaluates every exit on `windows` windows of `seq_len` tokens spread evenly over `tokens`.
pub fn evaluate_exits(
    config: &ModelConfig,
    params: &[f32],
    tokens: &[u32],
    seq_len: usize,
    windows: usize,
) -> anyhow::Result<Vec<ExitEval>> {
    let evaluate = || -> anyhow::Result<Vec<ExitEval>> {
        let w = ModelWeights::new(*config, params)?;
        let c = *config;
        ensure!(
            tokens.len() > seq_len && seq_len != 0 && seq_len <= c.max_seq,
            "it needs more than {seq_len} tokens (and seq_len <= max_seq)"
        );
        let attention = AttentionKind::Baseline;
        let mut kv = vec![0.0f32; kv_cache_len(&c)?];
        let mut scratch = vec![0.0f32; layer_scratch_len(&c, seq_len, attention)?];
        let mut hidden = vec![0.0f32; seq_len * c.dim];
        let mut logits = vec![0.0f32; seq_len * c.vocab];
        let mut preds = vec![vec![0u32; seq_len]; c.layers];
        let mut loss = vec![0.0f64; c.layers];
        let mut agree = vec![0usize; c.layers];
        let span = tokens.len() - seq_len - 1;
        let windows = windows.max(1);
        for wi in 0..windows {
            let start = span * wi / windows;
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
                loss[l] += softmax_cross_entropy(c.vocab, &logits, targets, 1.0, None)?;
                for (p, row) in preds[l].iter_mut().zip(logits.chunks_exact(c.vocab)) {
                    *p = argmax(row)?;
                }
            }
            let (last, rest) = preds.split_last().context("the model has no layers")?;
            for (l, p) in rest.iter().enumerate() {
                agree[l] += p.iter().zip(last).filter(|(a, b)| a == b).count();
            }
            agree[c.layers - 1] += seq_len;
        }
        let n = (windows * seq_len) as f64;
        Ok((0..c.layers)
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
