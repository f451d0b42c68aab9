//! Tessera's harness: everything that needs `std` to measure the kernels.
//!
//! - [`metrics`]: deviation of a result from an exact answer (max/mean absolute, max relative, ULP);
//! - [`data`]: seeded input generators shared by tests, studies and benches;
//! - [`npy`]: NumPy `.npy` reading and atomic writing;
//! - the `tessera` binary's subcommands, one module each.

pub mod commands;
pub mod data;
pub mod deviation;
pub mod fsutil;
pub mod metrics;
pub mod npy;
pub mod plot;
pub mod wasserstein;
pub mod train;
