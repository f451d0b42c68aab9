//! `tessera wasserstein`: how far training runs drift apart, measured on their weights.
//!
//! Four runs of the same tiny transformer from the same seed: (a) baseline attention in f32 (the
//! anchor), (b) flash attention in f32, (c) baseline with bf16-emulated training, (d) baseline in
//! f32 from another seed. After every snapshot step, the Wasserstein-1 distance between each run's
//! weight values and (a)'s, per tensor and over all weights; the ratio (c)/(b) says how much more
//! low-precision training moves the weights than the flash algorithm does ("Is Flash Attention
//! Stable?" found 2-5x). A fifth run, (e) flash attention with bf16-emulated training, is compared
//! with (c): the flash-vs-baseline divergence when both train in bf16, the setting closest to the
//! paper's (its training runs were bf16).

use super::CliResult;
use crate::budget::{ensure_fits, Need};
use crate::plot::{Plot, Scale, Series};
use crate::train::network::Network;
use crate::train::{synthetic_corpus, Corpus, Precision, Recipe, TrainConfig, Trainer};
use crate::wasserstein::wasserstein1;
use anyhow::ensure;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use tessera_kernels::attention::FlashTiles;
use tessera_kernels::nn::AttentionKind;

/// Arguments of `tessera wasserstein`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds-sized runs (4 layers, width 64, 60 steps) on the generated corpus.
    #[arg(long)]
    pub quick: bool,
    /// Character corpus to train on (default: the generated one).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Training steps (default 60 quick, 400 otherwise).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Distances are measured every this many steps (default steps / 10).
    #[arg(long)]
    pub every: Option<usize>,
    /// Seed of runs (a)-(c); (d) uses seed + 1.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write every distance as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write wasserstein.md, SVG plots and wasserstein.json here.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// The compared runs, each with the index of the run it is compared with.
const RUNS: [(&str, usize); 4] = [
    ("flash_f32", 0),
    ("baseline_bf16", 0),
    ("baseline_f32_other_seed", 0),
    ("flash_bf16_vs_baseline_bf16", 2),
];

/// One distance of the study's JSON output.
#[derive(Clone, Debug, Serialize)]
pub struct DistanceRecord {
    /// Training step after which the weights were compared.
    pub step: usize,
    /// Run compared: `flash_f32`, `baseline_bf16`, `baseline_f32_other_seed` (each with (a)
    /// `baseline_f32`) or `flash_bf16_vs_baseline_bf16` ((e) with (c)).
    pub run: &'static str,
    /// Weight tensor, or `all` for every weight together.
    pub tensor: String,
    /// Wasserstein-1 distance between the run's and the anchor's values.
    pub w1: f64,
}

fn configs(args: &Args, vocab: usize) -> [TrainConfig; 5] {
    let mut base = TrainConfig::quick(vocab);
    base.steps = args.steps.unwrap_or(if args.quick { 60 } else { 400 });
    base.warmup = (base.steps / 10).max(1);
    base.seed = args.seed;
    base.recipe = Recipe::none();
    let flash = TrainConfig {
        attention: AttentionKind::Flash(FlashTiles::new(16, 8)),
        ..base
    };
    let bf16 = TrainConfig {
        precision: Precision::Bf16Emulated,
        ..base
    };
    let other = TrainConfig {
        seed: args.seed.wrapping_add(1),
        ..base
    };
    let flash_bf16 = TrainConfig {
        precision: Precision::Bf16Emulated,
        ..flash
    };
    [base, flash, bf16, other, flash_bf16]
}

/// A finished run: its weights at every snapshot step, and its final loss.
type Run = (Vec<Vec<f32>>, f64);

