//! `tessera layerskip train`: train a model with LayerSkip's recipe (or plainly) and save it.

use super::{load_corpus, parse_attention, print_evals};
use crate::commands::CliResult;
use crate::fsutil::{check_outputs, write_json};
use crate::train::checkpoint;
use crate::train::eval::evaluate_exits;
use crate::train::{
    Curriculum, EarlyExitLoss, LayerDropout, LossScale, Precision, Recipe, TimeScale, TrainConfig,
    Trainer,
};
use anyhow::{bail, Context};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
pub(super) struct TrainArgs {
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
    #[arg(long, value_parser = crate::commands::finite_positive)]
    lr: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Plain training: no layer dropout, last-layer loss only (the paper's speedup baseline).
    #[arg(long)]
    no_recipe: bool,
    /// Layer dropout rate p_max of the last layer; layer l gets S(t)·(exp(l·ln2/(L−1)) − 1)·p_max,
    /// drawn per sample. The paper uses 0.1-0.2.
    #[arg(long, default_value_t = 0.1, value_parser = crate::commands::probability)]
    p_max: f32,
    /// Time scale S(t) of layer dropout: exp (S_exp(t) = exp(t·ln2/(T−1)) − 1, the paper's choice
    /// when pretraining from scratch) or constant (S = 1, its choice for continual pretraining and
    /// fine-tuning).
    #[arg(long, value_enum, default_value_t = TimeScaleArg::Exp)]
    time_scale: TimeScaleArg,
    /// Early-exit loss weight e_scale of every exit but the last (0 disables the early-exit loss).
    #[arg(long, default_value_t = 1.0, value_parser = crate::commands::finite_non_negative)]
    e_scale: f32,
    /// Per-exit loss scale before normalisation (torchtune's functions): sum_l (cumulative sum of
    /// l+1 over the exits that are on; torchtune's LayerSkip config), linear_l (l+1), uniform, or
    /// paper (the paper's equation e(l) = Σ_{i≤l} i, last layer L−1 + e_scale·Σ_{i≤L−2} i).
    #[arg(long, value_enum, default_value_t = LossScaleArg::SumL)]
    loss_scale: LossScaleArg,
    /// Exit curriculum: gradual (one more exit every T/(2L) steps from the last layer down, all on
    /// from T/2), rotational:R (exit l on when l mod R = t mod R), or all (every exit at every
    /// step: NOT the paper's recipe, which it reports slows training and hurts the last layer).
    #[arg(long, default_value = "gradual")]
    curriculum: String,
    /// Worker threads of the data-parallel step (default: every core, at most one per sequence).
    /// The trained weights do not depend on it.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Forward attention: baseline or flash.
    #[arg(long, default_value = "baseline")]
    attention: String,
    /// f32 or bf16 (bf16-emulated training).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Save the whole training state (weights, Adam's moments, step) to `<out>.state` every N
    /// steps, so that `--resume` can continue an interrupted run.
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Continue from `<out>.state` when it exists (same settings required); the finished run has
    /// the weights an uninterrupted one would.
    #[arg(long)]
    resume: bool,
    /// Also write the per-exit evaluation as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Runs `tessera layerskip train`.
pub(super) fn run(a: TrainArgs) -> CliResult {
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
        other => bail!("--precision must be f32 or bf16, not {other:?}"),
    };
    cfg.recipe = if a.no_recipe {
        Recipe::none()
    } else {
        Recipe {
            dropout: LayerDropout {
                p_max: a.p_max,
                time_scale: match a.time_scale {
                    TimeScaleArg::Exp => TimeScale::Exp,
                    TimeScaleArg::Constant => TimeScale::Constant,
                },
            },
            early_exit: (a.e_scale > 0.0).then_some(EarlyExitLoss {
                e_scale: a.e_scale,
                scale: match a.loss_scale {
                    LossScaleArg::SumL => LossScale::SumL,
                    LossScaleArg::LinearL => LossScale::LinearL,
                    LossScaleArg::Uniform => LossScale::Uniform,
                    LossScaleArg::Paper => LossScale::Paper,
                },
                curriculum: parse_curriculum(&a.curriculum)?,
            }),
        }
    };
    let init = match &a.init {
        Some(path) => {
            let ck = checkpoint::load(path)?;
            if ck.vocab != corpus.vocab {
                bail!("{} was trained on other characters", path.display());
            }
            cfg.model = ck.config;
            Some(ck.params)
        }
        None => None,
    };
    cfg.validate()?;
    let params = cfg.model.param_count()?;
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
        if a.no_recipe {
            "none".to_string()
        } else {
            format!("{:?}", cfg.recipe)
        }
    );
    let started = Instant::now();
    let mut trainer = Trainer::new(cfg, &corpus.train)?;
    if let Some(p) = &init {
        trainer.set_params(p)?;
    }
    if let Some(t) = a.threads {
        trainer.set_threads(t)?;
    }
    let state = {
        let mut name = a.out.clone().into_os_string();
        name.push(".state");
        PathBuf::from(name)
    };
    if a.resume && state.exists() {
        trainer.resume(&state)?;
        eprintln!(
            "resumed {} at step {}",
            state.display(),
            trainer.steps_done()
        );
    }
    let every = a.checkpoint_every.filter(|&n| n > 0);
    let mut last = None;
    let mut saved: anyhow::Result<()> = Ok(());
    trainer.run(!a.no_progress, |info, t| {
        last = Some(info.clone());
        if let Some(n) = every {
            if info.step % n == 0 && saved.is_ok() {
                saved = t.save_state(&state);
            }
        }
    })?;
    saved.with_context(|| format!("cannot save the training state {}", state.display()))?;
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

/// The `--time-scale` flag.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum TimeScaleArg {
    Exp,
    Constant,
}

/// The `--loss-scale` flag.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum LossScaleArg {
    #[value(name = "sum_l")]
    SumL,
    #[value(name = "linear_l")]
    LinearL,
    Uniform,
    Paper,
}

/// The `--curriculum` flag.
pub(super) fn parse_curriculum(s: &str) -> anyhow::Result<Curriculum> {
    match s {
        "all" => Ok(Curriculum::All),
        "gradual" => Ok(Curriculum::Gradual),
        r if r.starts_with("rotational:") => r["rotational:".len()..]
            .parse()
            .ok()
            .filter(|&r: &usize| r >= 1)
            .map(|r| Curriculum::Rotational { r })
            .with_context(|| format!("bad rotation period in {r:?}: want a whole number >= 1")),
        other => bail!("--curriculum must be all, gradual or rotational:R, not {other:?}"),
    }
}
