//! `tessera hyperopt` (being built).

use super::CliResult;

/// Arguments of `tessera hyperopt`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand.
pub fn main(_args: Args) -> CliResult {
    Err("`tessera hyperopt` is not built yet".into())
}
