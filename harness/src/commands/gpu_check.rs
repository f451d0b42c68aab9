//! `tessera gpu-check`: the PTX kernels (`kernels/ptx`) on a GPU, against the CPU kernels and the
//! exact oracle. Needs a binary built with `--features cuda`, a CUDA driver and a GPU; without
//! any of them it says which is missing and exits with status 2. See docs/gpu.md.

use super::CliResult;
use std::path::PathBuf;

/// Arguments of `tessera gpu-check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The PTX to load (built by scripts/build-ptx.sh).
    #[arg(long, default_value = "target/ptx/tessera-sm_90.ptx")]
    pub ptx: PathBuf,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Sequence lengths 256 and 1024 only, and the smaller optimizer sizes.
    #[arg(long)]
    pub quick: bool,
    /// Query rows per attention case compared with the exact oracle.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub oracle_rows: u32,
    /// Query rows per large attention case compared with the CPU kernel (small cases: all).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub cpu_rows: u32,
    /// Timed launches per kernel (after one whose output is checked).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reps: u32,
    /// Seed of every input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the records as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write each attention case's inputs and oracle rows as .npy here (for
    /// scripts/gpu_compare.py, which runs PyTorch on the same problems).
    #[arg(long)]
    pub inputs_dir: Option<PathBuf>,
}

/// Runs the check; `Err` (exit status 2) with a message when it cannot run here or a check
/// failed.
pub fn main(args: Args) -> CliResult {
    run(args)
}

#[cfg(not(feature = "cuda"))]
fn run(_args: Args) -> CliResult {
    anyhow::bail!(
        "gpu-check: this tessera was built without GPU support; rebuild it with \
         `cargo build --release -p tessera-harness --features cuda` (no CUDA needed to build), \
         build the PTX with `bash scripts/build-ptx.sh`, and run it where an NVIDIA GPU and its \
         driver are (docs/gpu.md)"
    )
}

#[cfg(feature = "cuda")]
fn run(args: Args) -> CliResult {
    use crate::gpu::check::{self, Settings};
    use anyhow::Context as _;
    if let Some(json) = &args.json {
        crate::fsutil::check_output_file(json)?;
    }
    let settings = Settings {
        ptx: &args.ptx,
        device: args.device,
        quick: args.quick,
        oracle_rows: args.oracle_rows as usize,
        cpu_rows: args.cpu_rows as usize,
        reps: args.reps as usize,
        seed: args.seed,
        inputs_dir: args.inputs_dir.as_deref(),
        progress: true,
    };
    let report = check::run(&settings).context("gpu-check")?;
    println!("{}", report.table());
    if let Some(json) = &args.json {
        crate::fsutil::write_json(json, &report)?;
        eprintln!("wrote {}", json.display());
    }
    let failures = report.failures();
    if failures.is_empty() {
        println!("every check passed");
        Ok(())
    } else {
        anyhow::bail!(
            "{} checks failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        )
    }
}
