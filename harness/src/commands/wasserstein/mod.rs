//! `tessera wasserstein`: how far training runs drift apart, measured on their weights, the way
//! "Is Flash Attention Stable?" measures it: the *rate* at which the weights of a run with flash
//! attention move away from a baseline run, next to two references, low-precision training and a
//! different initialisation.
//!
//! For every seed, six runs of the same small transformer train on the same data in the same
//! order ([`RUNS`]); five arms ([`ARMS`]) each compare one run with another, per weight tensor and
//! pooled (all matrices together, all norm gains together), at every logged step of the whole
//! run, by the Wasserstein-1 distance of the two value distributions and by the largest
//! element-wise difference. The `report` module fits each arm's rate of change, puts intervals across seeds
//! on it and on the paper's ratios, and writes wasserstein.md, JSON and SVG plots.
//!
//! Each finished seed is saved to `--resume DIR`; a later run with the same setting loads it
//! instead of training it again.

mod report;
mod report_md;

use super::CliResult;
use crate::budget::{ensure_fits, Need};
use crate::train::network::Network;
use crate::train::{
    init_params, synthetic_corpus, Corpus, Precision, Recipe, TrainConfig, Trainer,
};
use crate::wasserstein::{max_abs_diff, wasserstein1};
use anyhow::{ensure, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tessera_kernels::attention::FlashTiles;
use tessera_kernels::nn::AttentionKind;

/// Arguments of `tessera wasserstein`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds-sized study for CI: 60 steps logged every 6, on the generated corpus unless
    /// --corpus is given.
    #[arg(long)]
    pub quick: bool,
    /// Character corpus to train on (default: the generated one).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Training steps (default 60 quick, 1200 otherwise).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    pub steps: Option<u64>,
    /// Distances are logged every this many steps, and at step 0 and the last step (default
    /// steps / 20).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
    /// Seeds per arm (at least 2, for an interval).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=64))]
    pub seeds: u64,
    /// The first seed; the study uses `seed .. seed + seeds`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep each finished seed here and reuse seeds already there (same setting only).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write the whole study (every distance, slopes, ratios) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write wasserstein.md, SVG plots and wasserstein.json here.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// One training run of a seed.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec {
    /// Short name.
    pub name: &'static str,
    /// Flash attention in the forward (else baseline).
    pub flash: bool,
    /// The number format.
    pub precision: Precision,
    /// Initialised from seed + [`OTHER_INIT`] (the batches still follow the run's seed).
    pub other_init: bool,
}

/// The offset of the other initialisation's seed.
pub const OTHER_INIT: u64 = 1000;

/// The six runs of every seed.
pub const RUNS: [RunSpec; 6] = [
    RunSpec {
        name: "baseline_f32",
        flash: false,
        precision: Precision::F32,
        other_init: false,
    },
    RunSpec {
        name: "baseline_bf16_mixed",
        flash: false,
        precision: Precision::MixedBf16,
        other_init: false,
    },
    RunSpec {
        name: "baseline_fp16_mixed",
        flash: false,
        precision: Precision::MixedF16,
        other_init: false,
    },
    RunSpec {
        name: "baseline_f32_other_init",
        flash: false,
        precision: Precision::F32,
        other_init: true,
    },
    RunSpec {
        name: "flash_f32",
        flash: true,
        precision: Precision::F32,
        other_init: false,
    },
    RunSpec {
        name: "flash_bf16_mixed",
        flash: true,
        precision: Precision::MixedBf16,
        other_init: false,
    },
];

/// Whether an arm is one of the paper's references or a flash-vs-baseline comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArmKind {
    /// Low precision or another initialisation: what flash is measured against.
    Reference,
    /// Flash vs baseline attention, everything else equal.
    Flash,
}

/// One compared pair of runs.
#[derive(Clone, Copy, Debug)]
pub struct Arm {
    /// Name in the JSON.
    pub name: &'static str,
    /// Label in tables and plots.
    pub label: &'static str,
    /// Index into [`RUNS`] of the run measured.
    pub run: usize,
    /// Index into [`RUNS`] of the run it is measured from.
    pub against: usize,
    /// Reference or flash.
    pub kind: ArmKind,
}

