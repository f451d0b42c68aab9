//! `tessera layerskip`: train an early-exit model with LayerSkip's recipe, evaluate every exit, and
//! generate with greedy self-speculative decoding against full-model decoding.
//!
//! ```text
//! tessera layerskip train [--corpus FILE] [--quick] [--layers 12 --dim 128 ...] [--no-recipe] --out model.safetensors
//! tessera layerskip eval --model model.safetensors [--corpus FILE] [--json FILE]
//! tessera layerskip generate --model model.safetensors --exit-layer 3 --draft 4 [--json FILE]
//! ```
//! Without `--corpus` the project's own synthetic corpus is used (deterministic, offline).
//! `--exit-layer` and `--draft` take comma-separated lists to sweep.

use super::CliResult;
use crate::fsutil::check_outputs;
use crate::train::checkpoint;
use crate::train::eval::evaluate_exits;
use crate::train::{
    synthetic_corpus, Corpus, Curriculum, EarlyExitLoss, LayerDropout, Precision, Recipe,
    TrainConfig, Trainer, Vocab,
};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tessera_kernels::nn::{
    greedy_decode, kv_cache_len, self_speculative_decode, speculative_scratch_len, AttentionKind,
    DecodeStats, ModelWeights,
};
use tessera_kernels::FlashTiles;

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
}

#[derive(Parser, Debug)]
struct TrainArgs {
    /// UTF-8 text to train on (default: the project's synthetic corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Where to write the model.
    #[arg(long)]
    out: PathBuf,
    /// Continue from this model's weights (its sizes replace the size flags; Adam restarts).
    #[arg(long)]
    init: Option<PathBuf>,
    /// A small model and few steps (about a minute).
    #[arg(long)]
    quick: bool,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    dim: Option<usize>,
    #[arg(long)]
    heads: Option<usize>,
    #[arg(long)]
    kv_heads: Option<usize>,
    #[arg(long)]
    ffn: Option<usize>,
    #[arg(long)]
    seq_len: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Plain training: no layer dropout, last-layer loss only.
    #[arg(long)]
    no_recipe: bool,
    /// Layer dropout rate of the last layer.
    #[arg(long, default_value_t = 0.2)]
    p_max: f32,
    /// Grow the dropout rate over training (S(t) exponential) instead of keeping it constant.
    #[arg(long)]
    time_scale: bool,
    /// Early-exit loss scale e_scale (0 disables the early-exit loss).
    #[arg(long, default_value_t = 1.0)]
    e_scale: f32,
    /// Exit curriculum: all, rotational:R, gradual.
    #[arg(long, default_value = "all")]
    curriculum: String,
    /// Forward attention: baseline or flash.
    #[arg(long, default_value = "baseline")]
    attention: String,
    /// f32 or bf16 (bf16-emulated training).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Also write the per-exit evaluation as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Parser, Debug)]
struct EvalArgs {
    /// One or more models (repeat the flag) to compare.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Write a per-exit perplexity plot of every model here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Text whose last 10% is the validation split (default: the synthetic corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Windows of `--seq-len` tokens to evaluate.
    #[arg(long, default_value_t = 64)]
    windows: usize,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Parser, Debug)]
struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    /// Layers the draft runs (E); a comma-separated list sweeps.
    #[arg(long, value_delimiter = ',', required = true)]
    exit_layer: Vec<usize>,
    /// Tokens drafted per round (d); a comma-separated list sweeps.
    #[arg(long, value_delimiter = ',', required = true)]
    draft: Vec<usize>,
    /// Prompt text (default: a line that fits the model's vocabulary).
    #[arg(long)]
    prompt: Option<String>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 256)]
    tokens: usize,
    /// Timed repetitions; the fastest counts.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Forward attention: baseline or flash.
    #[arg(long, default_value = "baseline")]
    attention: String,
    /// Quick run: 64 tokens, one repetition.
    #[arg(long)]
    quick: bool,
    /// Draw the prompts from the held-out tail (the last 10%, the validation split) of this text
    /// file instead of `--prompt`: `--prompt-count` windows of `--prompt-chars` characters, evenly
    /// spaced; each is continued by `--tokens` tokens and the times are summed.
    #[arg(long)]
    prompts_from: Option<PathBuf>,
    /// Prompts drawn by `--prompts-from`.
    #[arg(long, default_value_t = 16)]
    prompt_count: usize,
    /// Characters per prompt drawn by `--prompts-from`.
    #[arg(long, default_value_t = 32)]
    prompt_chars: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    match args.command {
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Generate(a) => generate(a),
    }
}