/// Trains one run, returning a copy of its weights at every snapshot step, and its final loss.
fn train(cfg: TrainConfig, data: &[u32], every: usize) -> anyhow::Result<Run> {
    let mut trainer = Trainer::new(cfg, data)?;
    let mut snapshots = Vec::new();
    let mut last_loss = f64::NAN;
    trainer.run(false, |info, t| {
        last_loss = info.loss;
        if info.step % every == 0 || info.step == cfg.steps {
            snapshots.push(t.params().to_vec());
        }
    })?;
    Ok((snapshots, last_loss))
}

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    let corpus = match &args.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::from_text(&synthetic_corpus(40_000, 7))?,
    };
    let cfgs = configs(&args, corpus.vocab.len());
    let steps = cfgs[0].steps;
    let every = args.every.unwrap_or((steps / 10).max(1));
    ensure!(every != 0, "--every must be at least 1");
    for cfg in &cfgs {
        cfg.validate()?;
    }
    // Each run keeps a copy of its weights at every snapshot step, on top of its training state.
    let snapshots = (steps / every).saturating_add(1);
    let weights = cfgs[0].model.param_count()?;
    let mut run = vec![Need::floats(
        "weights, gradients and Adam state",
        weights.checked_mul(4).ok_or(()),
    )];
    run.extend(Network::needs(
        &cfgs[0].model,
        cfgs[0].seq_len,
        cfgs[0].attention,
    ));
    let needs = [
        Need::floats(
            "the snapshots of 5 runs",
            weights
                .checked_mul(snapshots)
                .and_then(|n| n.checked_mul(cfgs.len()))
                .ok_or(()),
        ),
        Need::combined("the training state of 5 runs", &run, cfgs.len()),
    ];
    ensure_fits(&needs, "lower --steps or raise --every")?;
    crate::fsutil::check_outputs(args.json.as_deref(), args.out_dir.as_deref())?;
    let names = crate::train::tensor_names(&cfgs[0].model);
    eprintln!(
        "wasserstein: training 5 runs of {steps} steps (a: baseline f32, b: flash f32, \
         c: baseline bf16, d: other seed, e: flash bf16)"
    );
    let bar = crate::progress::Progress::new(
        true,
        "wasserstein",
        cfgs.len() as u64,
        "{elapsed_precise} [{bar:30}] {pos}/{len} runs",
    )?;
    let results: Vec<anyhow::Result<Run>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cfgs
            .iter()
            .map(|&cfg| {
                let (data, bar) = (&corpus.train, &bar);
                scope.spawn(move || {
                    let r = train(cfg, data, every);
                    bar.inc(1);
                    r
                })
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
    bar.finish();
    let mut runs = Vec::new();
    for r in results {
        runs.push(r?);
    }
    let mut records = Vec::new();
    for k in 0..runs[0].0.len() {
        let step = ((k + 1) * every).min(steps);
        for (&(run, against), (snaps, _)) in RUNS.iter().zip(&runs[1..]) {
            let (other, snap) = (&snaps[k], &runs[against].0[k]);
            records.push(DistanceRecord {
                step,
                run,
                tensor: "all".into(),
                w1: wasserstein1(other, snap)?,
            });
            for (name, range) in &names {
                records.push(DistanceRecord {
                    step,
                    run,
                    tensor: name.clone(),
                    w1: wasserstein1(&other[range.clone()], &snap[range.clone()])?,
                });
            }
        }
    }
    let losses: Vec<f64> = runs.iter().map(|r| r.1).collect();
    let table = step_table(&records);
    println!("{table}");
    if let Some(path) = &args.json {
        crate::fsutil::write_json(path, &records)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.out_dir {
        write_report(&args, &records, &losses, dir)?;
        eprintln!(
            "wrote wasserstein.md, plots and JSON under {}",
            dir.display()
        );
    }
    Ok(())
}

fn w1_at<'a>(records: &'a [DistanceRecord], run: &str, tensor: &str) -> Vec<&'a DistanceRecord> {
    records
        .iter()
        .filter(|r| r.run == run && r.tensor == tensor)
        .collect()
}