/// The five arms.
pub const ARMS: [Arm; 5] = [
    Arm {
        name: "fp16_mixed_vs_f32",
        label: "fp16 mixed vs fp32",
        run: 2,
        against: 0,
        kind: ArmKind::Reference,
    },
    Arm {
        name: "bf16_mixed_vs_f32",
        label: "bf16 mixed vs fp32",
        run: 1,
        against: 0,
        kind: ArmKind::Reference,
    },
    Arm {
        name: "other_init",
        label: "other init (fp32)",
        run: 3,
        against: 0,
        kind: ArmKind::Reference,
    },
    Arm {
        name: "flash_vs_baseline_f32",
        label: "flash vs baseline, fp32",
        run: 4,
        against: 0,
        kind: ArmKind::Flash,
    },
    Arm {
        name: "flash_vs_baseline_bf16_mixed",
        label: "flash vs baseline, bf16 mixed",
        run: 5,
        against: 1,
        kind: ArmKind::Flash,
    },
];

/// The pooled tensor groups: every matrix (embedding, projections, MLP, head) together, every
/// RMSNorm gain together.
pub const MATRICES: &str = "matrices";
/// See [`MATRICES`].
pub const NORM_GAINS: &str = "norm_gains";

/// One distance of the study.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DistanceRecord {
    /// The seed of both runs.
    pub seed: u64,
    /// Training step after which the weights were compared (0: at initialisation).
    pub step: usize,
    /// The arm ([`Arm::name`]).
    pub arm: String,
    /// A weight tensor, or [`MATRICES`] / [`NORM_GAINS`] for a pooled group.
    pub tensor: String,
    /// Whether the tensor (or group) is RMSNorm gains.
    pub norm_gain: bool,
    /// Wasserstein-1 distance between the two runs' value distributions.
    pub w1: f64,
    /// Largest absolute difference of two weights at the same position.
    pub max_diff: f64,
}

/// What one seed produced (also the file `--resume` keeps).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedResult {
    /// The setting it was made with (a seed is reused only under the same one).
    pub setting: String,
    /// The seed.
    pub seed: u64,
    /// Final training loss of each run, in [`RUNS`] order (nats/token, last batch).
    pub final_loss: Vec<f64>,
    /// Steps the fp16 run skipped because its gradients overflowed.
    pub fp16_skipped_steps: usize,
    /// The fp16 run's loss scale at the end.
    pub fp16_final_scale: f32,
    /// Every distance.
    pub records: Vec<DistanceRecord>,
}

/// The study's setting, resolved from the arguments.
pub struct Setting {
    /// The config of the anchor run (seed 0); the others differ as [`RUNS`] says.
    pub base: TrainConfig,
    /// Logging interval.
    pub every: usize,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// The corpus's name for the report.
    pub corpus: String,
    /// Training tokens.
    pub tokens: usize,
}

impl Setting {
    /// What a saved seed must match to be reused.
    fn fingerprint(&self) -> String {
        let mut base = self.base;
        base.seed = 0;
        format!(
            "{base:?} every={} corpus={} tokens={}",
            self.every, self.corpus, self.tokens
        )
    }

    /// The steps at which distances are logged.
    pub fn logged_steps(&self) -> Vec<usize> {
        let steps = self.base.steps;
        let mut v: Vec<usize> = (0..=steps).step_by(self.every).collect();
        if v.last() != Some(&steps) {
            v.push(steps);
        }
        v
    }

    fn config(&self, spec: &RunSpec, seed: u64) -> TrainConfig {
        TrainConfig {
            seed,
            precision: spec.precision,
            attention: if spec.flash {
                AttentionKind::Flash(FlashTiles::new(16, 8))
            } else {
                AttentionKind::Baseline
            },
            ..self.base
        }
    }
}

