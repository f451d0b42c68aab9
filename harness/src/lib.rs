//! Tessera's harness: everything that needs `std` to measure the kernels.
//!
//! - [`metrics`]: deviation of a result from an exact answer (max/mean absolute, max relative, ULP);
//! - [`data`]: seeded input generators shared by tests, studies and benches;
//! - [`npy`]: NumPy `.npy` reading and atomic writing;
//! - [`precision`]: rounding `f32` data to bf16 and back (one helper for inputs and training);
//! - [`tolerance`]: the one table of tolerances, with the a-priori error bound of a row;
//! - [`stats`]: least-squares slopes and Student-t intervals over seeds;
//! - [`budget`]: the memory a command may allocate, checked before it does;
//! - [`attention`]: the kernels run from `f32` data by run-time configuration, and seeded problems;
//! - [`gpu`]: the GPU path (`tessera gpu-check`, feature `cuda`);
//! - the `tessera` binary's subcommands, one module each.

pub mod attention;
pub mod bars;
pub mod budget;
pub mod characterize;
pub mod commands;
pub mod data;
pub mod deviation;
pub mod flash_threads;
pub mod fsutil;
pub mod gpu;
pub mod hyperopt;
pub mod metrics;
pub mod npy;
pub mod plot;
pub mod precision;
pub mod progress;
pub mod stats;
pub mod tolerance;
pub mod train;
pub mod wasserstein;