/// Overall distances per snapshot step and the (c)/(b) ratio, as Markdown.
fn step_table(records: &[DistanceRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Wasserstein-1 distance of all weights: (b), (c), (d) from (a) baseline f32; (e) flash bf16 \
         from (c) baseline bf16.\n"
    );
    let _ = writeln!(
        s,
        "| step | (b) flash f32 | (c) baseline bf16 | (d) other seed | (e) flash bf16 vs (c) | (c)/(b) | (c)/(e) |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    let [b, c, d, e] = RUNS.map(|(run, _)| w1_at(records, run, "all"));
    for (((b, c), d), e) in b.iter().zip(&c).zip(&d).zip(&e) {
        let _ = writeln!(
            s,
            "| {} | {:.3e} | {:.3e} | {:.3e} | {:.3e} | {:.1} | {:.1} |",
            b.step,
            b.w1,
            c.w1,
            d.w1,
            e.w1,
            c.w1 / b.w1,
            c.w1 / e.w1
        );
    }
    s
}

fn write_report(
    args: &Args,
    records: &[DistanceRecord],
    losses: &[f64],
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    crate::fsutil::prepare_output_dir(dir)?;
    let last_step = records.iter().map(|r| r.step).max().unwrap_or(0);
    let mut md = String::from("# Wasserstein study: generated tables\n\n");
    let mut command = String::from("cargo run --release -- wasserstein");
    if args.quick {
        command.push_str(" --quick");
    }
    if let Some(c) = &args.corpus {
        let _ = write!(command, " --corpus {}", c.display());
    }
    if let Some(s) = args.steps {
        let _ = write!(command, " --steps {s}");
    }
    let _ = write!(command, " --out-dir {}", dir.display());
    let _ = writeln!(
        md,
        "Made by `{command}`. See deviation.md for the discussion.\n"
    );
    let _ = writeln!(
        md,
        "Final training loss (last layer, nats/token): (a) {:.3}, (b) {:.3}, (c) {:.3}, (d) {:.3}, \
         (e) {:.3}.\n",
        losses[0], losses[1], losses[2], losses[3], losses[4]
    );
    md.push_str(&step_table(records));
    let _ = writeln!(md, "\n## Per tensor at step {last_step}\n");
    let _ = writeln!(
        md,
        "| tensor | (b) flash f32 | (c) baseline bf16 | (d) other seed | (e) flash bf16 vs (c) | (c)/(b) | (c)/(e) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    let at_last = |run: &str, t: &str| {
        records
            .iter()
            .find(|r| r.step == last_step && r.run == run && r.tensor == t)
            .map(|r| r.w1)
    };
    for r in records
        .iter()
        .filter(|r| r.step == last_step && r.run == RUNS[0].0)
    {
        let [b, c, d, e] = RUNS.map(|(run, _)| at_last(run, &r.tensor));
        if let (Some(b), Some(c), Some(d), Some(e)) = (b, c, d, e) {
            let _ = writeln!(
                md,
                "| {} | {b:.3e} | {c:.3e} | {d:.3e} | {e:.3e} | {:.1} | {:.1} |",
                r.tensor,
                c / b,
                c / e
            );
        }
    }
    let series = |run: &'static str, label: &str| Series {
        label: label.into(),
        points: w1_at(records, run, "all")
            .iter()
            .map(|r| (r.step as f64, r.w1))
            .collect(),
        dashed: false,
    };
    let distances = Plot {
        title: "Weight distance from baseline f32 (all weights)".into(),
        x_label: "training step".into(),
        y_label: "Wasserstein-1".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        series: vec![
            series(RUNS[0].0, "(b) flash f32"),
            series(RUNS[1].0, "(c) baseline bf16"),
            series(RUNS[2].0, "(d) other seed"),
            series(RUNS[3].0, "(e) flash bf16 vs (c)"),
        ],
    };
    let [b, c, _, e] = RUNS.map(|(run, _)| w1_at(records, run, "all"));
    let ratio = Plot {
        title: "Low precision vs flash: W1(c) / W1(flash run)".into(),
        x_label: "training step".into(),
        y_label: "ratio".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        series: vec![
            Series {
                label: "(c)/(b) f32 flash".into(),
                points: b
                    .iter()
                    .zip(&c)
                    .map(|(b, c)| (b.step as f64, c.w1 / b.w1))
                    .collect(),
                dashed: false,
            },
            Series {
                label: "(c)/(e) bf16 flash".into(),
                points: e
                    .iter()
                    .zip(&c)
                    .map(|(e, c)| (e.step as f64, c.w1 / e.w1))
                    .collect(),
                dashed: true,
            },
        ],
    };
    let json = serde_json::to_string_pretty(records)?;
    for (name, body) in [
        ("wasserstein.md", md),
        ("wasserstein_distance.svg", distances.to_svg()),
        ("wasserstein_ratio.svg", ratio.to_svg()),
        ("wasserstein.json", json),
    ] {
        crate::fsutil::write_atomic(&dir.join(name), body.as_bytes())?;
    }
    Ok(())
}
