//! `tessera wasserstein` (being built).

use super::CliResult;

/// Arguments of `tessera wasserstein`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand.
pub fn main(_args: Args) -> CliResult {
    Err("`tessera wasserstein` is not built yet".into())
}
