//! `tessera layerskip study`: the controlled comparison of issue 19. The same architecture, data,
//! steps, learning rate and seeds are trained with LayerSkip's recipe and without it; every model
//! is measured by (b) teacher-forced draft acceptance on held-out text with the expected speedup
//! from measured draft/verify costs, and (a) greedy self-speculative generation from held-out
//! prompts, timed against full decoding, with the repetition of the generated text beside it.

use super::{load_corpus, parse_attention};
use crate::commands::CliResult;
use crate::fsutil::{check_outputs, write_atomic, write_json};
use crate::train::eval::{evaluate_exits, ExitEval};
use crate::train::speedup::{
    distinct_n, measure_costs, repeated_ngram_fraction, teacher_forced, Costs, TeacherForced,
};
use crate::train::{checkpoint, Recipe, TrainConfig, Trainer};
use anyhow::{bail, ensure, Context};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;
use tessera_kernels::nn::{
    decode_scratch_len, greedy_decode, kv_cache_len, self_speculative_decode, DecodeStats,
    ModelWeights,
};

#[derive(Parser, Debug)]
pub(super) struct StudyArgs {
    /// Text to train on; its last 10% is held out for every measurement.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Where the trained models go; a model already there with the same settings is reused (so
    /// an interrupted study resumes where it stopped).
    #[arg(long)]
    work: PathBuf,
    /// Seeds; each is trained with and without the recipe.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
    #[arg(long, default_value_t = 6)]
    layers: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    #[arg(long, default_value_t = 192)]
    ffn: usize,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 600)]
    steps: usize,
    #[arg(long, default_value_t = 3e-3, value_parser = crate::commands::finite_positive)]
    lr: f32,
    /// Worker threads of training (the weights do not depend on it).
    #[arg(long)]
    threads: Option<usize>,
    /// Held-out prompts for the generation speedup.
    #[arg(long, default_value_t = 64)]
    prompts: usize,
    /// Characters per prompt.
    #[arg(long, default_value_t = 32)]
    prompt_chars: usize,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 96)]
    tokens: usize,
    /// Longest draft considered.
    #[arg(long, default_value_t = 4)]
    max_draft: usize,
    /// Held-out windows of --seq-len for the teacher-forced acceptance and the exit losses.
    #[arg(long, default_value_t = 64)]
    windows: usize,
    /// n of the repetition statistics (fraction of tokens inside a repeated n-gram, distinct-n).
    #[arg(long, default_value_t = 8)]
    ngram: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the Markdown report here.
    #[arg(long)]
    md: Option<PathBuf>,
    /// Write the per-exit perplexity plot (mean over seeds) here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// A seconds-sized run (3 layers × 32, 30 steps, 8 prompts of 24 tokens) for CI.
    #[arg(long)]
    quick: bool,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// One trained model's measurements.
#[derive(Clone, Debug, serde::Serialize)]
struct ModelResult {
    arm: &'static str,
    seed: u64,
    train_seconds: f64,
    exits: Vec<ExitEval>,
    teacher_forced: Vec<TeacherForced>,
    costs: Costs,
    /// The (E, d) with the highest teacher-forced expected speedup, and that speedup.
    best_exit: usize,
    best_draft: usize,
    expected_speedup: f64,
    generation: Generation,
}

/// Greedy generation from the held-out prompts at the model's best (E, d).
#[derive(Clone, Debug, serde::Serialize)]
struct Generation {
    acceptance: f64,
    full_seconds: f64,
    spec_seconds: f64,
    /// Full decoding time over speculative time, the same model.
    speedup: f64,
    /// The paper's measure: full decoding of the no-recipe model (same seed), timed in the same
    /// loop, over this model's speculative decoding (recipe models only).
    vs_baseline: Option<f64>,
    /// `1 − layer passes / (tokens · L)`: the memory-bound cost model, free of timing noise.
    layer_passes_saved: f64,
    identical: bool,
    /// Mean over prompts of the fraction of generated tokens inside a repeated n-gram.
    repeated_fraction: f64,
    /// Mean over prompts of distinct-n of the generated tokens.
    distinct: f64,
}

