//! `tessera characterize`: the time of text-to-image and text-to-video generation by operator
//! class, flash vs baseline attention, and every attention call's sequence length.
//!
//! ```text
//! tessera characterize {tti,ttv} [--flash|--baseline] [--quick] [--json FILE] [--out-dir DIR]
//!                      [--seed N] [--latent N] [--frames N] [--steps N] [--tokens N] [--layers N]
//! ```

use super::CliResult;
use crate::attention::Kernel;
use crate::characterize::report::{Characterization, SUM_TOLERANCE};
use crate::characterize::{run, Plan, Task};
use crate::fsutil::{check_outputs, write_atomic, write_json};
use anyhow::{ensure, Context};
use std::path::PathBuf;

/// Arguments of `tessera characterize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `tti` (the Stable-Diffusion-1.5-style UNet and the Parti-style token decoder) or `ttv`
    /// (the UNet with temporal attention over frames).
    #[arg(value_parser = ["tti", "ttv"])]
    pub task: String,
    /// Only flash attention (no speedup is reported).
    #[arg(long, conflicts_with = "baseline")]
    pub flash: bool,
    /// Only baseline attention (no speedup is reported).
    #[arg(long)]
    pub baseline: bool,
    /// The quick configuration (a 32×32 latent and a 4-layer 256-token decoder for tti, 8
    /// frames of 16×16 for ttv; about a minute or two on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Also write the whole record as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write TASK.md, TASK.json and TASK_breakdown.svg here (TASK-quick.* with --quick;
    /// default: docs/results/characterize for the full run, nothing for --quick).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side of the UNet's latent (64 is 512×512 pixels).
    #[arg(long, value_parser = clap::value_parser!(u64).range(8..=128))]
    pub latent: Option<u64>,
    /// Frames of the video UNet (ttv).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=64))]
    pub frames: Option<u64>,
    /// Denoising steps (each runs the whole UNet).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub steps: Option<u64>,
    /// Image tokens the decoder generates (tti).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub tokens: Option<u64>,
    /// Decoder layers (tti).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub layers: Option<u64>,
}

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    let task = match args.task.as_str() {
        "ttv" => Task::Ttv,
        _ => Task::Tti,
    };
    let mut plan = Plan::new(task, args.quick, args.seed);
    if args.flash {
        plan.kernels = vec![Kernel::Flash];
    } else if args.baseline {
        plan.kernels = vec![Kernel::Baseline];
    }
    if let Some(u) = plan.unet.as_mut() {
        if let Some(l) = args.latent {
            ensure!(
                l % 8 == 0,
                "--latent must be a multiple of 8 (three 2x downsamplings)"
            );
            u.latent = l as usize;
        }
        if let Some(f) = args.frames {
            ensure!(task == Task::Ttv, "--frames applies to ttv");
            u.frames = f as usize;
        }
        if let Some(s) = args.steps {
            u.steps = s as usize;
        }
    }
    if let Some(t) = args.tokens {
        let c = plan.token.as_mut().context("--tokens applies to tti")?;
        c.image_tokens = t as usize;
    }
    if let Some(l) = args.layers {
        let c = plan.token.as_mut().context("--layers applies to tti")?;
        c.layers = l as usize;
    }
    let out_dir = args
        .out_dir
        .clone()
        .or((!args.quick).then(|| PathBuf::from("docs/results/characterize")));
    check_outputs(args.json.as_deref(), out_dir.as_deref())?;
    eprintln!(
        "tessera characterize {}: {} model(s) x {} attention algorithm(s), one thread",
        args.task,
        usize::from(plan.unet.is_some()) + usize::from(plan.token.is_some()),
        plan.kernels.len()
    );
    let runs = run(&plan, true)?;
    let record = Characterization::new(&plan, runs);
    // The quick and the full run keep separate files.
    let stem = format!("{}{}", args.task, if args.quick { "-quick" } else { "" });
    let svg_name = format!("{stem}_breakdown.svg");
    let md = record.markdown(&svg_name);
    println!("{md}");
    if !record.sums_match {
        eprintln!(
            "warning: a run's class times do not sum to its total within {:.0}%",
            SUM_TOLERANCE * 100.0
        );
    }
    if let Some(path) = &args.json {
        write_json(path, &record)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = out_dir {
        write_json(&dir.join(format!("{stem}.json")), &record)?;
        write_atomic(&dir.join(format!("{stem}.md")), md.as_bytes())?;
        write_atomic(&dir.join(&svg_name), record.bars().to_svg().as_bytes())?;
        eprintln!(
            "wrote {stem}.md, {stem}.json and {svg_name} under {}",
            dir.display()
        );
    }
    Ok(())
}
