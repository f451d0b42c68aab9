//! `tessera run`: one attention kernel on .npy tensors.

use super::CliResult;

/// Arguments of `tessera run`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand.
pub fn main(_args: Args) -> CliResult {
    Err("`tessera run` is not built yet".into())
}
