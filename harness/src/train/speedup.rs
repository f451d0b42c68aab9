//! What self-speculative decoding should gain, measured without letting repetitive generated text
//! inflate it: teacher-forced draft acceptance on held-out text, the measured costs of a draft
//! step, a verify pass and a full-model token, and the repetition of generated text.

use super::eval::scan_exits;
use anyhow::{ensure, Context};
use std::collections::HashSet;
use std::time::Instant;
use tessera_kernels::nn::{
    argmax, embed_tokens, exit_logits, forward_layers, kv_cache_len, layer_scratch_len,
    AttentionKind, ModelConfig, ModelWeights,
};

/// Teacher-forced acceptance of one exit: at every position of held-out text (the true text as
/// context), does the exit's greedy token equal the full model's?
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TeacherForced {
    /// The draft's exit layer `E` (1-based).
    pub exit_layer: usize,
    /// Fraction of positions where the exit's argmax equals the last layer's.
    pub acceptance: f64,
    /// For drafts of `d = 1, 2, ...` tokens: the mean tokens a round yields, `1 + min(a, d)` with
    /// `a` the run of agreeing positions that starts there, over every start position.
    pub tokens_per_round: Vec<f64>,
}

/// Teacher-forced acceptance of every exit but the last, for drafts of 1..=`max_draft` tokens, on
/// `windows` windows of `seq_len` tokens of `tokens`.
pub fn teacher_forced(
    config: &ModelConfig,
    params: &[f32],
    tokens: &[u32],
    seq_len: usize,
    windows: usize,
    max_draft: usize,
) -> anyhow::Result<Vec<TeacherForced>> {
    ensure!(
        max_draft >= 1 && max_draft < seq_len,
        "the longest draft must be in 1..{seq_len}"
    );
    let (layers, vocab) = (config.layers, config.vocab);
    let mut preds = vec![vec![0u32; seq_len]; layers];
    let mut agree = vec![0usize; layers];
    let mut rounds = vec![vec![0usize; max_draft]; layers];
    let mut starts = 0usize;
    scan_exits(
        config,
        params,
        tokens,
        seq_len,
        windows,
        |_, l, logits, _| {
            for (p, row) in preds[l].iter_mut().zip(logits.chunks_exact(vocab)) {
                *p = argmax(row)?;
            }
            if l + 1 < layers {
                return Ok(());
            }
            let (last, rest) = preds.split_last().context("the model has no layers")?;
            // Starts with d positions after them, for every d: the same starts for every draft.
            let usable = seq_len - max_draft;
            starts += usable;
            for (e, p) in rest.iter().enumerate() {
                let ok: Vec<bool> = p.iter().zip(last).map(|(a, b)| a == b).collect();
                agree[e] += ok.iter().filter(|&&x| x).count();
                for i in 0..usable {
                    let run = ok[i..].iter().take_while(|&&x| x).count();
                    for (d, r) in rounds[e].iter_mut().enumerate() {
                        *r += 1 + run.min(d + 1);
                    }
                }
            }
            Ok(())
        },
    )?;
    let n = (windows * seq_len) as f64;
    Ok((0..layers.saturating_sub(1))
        .map(|e| TeacherForced {
            exit_layer: e + 1,
            acceptance: agree[e] as f64 / n,
            tokens_per_round: rounds[e]
                .iter()
                .map(|&r| r as f64 / starts.max(1) as f64)
                .collect(),
        })
        .collect())
}

/// Measured seconds of the pieces of decoding one token at a time, at a mid-context position.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Costs {
    /// One token through every layer and the exit (full decoding's step).
    pub full: f64,
    /// Per exit layer `E = 1..L−1`: one token through layers `0..E` and the exit (a draft step).
    pub draft: Vec<f64>,
    /// Per exit layer `E = 1..L−1` and draft `d = 1..=max_draft`: `d + 1` tokens through layers
    /// `E..L` and the exit in one pass (the verify pass).
    pub verify: Vec<Vec<f64>>,
}

impl Costs {
    /// Seconds of one round of exit `e` and draft `d`: `d + 1` draft steps (the last one only
    /// feeds the verifier; its exit is counted too, a slight overestimate) and one verify pass.
    pub fn round(&self, e: usize, d: usize) -> Option<f64> {
        let draft = self.draft.get(e.checked_sub(1)?)?;
        let verify = self.verify.get(e - 1)?.get(d.checked_sub(1)?)?;
        Some((d + 1) as f64 * draft + verify)
    }

    /// Expected speedup over full decoding: tokens per round times a full step's cost over a
    /// round's cost.
    pub fn expected_speedup(&self, e: usize, d: usize, tokens_per_round: f64) -> Option<f64> {
        Some(tokens_per_round * self.full / self.round(e, d)?)
    }
}

