//! The `tessera` command line. With no subcommand it runs the quick deviation study.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tessera_harness::commands;

#[derive(Parser)]
#[command(name = "tessera", version, about = "Measure and run Tessera's kernels")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one attention kernel on .npy tensors.
    Run(commands::run::Args),
    /// Sweep flash vs baseline deviation from the exact oracle.
    Deviation(commands::deviation::Args),
    /// Weight divergence (Wasserstein-1) of training runs: flash vs baseline vs low precision.
    Wasserstein(commands::wasserstein::Args),
    /// LayerSkip: train with layer dropout and early-exit loss, evaluate exits, self-speculate.
    Layerskip(commands::layerskip::Args),
    /// Hyperoptimizer towers: sensitivity to the initial learning rate.
    Hyperopt(commands::hyperopt::Args),
    /// The PTX kernels on an NVIDIA GPU against the CPU kernels and the oracle (feature `cuda`).
    GpuCheck(commands::gpu_check::Args),
    /// Text-to-image/video time by operator class, flash vs baseline (Golden et al. 2024).
    Characterize(commands::characterize::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => commands::deviation::default_job(),
        Some(Command::Run(args)) => commands::run::main(args),
        Some(Command::Deviation(args)) => commands::deviation::main(args),
        Some(Command::Wasserstein(args)) => commands::wasserstein::main(args),
        Some(Command::Layerskip(args)) => commands::layerskip::main(args),
        Some(Command::Hyperopt(args)) => commands::hyperopt::main(args),
        Some(Command::GpuCheck(args)) => commands::gpu_check::main(args),
        Some(Command::Characterize(args)) => commands::characterize::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the context and every cause: "cannot read --q: x.npy: ...".
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