fn load_corpus(path: &Option<PathBuf>) -> Result<(Corpus, String), String> {
    match path {
        Some(p) => Ok((Corpus::from_file(p)?, p.display().to_string())),
        None => Ok((
            Corpus::from_text(&synthetic_corpus(400_000, 2024))?,
            "synthetic(400000, seed 2024)".into(),
        )),
    }
}

fn parse_attention(s: &str) -> Result<AttentionKind, String> {
    match s {
        "baseline" => Ok(AttentionKind::Baseline),
        "flash" => Ok(AttentionKind::Flash(FlashTiles::new(16, 16))),
        other => Err(format!(
            "--attention must be baseline or flash, not {other:?}"
        )),
    }
}

fn parse_curriculum(s: &str) -> Result<Curriculum, String> {
    match s {
        "all" => Ok(Curriculum::All),
        "gradual" => Ok(Curriculum::Gradual),
        r if r.starts_with("rotational:") => r["rotational:".len()..]
            .parse()
            .map(|r| Curriculum::Rotational { r })
            .map_err(|_| format!("bad rotation period in {r:?}")),
        other => Err(format!(
            "--curriculum must be all, gradual or rotational:R, not {other:?}"
        )),
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(path, (text + "\n").as_bytes())
}

fn train(a: TrainArgs) -> CliResult {
    check_outputs(
        std::iter::once(a.out.as_path()).chain(a.json.as_deref()),
        None,
    )?;
    let (corpus, source) = load_corpus(&a.corpus)?;
    let vocab = corpus.vocab.len();
    let mut cfg = if a.quick {
        TrainConfig::quick(vocab)
    } else {
        TrainConfig::standard(vocab)
    };
    let m = &mut cfg.model;
    m.layers = a.layers.unwrap_or(m.layers);
    m.dim = a.dim.unwrap_or(m.dim);
    m.heads = a.heads.unwrap_or(m.heads);
    m.kv_heads = a.kv_heads.unwrap_or(m.kv_heads);
    m.ffn_hidden = a.ffn.unwrap_or(m.ffn_hidden);
    cfg.seq_len = a.seq_len.unwrap_or(cfg.seq_len);
    cfg.batch = a.batch.unwrap_or(cfg.batch);
    cfg.steps = a.steps.unwrap_or(cfg.steps);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    cfg.seed = a.seed;
    cfg.attention = parse_attention(&a.attention)?;
    cfg.precision = match a.precision.as_str() {
        "f32" => Precision::F32,
        "bf16" => Precision::Bf16Emulated,
        other => return Err(format!("--precision must be f32 or bf16, not {other:?}")),
    };
    cfg.recipe = if a.no_recipe {
        Recipe::none()
    } else {
        Recipe {
            dropout: LayerDropout {
                p_max: a.p_max,
                time_scale: a.time_scale,
            },
            early_exit: (a.e_scale > 0.0).then_some(EarlyExitLoss {
                e_scale: a.e_scale,
                curriculum: parse_curriculum(&a.curriculum)?,
            }),
        }
    };
    let init = match &a.init {
        Some(path) => {
            let ck = checkpoint::load(path)?;
            if ck.vocab != corpus.vocab {
                return Err(format!(
                    "{} was trained on other characters",
                    path.display()
                ));
            }
            cfg.model = ck.config;
            Some(ck.params)
        }
        None => None,
    };
    cfg.validate()?;
    let params = cfg.model.param_count().map_err(|e| e.to_string())?;
    eprintln!(
        "training {} layers x {} ({} params) on {} ({} train tokens), {} steps of {}x{}, recipe: {}",
        cfg.model.layers,
        cfg.model.dim,
        params,
        source,
        corpus.train.len(),
        cfg.steps,
        cfg.batch,
        cfg.seq_len,
        if a.no_recipe { "none" } else { "layerskip" }
    );
    let started = Instant::now();
    let mut trainer = Trainer::new(cfg, &corpus.train)?;
    if let Some(p) = &init {
        trainer.set_params(p)?;
    }
    let mut last = None;
    trainer.run(!a.no_progress, |info, _| last = Some(info.clone()))?;
    let secs = started.elapsed().as_secs_f64();
    let description = format!(
        "corpus={source} recipe={:?} steps={} seq_len={} batch={} lr={} seed={} init={:?} train_seconds={secs:.0}",
        cfg.recipe, cfg.steps, cfg.seq_len, cfg.batch, cfg.lr, cfg.seed, a.init
    );
    checkpoint::save(
        &a.out,
        &cfg.model,
        &corpus.vocab,
        trainer.params(),
        &description,
    )?;
    let evals = evaluate_exits(
        &cfg.model,
        trainer.params(),
        &corpus.val,
        cfg.seq_len.min(64),
        32,
    )?;
    println!(
        "trained in {secs:.0} s, final batch loss {:.3}; wrote {}",
        last.map_or(f64::NAN, |l| l.loss),
        a.out.display()
    );
    print_evals(&evals);
    if let Some(path) = a.json {
        write_json(
            &path,
            &serde_json::json!({ "train_seconds": secs, "exits": evals, "description": description }),
        )?;
    }
    Ok(())
}

fn print_evals(evals: &[crate::train::eval::ExitEval]) {
    println!("exit  loss    ppl     top1-agree");
    for e in evals {
        println!(
            "{:>4}  {:.4}  {:>6.3}  {:.3}",
            e.exit_layer, e.loss, e.perplexity, e.agreement
        );
    }
}

fn eval(a: EvalArgs) -> CliResult {
    check_outputs(
        [a.svg.as_deref(), a.json.as_deref()].into_iter().flatten(),
        None,
    )?;
    let (corpus, _) = load_corpus(&a.corpus)?;
    let mut all = Vec::new();
    for path in &a.model {
        let ck = checkpoint::load(path)?;
        if corpus.vocab != ck.vocab {
            return Err(format!(
                "the corpus's characters differ from the vocabulary of {}",
                path.display()
            ));
        }
        let evals = evaluate_exits(&ck.config, &ck.params, &corpus.val, a.seq_len, a.windows)?;
        println!("{}", path.display());
        print_evals(&evals);
        all.push((path.display().to_string(), evals));
    }
    if let Some(svg) = &a.svg {
        crate::fsutil::write_atomic(svg, perplexity_svg(&all).as_bytes())?;
    }
    if let Some(path) = a.json {
        let models: Vec<_> = all
            .iter()
            .map(|(m, e)| serde_json::json!({ "model": m, "exits": e }))
            .collect();
        write_json(&path, &serde_json::json!({ "models": models }))?;
    }
    Ok(())
}

/// A line plot of validation perplexity against the exit layer, one line per model.
fn perplexity_svg(models: &[(String, Vec<crate::train::eval::ExitEval>)]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 30.0, 50.0);
    let layers = models
        .iter()
        .map(|(_, e)| e.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let ppl = models
        .iter()
        .flat_map(|(_, e)| e.iter().map(|x| x.perplexity));
    let (lo, hi) = ppl.fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p), b.max(p)));
    let (lo, hi) = ((lo * 0.95).floor(), (hi * 1.05).ceil().max(lo + 1.0));
    let x = |l: usize| left + (l - 1) as f64 * (w - left - right) / (layers - 1) as f64;
    let y = |p: f64| top + (hi - p) * (h - top - bottom) / (hi - lo);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\">validation perplexity when exiting after layer E</text>\n",
        w / 2.0
    );
    for l in 1..=layers {
        s += &format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{l}</text>\n",
            x(l), top, h - bottom, h - bottom + 16.0
        );
    }
    let ticks = 5;
    for i in 0..=ticks {
        let p = lo + (hi - lo) * i as f64 / ticks as f64;
        s += &format!(
            "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{p:.1}</text>\n",
            y(p), w - right, left - 6.0, y(p) + 4.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">exit layer E</text>\n",
        w / 2.0,
        h - 12.0
    );
    for (i, (name, evals)) in models.iter().enumerate() {
        let c = colors[i % colors.len()];
        let pts: Vec<String> = evals
            .iter()
            .map(|e| format!("{:.1},{:.1}", x(e.exit_layer), y(e.perplexity)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        );
        let label = Path::new(name)
            .file_stem()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        s += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\" text-anchor=\"end\">{label}</text>\n",
            w - right - 4.0,
            top + 16.0 * (i + 1) as f64
        );
    }
    s + "</svg>\n"
}