/// Runs `tessera layerskip study`.
pub(super) fn run(mut a: StudyArgs) -> CliResult {
    check_outputs(
        [a.json.as_deref(), a.md.as_deref(), a.svg.as_deref()]
            .into_iter()
            .flatten(),
        None,
    )?;
    if a.quick {
        (a.layers, a.dim, a.ffn, a.seq_len, a.batch, a.steps) = (3, 32, 64, 32, 4, 30);
        (a.prompts, a.tokens, a.windows, a.max_draft) = (8, 24, 8, 2);
    }
    ensure!(!a.seeds.is_empty(), "--seeds is empty");
    ensure!(
        a.layers >= 2,
        "--layers must be at least 2 (a draft needs an early exit)"
    );
    ensure!(
        a.prompts >= 1 && a.prompt_chars >= 1 && a.tokens >= 1 && a.windows >= 1,
        "--prompts, --prompt-chars, --tokens and --windows must be at least 1"
    );
    ensure!(
        (1..a.seq_len).contains(&a.max_draft),
        "--max-draft must be in 1..{} (--seq-len)",
        a.seq_len
    );
    std::fs::create_dir_all(&a.work)
        .with_context(|| format!("cannot create --work {}", a.work.display()))?;
    let (corpus, source) = load_corpus(&a.corpus)?;
    let mut base = TrainConfig::standard(corpus.vocab.len());
    base.model.layers = a.layers;
    base.model.dim = a.dim;
    base.model.ffn_hidden = a.ffn;
    base.model.max_seq = (a.prompt_chars + a.tokens).max(a.seq_len).max(64);
    base.seq_len = a.seq_len;
    base.batch = a.batch;
    base.steps = a.steps;
    base.lr = a.lr;
    base.warmup = (a.steps / 20).max(1);
    base.validate()?;
    let prompts = held_out_prompts(&corpus.val, a.prompts, a.prompt_chars, a.tokens)?;
    let reference: Vec<&[u32]> = prompts.iter().map(|(_, next)| next.as_slice()).collect();
    // The costs are the architecture's, the same for every model: measured once, on the first
    // seed's no-recipe model (trained weights: random ones drift into subnormal numbers in the
    // last layers and time the CPU's slow path), so timing noise cannot tell the arms apart in (b).
    let mut costs: Option<Costs> = None;
    let mut results = Vec::new();
    for &seed in &a.seeds {
        let mut arms = Vec::new();
        for (arm, recipe) in [("recipe", Recipe::layerskip()), ("none", Recipe::none())] {
            let mut cfg = base;
            cfg.seed = seed;
            cfg.recipe = recipe;
            let path = a.work.join(format!("{arm}-seed{seed}.safetensors"));
            let settings = format!("study corpus={source} {cfg:?}");
            let (params, secs) = train_or_reuse(&a, cfg, &corpus, &path, &settings)?;
            arms.push((arm, cfg, params, secs));
        }
        // The recipe's model is timed against full decoding of the no-recipe model (the paper's
        // baseline) in the same loop, so both see the same machine load.
        let baseline = arms
            .iter()
            .find(|x| x.0 == "none")
            .map(|x| x.2.clone())
            .context("no baseline")?;
        if costs.is_none() {
            eprintln!("measuring the draft, verify and full-step costs");
            costs = Some(measure_costs(
                &base.model,
                &baseline,
                a.prompt_chars,
                a.max_draft,
                50,
                9,
            )?);
        }
        let costs = costs.as_ref().context("no costs")?;
        for (arm, cfg, params, secs) in &arms {
            eprintln!("measuring {arm} seed {seed}");
            let m = Measure {
                arm,
                seed,
                train_seconds: *secs,
                cfg,
                params,
                baseline: (*arm == "recipe").then_some(baseline.as_slice()),
                costs,
            };
            results.push(m.run(&a, &corpus.val, &prompts)?);
        }
    }
    let report = Report::new(&a, &base, &source, results, &reference);
    println!("{}", report.summary());
    if let Some(p) = &a.json {
        write_json(p, &report.json())?;
    }
    if let Some(p) = &a.md {
        write_atomic(p, report.markdown().as_bytes())?;
    }
    if let Some(p) = &a.svg {
        write_atomic(
            p,
            super::eval::perplexity_svg(&report.mean_exits()).as_bytes(),
        )?;
    }
    Ok(())
}

