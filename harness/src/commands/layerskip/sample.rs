//! `tessera layerskip sample`: sampling with temperature, from the full model and by
//! self-speculative sampling (Leviathan et al. 2023's acceptance rule, whose output has the full
//! model's distribution), timed side by side.

use crate::commands::CliResult;
use crate::fsutil::{check_outputs, write_json};
use crate::train::checkpoint;
use crate::train::sampling::{sample_full, speculative_sample, Rule};
use anyhow::{ensure, Context};
use clap::Parser;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;
use tessera_kernels::nn::ModelWeights;

#[derive(Parser, Debug)]
pub(super) struct SampleArgs {
    #[arg(long)]
    model: PathBuf,
    /// Layers the draft runs (E, 1..L).
    #[arg(long)]
    exit_layer: usize,
    /// Tokens drafted per round.
    #[arg(long, default_value_t = 3)]
    draft: usize,
    /// Softmax temperature (> 0).
    #[arg(long, default_value_t = 0.8, value_parser = crate::commands::finite_positive)]
    temperature: f32,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "ROMEO:\n")]
    prompt: String,
    /// Tokens to sample (at most max_seq minus the prompt's length).
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `tessera layerskip sample`.
pub(super) fn run(a: SampleArgs) -> CliResult {
    check_outputs(a.json.as_deref(), None)?;
    let ck = checkpoint::load(&a.model)?;
    let prompt = ck
        .vocab
        .encode(&a.prompt)
        .context("--prompt uses a character the model's vocabulary lacks")?;
    ensure!(!prompt.is_empty(), "--prompt is empty");
    ensure!(
        prompt.len() + a.tokens <= ck.config.max_seq,
        "--tokens {} after a prompt of {} exceeds the model's max_seq {}",
        a.tokens,
        prompt.len(),
        ck.config.max_seq
    );
    let w = ModelWeights::new(ck.config, &ck.params)?;
    let mut out = vec![0u32; a.tokens];
    let t = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    sample_full(&w, &prompt, a.temperature, &mut rng, &mut out)?;
    let full_s = t.elapsed().as_secs_f64();
    println!("full model:\n{}{}\n---", a.prompt, ck.vocab.decode(&out));
    let t = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let stats = speculative_sample(
        &w,
        &prompt,
        a.exit_layer,
        a.draft,
        a.temperature,
        Rule::Leviathan,
        &mut rng,
        &mut out,
    )?;
    let spec_s = t.elapsed().as_secs_f64();
    let acceptance = stats.accepted as f64 / stats.drafted.max(1) as f64;
    println!(
        "self-speculative (E={}, d={}; same distribution, other draws):\n{}{}\n---",
        a.exit_layer,
        a.draft,
        a.prompt,
        ck.vocab.decode(&out)
    );
    println!(
        "acceptance {acceptance:.3}; full {:.1} tokens/s, speculative {:.1} tokens/s ({:.2}x)",
        a.tokens as f64 / full_s,
        a.tokens as f64 / spec_s,
        full_s / spec_s
    );
    if let Some(p) = &a.json {
        write_json(
            p,
            &serde_json::json!({
                "exit_layer": a.exit_layer, "draft": a.draft, "temperature": a.temperature,
                "seed": a.seed, "tokens": a.tokens, "acceptance": acceptance,
                "full_seconds": full_s, "spec_seconds": spec_s, "stats": stats,
            }),
        )?;
    }
    Ok(())
}
