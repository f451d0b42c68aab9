//! The `tessera` subcommands, one module each. Each returns `Err(message)` for bad input; the
//! binary prints it and exits with status 2.

pub mod deviation;
pub mod hyperopt;
pub mod layerskip;
pub mod run;
pub mod wasserstein;

/// What a subcommand returns: an error is a message for the user.
pub type CliResult = Result<(), String>;
