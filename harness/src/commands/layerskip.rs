//! `tessera layerskip` (being built).

use super::CliResult;

/// Arguments of `tessera layerskip`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand.
pub fn main(_args: Args) -> CliResult {
    Err("`tessera layerskip` is not built yet".into())
}
