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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => commands::deviation::default_job(),
        Some(Command::Run(args)) => commands::run::main(args),
        Some(Command::Deviation(args)) => commands::deviation::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