/// Times `run` once, returning seconds and its stats.
fn timed(
    mut run: impl FnMut(&mut [u32]) -> tessera_kernels::Result<DecodeStats>,
    out: &mut [u32],
) -> Result<(f64, DecodeStats), String> {
    let t = Instant::now();
    let stats = run(out).map_err(|e| format!("decoding failed: {e}"))?;
    Ok((t.elapsed().as_secs_f64(), stats))
}

/// The prompts of `generate`: `(text, tokens)` pairs.
fn generate_prompts(a: &GenerateArgs, vocab: &Vocab) -> Result<Vec<(String, Vec<u32>)>, String> {
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
    if a.prompt.is_some() {
        return Err("give --prompt or --prompts-from, not both".into());
    }
    if a.prompt_count == 0 || a.prompt_chars == 0 {
        return Err("--prompt-count and --prompt-chars must be at least 1".into());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let chars: Vec<char> = text.chars().collect();
    let held_out = chars.get(chars.len() - chars.len() / 10..).unwrap_or(&[]);
    let room = held_out.len().saturating_sub(a.prompt_chars);
    if room == 0 {
        return Err(format!(
            "{}: its held-out tail is shorter than --prompt-chars {}",
            path.display(),
            a.prompt_chars
        ));
    }
    let mut prompts = Vec::with_capacity(a.prompt_count);
    for k in 0..a.prompt_count {
        let at = k * room / a.prompt_count;
        let text: String = held_out[at..at + a.prompt_chars].iter().collect();
        let tokens = vocab
            .encode(&text)
            .map_err(|e| format!("prompt {k} from {}: {e}", path.display()))?;
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

fn generate(a: GenerateArgs) -> CliResult {
    check_outputs(a.json.as_deref(), None)?;
    let ck = checkpoint::load(&a.model)?;
    let c = ck.config;
    let attention = parse_attention(&a.attention)?;
    let (tokens, repeats) = if a.quick {
        (64, 1)
    } else {
        (a.tokens, a.repeats)
    };
    let prompts = generate_prompts(&a, &ck.vocab)?;
    for (text, prompt) in &prompts {
        if prompt.is_empty() {
            return Err("the prompt is empty".into());
        }
        if prompt.len() + tokens > c.max_seq {
            return Err(format!(
                "prompt {text:?} ({}) + tokens ({tokens}) exceed the model's max_seq {}",
                prompt.len(),
                c.max_seq
            ));
        }
    }
    for &e in &a.exit_layer {
        if e == 0 || e > c.layers {
            return Err(format!("--exit-layer {e} is outside 1..={}", c.layers));
        }
    }
    if a.draft.contains(&0) {
        return Err("--draft must be at least 1".into());
    }
    let weights = ModelWeights::new(c, &ck.params).map_err(|e| format!("bad model: {e}"))?;
    // Every buffer is allocated here, once; the decoders allocate nothing.
    let max_draft = a.draft.iter().copied().max().unwrap_or(1);
    let kerr = |e: tessera_kernels::Error| e.to_string();
    let mut kv = vec![0.0f32; kv_cache_len(&c).map_err(kerr)?];
    let mut scratch =
        vec![0.0f32; speculative_scratch_len(&c, max_draft, attention).map_err(kerr)?];
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
            let full_passes = total * c.layers;
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
                return Err(format!(
                    "self-speculative output differs from full decoding at E={e}, d={d}"
                ));
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