fn setting(args: &Args, corpus: &Corpus) -> anyhow::Result<Setting> {
    let mut base = TrainConfig::quick(corpus.vocab.len());
    let steps = args.steps.unwrap_or(if args.quick { 60 } else { 1200 });
    base.steps = usize::try_from(steps).context("--steps is too large")?;
    base.warmup = (base.steps / 10).max(1);
    base.recipe = Recipe::none();
    base.validate()?;
    let every = match args.every {
        Some(e) => usize::try_from(e).context("--every is too large")?,
        None => (base.steps / 20).max(1),
    };
    ensure!(
        every <= base.steps,
        "--every {every} is larger than --steps {}",
        base.steps
    );
    let last = args
        .seed
        .checked_add(args.seeds)
        .context("--seed + --seeds overflows")?;
    Ok(Setting {
        base,
        every,
        seeds: (args.seed..last).collect(),
        corpus: args
            .corpus
            .as_ref()
            .map_or("generated (synthetic_corpus(40000, 7))".into(), |p| {
                p.display().to_string()
            }),
        tokens: corpus.train.len(),
    })
}

/// Trains one run, calling `snapshot(step, weights)` at every logged step.
fn train(
    cfg: TrainConfig,
    init: Option<&[f32]>,
    data: &[u32],
    logged: &[usize],
    bar: &crate::progress::Progress,
) -> anyhow::Result<(Vec<Vec<f32>>, f64, Trainer)> {
    let mut trainer = Trainer::new(cfg, data)?;
    if let Some(p) = init {
        trainer.set_params(p)?;
    }
    let mut snapshots = vec![trainer.params().to_vec()];
    let mut last_loss = f64::NAN;
    trainer.run(false, |info, t| {
        last_loss = info.loss;
        bar.inc(1);
        if logged.contains(&info.step) {
            snapshots.push(t.params().to_vec());
        }
    })?;
    Ok((snapshots, last_loss, trainer))
}

/// Distances of one arm at one logged step, per tensor and pooled.
fn distances(
    names: &[(String, std::ops::Range<usize>)],
    seed: u64,
    step: usize,
    arm: &Arm,
    a: &[f32],
    b: &[f32],
    out: &mut Vec<DistanceRecord>,
) -> anyhow::Result<()> {
    let mut pooled: [(Vec<f32>, Vec<f32>); 2] = Default::default();
    for (name, range) in names {
        let (x, y) = (&a[range.clone()], &b[range.clone()]);
        let norm_gain = name.ends_with("_norm");
        let p = &mut pooled[usize::from(norm_gain)];
        p.0.extend_from_slice(x);
        p.1.extend_from_slice(y);
        out.push(DistanceRecord {
            seed,
            step,
            arm: arm.name.into(),
            tensor: name.clone(),
            norm_gain,
            w1: wasserstein1(x, y)?,
            max_diff: max_abs_diff(x, y)?,
        });
    }
    for (group, (x, y)) in [MATRICES, NORM_GAINS].into_iter().zip(&pooled) {
        out.push(DistanceRecord {
            seed,
            step,
            arm: arm.name.into(),
            tensor: group.into(),
            norm_gain: group == NORM_GAINS,
            w1: wasserstein1(x, y)?,
            max_diff: max_abs_diff(x, y)?,
        });
    }
    Ok(())
}

