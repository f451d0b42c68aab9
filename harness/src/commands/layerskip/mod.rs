//! `tessera layerskip`: train an early-exit model with LayerSkip's recipe, evaluate every exit, and
//! generate with greedy self-speculative decoding against full-model decoding.
//!
//! ```text
//! tessera layerskip train [--corpus FILE] [--quick] [--layers 12 --dim 128 ...] [--no-recipe] --out model.safetensors
//! tessera layerskip eval --model model.safetensors [--corpus FILE] [--json FILE]
//! tessera layerskip generate --model model.safetensors --exit-layer 3 --draft 4 [--json FILE]
//! tessera layerskip export --model model.safetensors --out model.bin [--dtype bf16]
//! tessera layerskip sample --model model.safetensors --exit-layer 2 --draft 3 --temperature 0.8
//! tessera layerskip study --corpus FILE --work DIR [--seeds 0,1,2] --md report.md --json r.json
//! ```
//! Without `--corpus` the project's own synthetic corpus is used (deterministic, offline).
//! `--exit-layer` and `--draft` take comma-separated lists to sweep.
//!
//! One file per subcommand: `train.rs`, `eval.rs`, `generate.rs`; this file holds the command
//! line and what they share (the corpus, the attention flag, JSON output, the exit table).

mod eval;
mod export;
mod generate;
mod sample;
mod study;
mod train;

use super::CliResult;
use crate::train::eval::ExitEval;
use crate::train::{synthetic_corpus, Corpus};
use clap::Subcommand;
use eval::EvalArgs;
use export::ExportArgs;
use generate::GenerateArgs;
use sample::SampleArgs;
use std::path::PathBuf;
use study::StudyArgs;
use tessera_kernels::attention::FlashTiles;
use tessera_kernels::nn::AttentionKind;
use train::TrainArgs;

/// Arguments of `tessera layerskip`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model and save it as safetensors.
    Train(TrainArgs),
    /// Per-exit loss, perplexity and top-1 agreement with the last layer on held-out text.
    Eval(EvalArgs),
    /// Greedy generation: full model vs self-speculative, timed, with an identical-output check.
    Generate(GenerateArgs),
    /// Write a model as the flat blob the firmware programs link (`firmware/`).
    Export(ExportArgs),
    /// Sampling with temperature: full model and self-speculative sampling (same distribution).
    Sample(SampleArgs),
    /// Recipe vs no recipe over seeds: teacher-forced acceptance, expected and measured speedup,
    /// repetition of the generated text.
    Study(StudyArgs),
}

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    match args.command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Export(a) => export::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Study(a) => study::run(a),
    }
}

/// The corpus of `--corpus`, or the synthetic one, with a description of where it came from.
fn load_corpus(path: &Option<PathBuf>) -> anyhow::Result<(Corpus, String)> {
    match path {
        Some(p) => Ok((Corpus::from_file(p)?, p.display().to_string())),
        None => Ok((
            Corpus::from_text(&synthetic_corpus(400_000, 2024))?,
            "synthetic(400000, seed 2024)".into(),
        )),
    }
}

/// The `--attention` flag.
fn parse_attention(s: &str) -> anyhow::Result<AttentionKind> {
    match s {
        "baseline" => Ok(AttentionKind::Baseline),
        "flash" => Ok(AttentionKind::Flash(FlashTiles::new(16, 16))),
        other => anyhow::bail!("--attention must be baseline or flash, not {other:?}"),
    }
}

/// Prints the per-exit table.
fn print_evals(evals: &[ExitEval]) {
    println!("exit  loss    ppl     top1-agree");
    for e in evals {
        println!(
            "{:>4}  {:.4}  {:>6.3}  {:.3}",
            e.exit_layer, e.loss, e.perplexity, e.agreement
        );
    }
}
