//! `tessera layerskip generate`: greedy generation with the full model against greedy
//! self-speculative decoding, timed, with a check that both give the same text.

use super::parse_attention;
use crate::budget::{ensure_fits, Need};
use crate::commands::CliResult;
use crate::fsutil::{check_outputs, write_json};
use crate::train::checkpoint;
use crate::train::Vocab;
use anyhow::{bail, ensure, Context};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;
use tessera_kernels::nn::{
    decode_scratch_len, greedy_decode, kv_cache_len, self_speculative_decode, DecodeStats,
    ModelConfig, ModelWeights,
};

#[derive(Parser, Debug)]
pub(super) struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    /// Layers the draft runs (E); a comma-separated list sweeps.
    #[arg(long, value_delimiter = ',', required = true)]
    exit_layer: Vec<usize>,
    /// Tokens drafted per round (d), each from 1 to --tokens; a comma-separated list sweeps.
    #[arg(long, value_delimiter = ',', required = true)]
    draft: Vec<usize>,
    /// Prompt text (default: a line that fits the model's vocabulary).
    #[arg(long)]
    prompt: Option<String>,
    /// Tokens to generate [default: 256 (64 with --quick), fewer where the model's max_seq leaves
    /// less room after the longest prompt]. At most max_seq minus the prompt's length.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    tokens: Option<usize>,
    /// Timed repetitions; the fastest counts.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Forward attention: baseline or flash.
    #[arg(long, default_value = "baseline")]
    attention: String,
    /// Quick run: 64 tokens (unless --tokens), one repetition.
    #[arg(long)]
    quick: bool,
    /// Draw the prompts from the held-out tail (the last 10%, the validation split) of this text
    /// file instead of `--prompt`: `--prompt-count` windows of `--prompt-chars` characters, evenly
    /// spaced; each is continued by `--tokens` tokens and the times are summed.
    #[arg(long)]
    prompts_from: Option<PathBuf>,
    /// Prompts drawn by `--prompts-from`, at most one per character of its held-out tail.
    #[arg(long, default_value_t = 16)]
    prompt_count: usize,
    /// Characters per prompt drawn by `--prompts-from`.
    #[arg(long, default_value_t = 32)]
    prompt_chars: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Times `run` once, returning seconds and its stats.
fn timed(
    mut run: impl FnMut(&mut [u32]) -> tessera_kernels::Result<DecodeStats>,
    out: &mut [u32],
) -> anyhow::Result<(f64, DecodeStats)> {
    let t = Instant::now();
    let stats = run(out).context("decoding failed")?;
    Ok((t.elapsed().as_secs_f64(), stats))
}

/// The prompts of `generate`: `(text, tokens)` pairs.
fn generate_prompts(a: &GenerateArgs, vocab: &Vocab) -> anyhow::Result<Vec<(String, Vec<u32>)>> {
    let Some(path) = &a.prompts_from else {
        let text = match &a.prompt {
            Some(p) => p.clone(),
            None => ["ROMEO:\n", "the king said ", "the "]
                .iter()
                .find(|p| vocab.encode(p).is_ok())
                .map(|s| s.to_string())
                .unwrap_or_else(|| {
                    vocab
                        .chars
                        .first()
                        .map(|c| c.to_string())
                        .unwrap_or_default()
                }),
        };
        let tokens = vocab.encode(&text)?;
        return Ok(vec![(text, tokens)]);
    };
    ensure!(
        a.prompt.is_none(),
        "give --prompt or --prompts-from, not both"
    );
    ensure!(
        a.prompt_count != 0 && a.prompt_chars != 0,
        "--prompt-count and --prompt-chars must be at least 1"
    );
    let text = crate::fsutil::read_text(path)
        .with_context(|| format!("cannot read --prompts-from {}", path.display()))?;
    let chars: Vec<char> = text.chars().collect();
    let held_out = chars.get(chars.len() - chars.len() / 10..).unwrap_or(&[]);
    let room = held_out.len().saturating_sub(a.prompt_chars);
    ensure!(
        room != 0,
        "{}: its held-out tail is shorter than --prompt-chars {}",
        path.display(),
        a.prompt_chars
    );
    // Windows start at 0..room; more prompts than that would repeat windows.
    ensure!(
        a.prompt_count <= room,
        "--prompt-count {} exceeds the {room} distinct windows of {} characters in the held-out \
         tail of {}",
        a.prompt_count,
        a.prompt_chars,
        path.display()
    );
    let mut prompts = Vec::with_capacity(a.prompt_count);
    for k in 0..a.prompt_count {
        // k < room and room fits in memory, so the product fits in u128.
        let at = (k as u128 * room as u128 / a.prompt_count as u128) as usize;
        let text: String = held_out[at..at + a.prompt_chars].iter().collect();
        let tokens = vocab
            .encode(&text)
            .with_context(|| format!("prompt {k} from {}", path.display()))?;
        prompts.push((text, tokens));
    }
    Ok(prompts)
}