/// Trains the six runs of one seed (in parallel) and measures every arm.
fn run_seed(
    s: &Setting,
    data: &[u32],
    seed: u64,
    bar: &crate::progress::Progress,
) -> anyhow::Result<SeedResult> {
    let logged = s.logged_steps();
    let other_init = init_params(&s.base.model, seed.wrapping_add(OTHER_INIT))?;
    let results: Vec<anyhow::Result<_>> = std::thread::scope(|scope| {
        let handles: Vec<_> = RUNS
            .iter()
            .map(|spec| {
                let cfg = s.config(spec, seed);
                let init = spec.other_init.then_some(other_init.as_slice());
                let logged = &logged[1..];
                scope.spawn(move || train(cfg, init, data, logged, bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a training thread panicked")))
            })
            .collect()
    });
    let mut runs = Vec::new();
    for (r, spec) in results.into_iter().zip(&RUNS) {
        runs.push(r.with_context(|| format!("seed {seed}, run {}", spec.name))?);
    }
    let names = crate::train::tensor_names(&s.base.model);
    let mut records = Vec::new();
    for (k, &step) in logged.iter().enumerate() {
        for arm in &ARMS {
            let (a, b) = (&runs[arm.run].0[k], &runs[arm.against].0[k]);
            distances(&names, seed, step, arm, a, b, &mut records)?;
        }
    }
    let scaler = runs[2].2.loss_scaler();
    Ok(SeedResult {
        setting: s.fingerprint(),
        seed,
        final_loss: runs.iter().map(|r| r.1).collect(),
        fp16_skipped_steps: scaler.skipped,
        fp16_final_scale: scaler.scale,
        records,
    })
}

fn seed_file(dir: &Path, seed: u64) -> PathBuf {
    dir.join(format!("wasserstein-seed{seed}.json"))
}

/// A saved seed made under the same setting, if there is one.
fn load_seed(dir: &Path, seed: u64, fingerprint: &str) -> anyhow::Result<Option<SeedResult>> {
    let path = seed_file(dir, seed);
    if !path.exists() {
        return Ok(None);
    }
    let text = crate::fsutil::read_text(&path)?;
    let saved: SeedResult = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a saved seed of this study", path.display()))?;
    if saved.setting != fingerprint || saved.seed != seed {
        eprintln!(
            "wasserstein: {} was made with another setting; training seed {seed} again",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(saved))
}

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    let corpus = match &args.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::from_text(&synthetic_corpus(40_000, 7))?,
    };
    let s = setting(&args, &corpus)?;
    let logged = s.logged_steps();
    // Each run keeps a copy of its weights at every logged step, on top of its training state.
    let weights = s.base.model.param_count()?;
    let mut run = vec![Need::floats(
        "weights, gradients and Adam state",
        weights.checked_mul(5).ok_or(()),
    )];
    run.extend(Network::needs(
        &s.base.model,
        s.base.seq_len,
        s.base.attention,
    ));
    let needs = [
        Need::floats(
            "the snapshots of 6 runs",
            weights
                .checked_mul(logged.len())
                .and_then(|n| n.checked_mul(RUNS.len()))
                .ok_or(()),
        ),
        Need::combined("the training state of 6 runs", &run, RUNS.len()),
    ];
    ensure_fits(&needs, "lower --steps or raise --every")?;
    crate::fsutil::check_outputs(args.json.as_deref(), args.out_dir.as_deref())?;
    if let Some(dir) = &args.resume {
        crate::fsutil::prepare_output_dir(dir)?;
    }
    let fingerprint = s.fingerprint();
    let mut done = Vec::new();
    let mut todo = Vec::new();
    for &seed in &s.seeds {
        match args.resume.as_deref() {
            Some(dir) => match load_seed(dir, seed, &fingerprint)? {
                Some(r) => done.push(r),
                None => todo.push(seed),
            },
            None => todo.push(seed),
        }
    }
    eprintln!(
        "wasserstein: {} seeds x {} runs of {} steps ({} reused from --resume); runs: {}",
        s.seeds.len(),
        RUNS.len(),
        s.base.steps,
        done.len(),
        RUNS.map(|r| r.name).join(", ")
    );
    let total = (todo.len() * RUNS.len() * s.base.steps) as u64;
    let bar = crate::progress::Progress::new(
        true,
        "wasserstein",
        total,
        "{elapsed_precise} [{bar:30}] {pos}/{len} run-steps eta {eta} {msg}",
    )?;
    for seed in todo {
        bar.set_message(format!("seed {seed}"));
        let r = run_seed(&s, &corpus.train, seed, &bar)?;
        if let Some(dir) = &args.resume {
            crate::fsutil::write_json(&seed_file(dir, seed), &r)?;
        }
        done.push(r);
    }
    bar.finish();
    done.sort_by_key(|r| r.seed);
    let study = report::Study::new(&s, &args, done)?;
    println!("{}", study.slope_table());
    if let Some(path) = &args.json {
        crate::fsutil::write_atomic(path, study.to_json()?.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.out_dir {
        study.write(dir)?;
        eprintln!(
            "wrote wasserstein.md, plots and JSON under {}",
            dir.display()
        );
    }
    Ok(())
}