/// Times the pieces of decoding with the context filled to `context` positions: per piece the
/// fastest of `trials` runs of `reps` calls each.
pub fn measure_costs(
    config: &ModelConfig,
    params: &[f32],
    context: usize,
    max_draft: usize,
    reps: usize,
    trials: usize,
) -> anyhow::Result<Costs> {
    let c = *config;
    ensure!(
        context + max_draft < c.max_seq && context >= 1,
        "the context {context} and drafts of {max_draft} exceed max_seq {}",
        c.max_seq
    );
    let w = ModelWeights::new(c, params)?;
    let attention = AttentionKind::Baseline;
    let most = context.max(max_draft + 1);
    let mut kv = vec![0.0f32; kv_cache_len(&c)?];
    let mut scratch = vec![0.0f32; layer_scratch_len(&c, most, attention)?.max(most * c.dim)];
    let mut hidden = vec![0.0f32; most * c.dim];
    let mut logits = vec![0.0f32; most * c.vocab];
    let toks: Vec<u32> = (0..most).map(|i| (i % c.vocab) as u32).collect();
    embed_tokens(&w, &toks[..context], &mut hidden[..context * c.dim])?;
    forward_layers(
        &w,
        0..c.layers,
        attention,
        0,
        &mut hidden[..context * c.dim],
        &mut kv,
        &mut scratch,
    )?;
    let mut time = |from: usize, to: usize, n: usize| -> anyhow::Result<f64> {
        let t = Instant::now();
        for _ in 0..reps.max(1) {
            let h = &mut hidden[..n * c.dim];
            embed_tokens(&w, &toks[..n], h)?;
            forward_layers(&w, from..to, attention, context, h, &mut kv, &mut scratch)?;
            exit_logits(&w, h, &mut logits[..n * c.vocab], &mut scratch)?;
        }
        Ok(t.elapsed().as_secs_f64() / reps.max(1) as f64)
    };
    // Every piece once per trial, the trials one after another: a burst of load from elsewhere
    // hits one trial of many pieces rather than every trial of one; the fastest trial counts.
    let e_count = c.layers - 1;
    let mut full = f64::INFINITY;
    let mut draft = vec![f64::INFINITY; e_count];
    let mut verify = vec![vec![f64::INFINITY; max_draft]; e_count];
    for _ in 0..trials.max(1) {
        full = full.min(time(0, c.layers, 1)?);
        for e in 1..c.layers {
            draft[e - 1] = draft[e - 1].min(time(0, e, 1)?);
            for d in 1..=max_draft {
                verify[e - 1][d - 1] = verify[e - 1][d - 1].min(time(e, c.layers, d + 1)?);
            }
        }
    }
    Ok(Costs {
        full,
        draft,
        verify,
    })
}

/// Fraction of `tokens` inside an `n`-gram that also starts at an earlier position: 0 for text
/// that never repeats itself, near 1 for text stuck in a loop.
pub fn repeated_ngram_fraction(tokens: &[u32], n: usize) -> f64 {
    if n == 0 || tokens.len() < n {
        return 0.0;
    }
    let mut seen = HashSet::new();
    let mut covered = vec![false; tokens.len()];
    for (i, g) in tokens.windows(n).enumerate() {
        if !seen.insert(g) {
            covered[i..i + n].iter_mut().for_each(|c| *c = true);
        }
    }
    covered.iter().filter(|&&c| c).count() as f64 / tokens.len() as f64
}

/// Distinct `n`-grams over all `n`-grams of `tokens` (1 when none repeats).
pub fn distinct_n(tokens: &[u32], n: usize) -> f64 {
    if n == 0 || tokens.len() < n {
        return 1.0;
    }
    let all = tokens.len() - n + 1;
    tokens.windows(n).collect::<HashSet<_>>().len() as f64 / all as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_statistics_tell_loops_from_fresh_text() {
        let fresh: Vec<u32> = (0..40).collect();
        assert_eq!(repeated_ngram_fraction(&fresh, 4), 0.0);
        assert_eq!(distinct_n(&fresh, 4), 1.0);
        let looped: Vec<u32> = (0..40).map(|i| i % 5).collect();
        // Everything from the second period on is inside a repeated 4-gram.
        assert!((repeated_ngram_fraction(&looped, 4) - 35.0 / 40.0).abs() < 1e-12);
        assert!((distinct_n(&looped, 4) - 5.0 / 37.0).abs() < 1e-12);
        assert_eq!(repeated_ngram_fraction(&[1, 2], 4), 0.0);
    }

    #[test]
    fn expected_speedup_uses_the_round_cost() {
        let c = Costs {
            full: 1.0,
            draft: vec![0.25],
            verify: vec![vec![0.8, 0.9]],
        };
        // d = 2: 3 draft steps of 0.25 and a verify of 0.9: 1.65 s for 2.5 tokens.
        assert!((c.expected_speedup(1, 2, 2.5).unwrap() - 2.5 / 1.65).abs() < 1e-12);
        assert_eq!(c.round(2, 1), None);
        assert_eq!(c.round(1, 3), None);
    }
}