/// Trains `cfg`, or loads the model at `path` when it was trained with the same settings.
fn train_or_reuse(
    a: &StudyArgs,
    cfg: TrainConfig,
    corpus: &crate::train::Corpus,
    path: &std::path::Path,
    settings: &str,
) -> anyhow::Result<(Vec<f32>, f64)> {
    if path.exists() {
        let ck = checkpoint::load(path)?;
        if let Some(rest) = ck.description.strip_prefix(settings) {
            eprintln!("reusing {} (same settings)", path.display());
            let secs = rest
                .trim()
                .strip_prefix("train_seconds=")
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            return Ok((ck.params, secs));
        }
        eprintln!("{} has other settings: training again", path.display());
    }
    let started = Instant::now();
    let mut trainer = Trainer::new(cfg, &corpus.train)?;
    if let Some(t) = a.threads {
        trainer.set_threads(t)?;
    }
    // The state every 100 steps beside the model: an interrupted study resumes mid-run too.
    let state = path.with_extension("state");
    if state.exists() {
        match trainer.resume(&state) {
            Ok(()) => eprintln!(
                "resumed {} at step {}",
                state.display(),
                trainer.steps_done()
            ),
            Err(e) => eprintln!("not resuming: {e:#}"),
        }
    }
    eprintln!(
        "training {} ({} threads)",
        path.display(),
        trainer.threads()
    );
    let mut saved: anyhow::Result<()> = Ok(());
    trainer.run(!a.no_progress, |info, t| {
        if info.step % 100 == 0 && saved.is_ok() {
            saved = t.save_state(&state);
        }
    })?;
    saved?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&state);
    checkpoint::save(
        path,
        &cfg.model,
        &corpus.vocab,
        trainer.params(),
        &format!("{settings} train_seconds={secs:.1}"),
    )?;
    Ok((trainer.params().to_vec(), secs))
}

/// `count` prompts of `chars` tokens evenly spaced over the held-out tokens, each with the
/// `tokens` true tokens after it (the reference for the repetition statistic).
fn held_out_prompts(
    val: &[u32],
    count: usize,
    chars: usize,
    tokens: usize,
) -> anyhow::Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let span = chars + tokens;
    let room = val.len().saturating_sub(span);
    ensure!(
        count <= room,
        "the held-out text has {} tokens: too few for {count} prompts of {chars} + {tokens}",
        val.len()
    );
    Ok((0..count)
        .map(|k| {
            let at = (k as u128 * room as u128 / count as u128) as usize;
            (
                val[at..at + chars].to_vec(),
                val[at + chars..at + span].to_vec(),
            )
        })
        .collect())
}

/// One model to measure.
struct Measure<'m> {
    arm: &'static str,
    seed: u64,
    train_seconds: f64,
    cfg: &'m TrainConfig,
    params: &'m [f32],
    /// The no-recipe model of the same seed, whose full decoding is timed beside this model's.
    baseline: Option<&'m [f32]>,
    /// The measured costs of the architecture.
    costs: &'m Costs,
}

impl Measure<'_> {
    fn run(
        &self,
        a: &StudyArgs,
        val: &[u32],
        prompts: &[(Vec<u32>, Vec<u32>)],
    ) -> anyhow::Result<ModelResult> {
        let (c, params) = (self.cfg.model, self.params);
        let exits = evaluate_exits(&c, params, val, a.seq_len, a.windows)?;
        let tf = teacher_forced(&c, params, val, a.seq_len, a.windows, a.max_draft)?;
        let costs = self.costs.clone();
        let mut best = (1, 1, 0.0f64);
        for t in &tf {
            for (d, &tpr) in t.tokens_per_round.iter().enumerate() {
                let s = costs
                    .expected_speedup(t.exit_layer, d + 1, tpr)
                    .context("costs missing")?;
                if s > best.2 {
                    best = (t.exit_layer, d + 1, s);
                }
            }
        }
        let (e, d, expected) = best;
        let generation = generate(a, self.cfg, params, self.baseline, prompts, e, d)?;
        Ok(ModelResult {
            arm: self.arm,
            seed: self.seed,
            train_seconds: self.train_seconds,
            exits,
            teacher_forced: tf,
            costs,
            best_exit: e,
            best_draft: d,
            expected_speedup: expected,
            generation,
        })
    }
}

