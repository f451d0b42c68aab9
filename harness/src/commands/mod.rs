//! The `tessera` subcommands, one module each. Each returns an error for bad input, with context
//! that says what was being done; the binary prints the whole chain and exits with status 2.

pub mod deviation;
pub mod hyperopt;
pub mod layerskip;
pub mod run;
pub mod wasserstein;

/// What a subcommand returns: an error is a message for the user (print it with `{:#}` to show
/// its causes too).
pub type CliResult = anyhow::Result<()>;
