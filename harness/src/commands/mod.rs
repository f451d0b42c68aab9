//! The `tessera` subcommands, one module each. Each returns an error for bad input, with context
//! that says what was being done; the binary prints the whole chain and exits with status 2.

pub mod characterize;
pub mod deviation;
pub mod gpu_check;
pub mod hyperopt;
pub mod layerskip;
pub mod run;
pub mod wasserstein;

/// What a subcommand returns: an error is a message for the user (print it with `{:#}` to show
/// its causes too).
pub type CliResult = anyhow::Result<()>;

/// A clap value parser for a finite `f32` that is at least 0 (`--e-scale`).
pub fn finite_non_negative(s: &str) -> Result<f32, String> {
    let x: f32 = s.parse().map_err(|e| format!("{e}"))?;
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("{x} is not a finite number >= 0"))
    }
}

/// A clap value parser for a finite `f32` above 0 (learning rates, scales).
pub fn finite_positive(s: &str) -> Result<f32, String> {
    match s.parse::<f32>().map_err(|e| format!("{e}"))? {
        x if x.is_finite() && x > 0.0 => Ok(x),
        x => Err(format!("{x} is not a finite number > 0")),
    }
}

/// A clap value parser for a probability in `[0, 1]` (`--p-max`).
pub fn probability(s: &str) -> Result<f32, String> {
    match finite_non_negative(s)? {
        x if x <= 1.0 => Ok(x),
        x => Err(format!("{x} is not in [0, 1]")),
    }
}