/// Greedy full and self-speculative decoding from every prompt, interleaved prompt by prompt.
fn generate(
    a: &StudyArgs,
    cfg: &TrainConfig,
    params: &[f32],
    baseline: Option<&[f32]>,
    prompts: &[(Vec<u32>, Vec<u32>)],
    e: usize,
    d: usize,
) -> anyhow::Result<Generation> {
    let c = cfg.model;
    let attention = parse_attention("baseline")?;
    let w = ModelWeights::new(c, params)?;
    let bw = baseline.map(|p| ModelWeights::new(c, p)).transpose()?;
    let mut base_out = vec![0u32; a.tokens];
    let mut base_s = 0.0;
    let per_call = (d + 1).max(16);
    let mut kv = vec![0.0f32; kv_cache_len(&c)?];
    let mut scratch = vec![0.0f32; decode_scratch_len(&c, per_call, attention)?];
    let (mut full_out, mut spec_out) = (vec![0u32; a.tokens], vec![0u32; a.tokens]);
    let (mut full_s, mut spec_s) = (0.0, 0.0);
    let mut stats = DecodeStats::default();
    let (mut identical, mut rep, mut dist) = (true, 0.0, 0.0);
    // Untimed warm-up of both decoders (first touches of the caches' pages), then each prompt
    // timed twice per decoder, alternating, the faster of each kept.
    if let Some((p, _)) = prompts.first() {
        greedy_decode(&w, p, attention, &mut kv, &mut scratch, &mut full_out)?;
        self_speculative_decode(&w, p, e, d, attention, &mut kv, &mut scratch, &mut spec_out)?;
    }
    for (prompt, _) in prompts {
        let (mut best_full, mut best_spec) = (f64::INFINITY, f64::INFINITY);
        let mut best_base = f64::INFINITY;
        let mut st = DecodeStats::default();
        for _ in 0..2 {
            if let Some(bw) = &bw {
                let t = Instant::now();
                greedy_decode(bw, prompt, attention, &mut kv, &mut scratch, &mut base_out)?;
                best_base = best_base.min(t.elapsed().as_secs_f64());
            }
            let t = Instant::now();
            greedy_decode(&w, prompt, attention, &mut kv, &mut scratch, &mut full_out)?;
            best_full = best_full.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            st = self_speculative_decode(
                &w,
                prompt,
                e,
                d,
                attention,
                &mut kv,
                &mut scratch,
                &mut spec_out,
            )?;
            best_spec = best_spec.min(t.elapsed().as_secs_f64());
        }
        full_s += best_full;
        spec_s += best_spec;
        base_s += best_base;
        identical &= spec_out == full_out;
        stats.generated += st.generated;
        stats.drafted += st.drafted;
        stats.accepted += st.accepted;
        stats.layer_passes += st.layer_passes;
        rep += repeated_ngram_fraction(&full_out, a.ngram);
        dist += distinct_n(&full_out, a.ngram);
    }
    if !identical {
        bail!("self-speculative output differs from full decoding at E={e}, d={d}");
    }
    let n = prompts.len() as f64;
    Ok(Generation {
        acceptance: stats.acceptance(),
        full_seconds: full_s,
        spec_seconds: spec_s,
        speedup: full_s / spec_s,
        vs_baseline: bw.is_some().then_some(base_s / spec_s),
        layer_passes_saved: 1.0
            - stats.layer_passes as f64 / (stats.generated.max(1) * c.layers) as f64,
        identical,
        repeated_fraction: rep / n,
        distinct: dist / n,
    })
}

mod report;
use report::Report;
