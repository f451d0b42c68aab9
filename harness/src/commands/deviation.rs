//! `tessera deviation`: the flash-vs-baseline numeric deviation study.

use super::CliResult;

/// Arguments of `tessera deviation`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand.
pub fn main(_args: Args) -> CliResult {
    Err("`tessera deviation` is not built yet".into())
}

/// The default job of `cargo run --release`.
pub fn default_job() -> CliResult {
    Err("the default job is not built yet".into())
}
