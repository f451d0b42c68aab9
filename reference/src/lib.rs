//! Tessera's arbitrary-precision oracle: attention, softmax, dot products, sums and `exp`,
//! computed exactly (or to far beyond `f64` precision) and rounded once to `f64`.
//!
//! Inputs are `f64` slices holding exact copies of the kernels' `f32`/`bf16` tensors (any finite
//! `f64` works). The default build is pure Rust (astro-float); nothing but cargo is needed. The
//! `mpfr` feature adds the `mpfr` module, an independent second oracle on MPFR.
//!
//! ```
//! use tessera_reference::{attention_row, dot};
//! // [1e30, 1, -1e30]·[1, 1, 1] is 1, which naive f64 summation misses.
//! assert_eq!(dot(&[1e30, 1.0, -1e30], &[1.0, 1.0, 1.0]), 1.0);
//! // One key: the output is its value row, exactly.
//! assert_eq!(attention_row(&[1.0, 2.0], &[3.0, 4.0], &[0.5, -0.25], 0.5), vec![0.5, -0.25]);
//! ```
//!
//! # What is exact, and why
//!
//! | quantity | how | error |
//! | --- | --- | --- |
//! | `dot`, `sum`, logits `q·k` | Kulisch accumulator: a 4480-bit fixed-point register with its last bit at `2^-2240`; every product of two `f64` (106 bits, exponents `-2148..=1942`) is an integer in it, so sums are integer additions ([`ExactAccumulator`]). Rows whose products span under 127 bits in all (ordinary `f32`/`bf16` data) sum them as integers in an `i128` instead | exact, then one correct rounding |
//! | `scale · (q·k_j − q·k_max)` | exact [`Dyadic`] arithmetic, then truncated at `2^-320` | `< 2^-320` absolute |
//! | softmax weights `e^-u` | table-driven fixed-point `exp` at 320 bits, rounded to 256 | `< 2^-255` relative; `u >= 1600` gives 0 |
//! | `Σ w_j v_jc`, `Σ w_j` | exact sums of the exact 309-bit products in a 768-bit window per column; products below `2^-370` of the largest are dropped whole | exact apart from those |
//! | each output | numerator / denominator, correctly rounded (quotient truncated to 192 bits and checked by multiplying back) | one rounding |
//! | [`exp`] | astro-float at 256 bits (Ziv loop), rounded with a sticky bit | correctly rounded |
//!
//! So an attention output is within about `2^-254 · Σ_j p_j |v_jc|` of the true value before its
//! single rounding (`p_j` the exact softmax probabilities): it is the correctly rounded true value
//! unless that lies closer than this to a rounding boundary, which for data that is not
//! constructed to cancel means never. Equal logits give weights of exactly 1, so e.g. means are
//! exact and ties round to even; keys with equal logits get identical weights, so their values'
//! cancellation is exact. Logits never overflow (`1e30`, or products of `±3e38`, are exact
//! dyadics). A NaN or infinity among the inputs a row reads gives an all-NaN row; a row with no
//! keys gives zeros.
//!
//! # Speed
//!
//! About 12 ms per row at `n = 4096, d = 64` and 100 ms at `n = 16384, d = 128` on one Zen 4 core
//! of a busy machine (`cargo run --release -p tessera-reference --example row_time`, fastest of 7
//! random `f32` rows). Weighted sums are about half of that, the logits and the `exp`s a fifth each. Everything is a pure function
//! of its arguments (the `exp` tables are built once, behind a `OnceLock`), so rows can be computed
//! in parallel from any threads.
//!
//! # Modules
//!
//! [`naive`] recomputes attention rows with plain astro-float arithmetic (slow; tests require it
//! to agree bit for bit). [`Real`] is a big float at a chosen precision for other high-precision
//! work. With the `mpfr` feature, `mpfr` offers the same functions on MPFR (through `rug`, which
//! builds GMP and MPFR from source and needs `m4`); `cargo test -p tessera-reference --features
//! mpfr` checks that the two oracles agree bit for bit.
//!
//! # Features
//!
//! * `mpfr`: the `mpfr` module.
#![deny(missing_docs)]

mod attention;
mod bigfloat;
mod dyadic;
mod fixed;
mod kulisch;
mod logits;
#[cfg(feature = "mpfr")]
pub mod mpfr;
pub mod naive;
pub mod optim;
mod real;
mod round;
mod row;
mod scalar;
mod softmax;
pub mod vision;
mod weight;
mod weighted_sum;

pub use attention::{attention, attention_row, attention_rows, ReferenceShape};
pub use dyadic::Dyadic;
pub use kulisch::ExactAccumulator;
pub use real::{Real, DEFAULT_PRECISION};
pub use scalar::{dot, exp, sum};
pub use softmax::softmax;