/// Adds `b`'s counts to `a`.
fn add_stats(a: &mut DecodeStats, b: &DecodeStats) {
    a.generated += b.generated;
    a.rounds += b.rounds;
    a.drafted += b.drafted;
    a.accepted += b.accepted;
    a.layer_passes += b.layer_passes;
    a.token_layer_evals += b.token_layer_evals;
}

/// Runs `tessera layerskip generate`.
pub(super) fn run(a: GenerateArgs) -> CliResult {
    check_outputs(a.json.as_deref(), None)?;
    let ck = checkpoint::load(&a.model)?;
    let c = ck.config;
    let attention = parse_attention(&a.attention)?;
    let repeats = if a.quick { 1 } else { a.repeats };
    let prompts = generate_prompts(&a, &ck.vocab)?;
    let longest = prompts.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    ensure!(longest != 0, "the prompt is empty");
    let room = c.max_seq.saturating_sub(longest);
    let tokens = match a.tokens {
        Some(t) => t,
        None => (if a.quick { 64 } else { 256 }).min(room),
    };
    for (text, prompt) in &prompts {
        ensure!(
            prompt
                .len()
                .checked_add(tokens)
                .is_some_and(|n| n <= c.max_seq),
            "prompt {text:?} ({} tokens) + --tokens {tokens} exceed the model's max_seq {}; \
             give --tokens {room} or fewer",
            prompt.len(),
            c.max_seq
        );
    }
    ensure!(
        tokens != 0,
        "the prompt fills the model's max_seq {}: no room to generate",
        c.max_seq
    );
    for &e in &a.exit_layer {
        ensure!(
            (1..=c.layers).contains(&e),
            "--exit-layer {e} is outside 1..={}",
            c.layers
        );
    }
    for &d in &a.draft {
        ensure!(
            (1..=tokens).contains(&d),
            "--draft {d} is outside 1..={tokens} (a round drafts at most the tokens generated)"
        );
    }
    // The KV cache holds the positions this run uses, not the checkpoint's max_seq (which only
    // bounds them): an absurd max_seq in a file must not size an absurd cache.
    let c = ModelConfig {
        max_seq: longest + tokens,
        ..c
    };
    let weights = ModelWeights::new(c, &ck.params).context("bad model")?;
    // Every buffer is allocated here, once; the decoders allocate nothing.
    let max_draft = a.draft.iter().copied().max().unwrap_or(1);
    // Room for 16 tokens per layer call (at least max_draft + 1): greedy and speculative decoding
    // prefill the prompt in the same chunks.
    let per_call = max_draft.saturating_add(1).max(16);
    ensure_fits(
        &[
            Need::floats("the KV cache", kv_cache_len(&c)),
            Need::floats(
                "the decoding scratch",
                decode_scratch_len(&c, per_call, attention),
            ),
            Need::of::<u32, _>(
                "the generated tokens",
                prompts
                    .len()
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(tokens))
                    .ok_or(()),
            ),
        ],
        "lower --draft, --tokens or --prompt-count",
    )?;
    let mut kv = vec![0.0f32; kv_cache_len(&c)?];
    let mut scratch = vec![0.0f32; decode_scratch_len(&c, per_call, attention)?];
    let mut full_outs = vec![vec![0u32; tokens]; prompts.len()];
    let mut spec_out = vec![0u32; tokens];
    // Full decoding once for the text; every configuration below is then timed against its own
    // full-decoding runs, alternating the two prompt by prompt, and the fastest repetition of
    // each counts (the machine is shared, so interleaving keeps load changes from favouring
    // either side).
    let mut first_s = 0.0;
    for ((_, prompt), out) in prompts.iter().zip(full_outs.iter_mut()) {
        first_s += timed(
            |out| greedy_decode(&weights, prompt, attention, &mut kv, &mut scratch, out),
            out,
        )?
        .0;
    }
    let total = tokens * prompts.len();
    println!(
        "{} prompt(s), {tokens} tokens each; full model: {:.1} tokens/s (first run)",
        prompts.len(),
        total as f64 / first_s
    );
    for ((text, _), out) in prompts.iter().zip(&full_outs).take(3) {
        println!("{text}{}", ck.vocab.decode(out));
        println!("---");
    }
    let mut rows = Vec::new();
    println!("\n  E   d  accept  full tok/s  spec tok/s  speedup  layer-passes-saved  identical");
    for &e in &a.exit_layer {
        for &d in &a.draft {
            let (mut full_s, mut spec_s) = (f64::INFINITY, f64::INFINITY);
            let mut stats = DecodeStats::default();
            let mut identical = true;
            for _ in 0..repeats.max(1) {
                let (mut f, mut sp) = (0.0, 0.0);
                stats = DecodeStats::default();
                for ((_, prompt), full_out) in prompts.iter().zip(full_outs.iter_mut()) {
                    let (fi, _) = timed(
                        |out| {
                            greedy_decode(&weights, prompt, attention, &mut kv, &mut scratch, out)
                        },
                        full_out,
                    )?;
                    let (si, st) = timed(
                        |out| {
                            self_speculative_decode(
                                &weights,
                                prompt,
                                e,
                                d,
                                attention,
                                &mut kv,
                                &mut scratch,
                                out,
                            )
                        },
                        &mut spec_out,
                    )?;
                    identical &= spec_out == *full_out;
                    f += fi;
                    sp += si;
                    add_stats(&mut stats, &st);
                }
                full_s = full_s.min(f);
                spec_s = spec_s.min(sp);
            }
            let full_tps = total as f64 / full_s;
            let spec_tps = total as f64 / spec_s;
            let full_passes = total.saturating_mul(c.layers);
            let saved = 1.0 - stats.layer_passes as f64 / full_passes as f64;
            println!(
                "{e:>3} {d:>3}  {:.3}   {full_tps:>9.1}  {spec_tps:>10.1}  {:.3}x   {:>6.1}%             {identical}",
                stats.acceptance(),
                spec_tps / full_tps,
                100.0 * saved
            );
            rows.push(serde_json::json!({
                "exit_layer": e, "draft": d, "acceptance": stats.acceptance(),
                "full_tokens_per_s": full_tps, "spec_tokens_per_s": spec_tps,
                "speedup": spec_tps / full_tps, "identical": identical,
                "tokens": total, "prompts": prompts.len(), "rounds": stats.rounds,
                "layer_passes": stats.layer_passes, "full_layer_passes": full_passes,
                "token_layer_evals": stats.token_layer_evals,
                "layer_passes_saved": saved, "layers": c.layers,
            }));
            if !identical {
                bail!("self-speculative output differs from full decoding at E={e}, d={d}");
            }
        }
    }
    if let Some(path) = a.json {
        let value = match rows.len() {
            1 => rows.pop().unwrap_or_default(),
            _ => serde_json::Value::Array(rows),
        };
        write_json(&path, &value)?;
    }
    Ok(())
}
