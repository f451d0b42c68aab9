//! The numeric deviation study ("Is Flash Attention Stable?", Golden et al. 2024) on CPU.
//!
//! For each configuration — algorithm × precision model × sequence length × head dimension × tile
//! shape × input distribution — the shipped kernels run on seeded inputs and their output rows are
//! compared with the exact oracle (`tessera-reference`), on `rows` sampled query rows against all
//! `seq_len` keys (non-causal rows are independent, so sampling is exact at any `seq_len`).
//!
//! Inputs are drawn in f32 and rounded to bf16, so every format (bf16, fp16, f32, f64) starts
//! from the same exactly representable values and the study measures the algorithm's arithmetic
//! alone, not input quantisation.

mod compare;
mod plan;
mod report;
mod sweep;

pub use compare::{compare, headline_rows, trend, verdicts, Comparison, HeadlineRow};
pub use plan::{paper_tiles, Algorithm, Config, Model, Plan, DEFAULT_SEEDS};
pub use report::{headline_table, write_report};
pub use sweep::{run_plan, Record};
