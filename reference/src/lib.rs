//! Tessera's arbitrary-precision oracle: attention, softmax, dot products, sums and `exp`,
//! computed exactly (or to far beyond `f64` precision) and rounded once to `f64`.
//!
//! Inputs are `f64` slices that hold exact copies of the kernels' `f32`/`bf16` tensors. Dot
//! products and sums are exact (a Kulisch accumulator), logits are exact however large, `exp` is
//! evaluated to 256 bits, and every output is correctly rounded from what is left. The default
//! build is pure Rust (astro-float); nothing but cargo is needed.
//!
//! ```
//! use tessera_reference::{attention_row, dot};
//! // [1e30, 1, -1e30]·[1, 1, 1] is 1, which naive f64 summation misses.
//! assert_eq!(dot(&[1e30, 1.0, -1e30], &[1.0, 1.0, 1.0]), 1.0);
//! // One key: the output is its value row, exactly.
//! assert_eq!(attention_row(&[1.0, 2.0], &[3.0, 4.0], &[0.5, -0.25], 0.5), vec![0.5, -0.25]);
//! ```
#![deny(missing_docs)]

mod attention;
mod bigfloat;
mod dyadic;
mod fixed;
mod kulisch;
pub mod naive;
mod real;
mod round;
mod row;
mod scalar;
mod softmax;
mod weight;
mod weighted_sum;

pub use attention::{attention, attention_row, attention_rows, ReferenceShape};
pub use dyadic::Dyadic;
pub use kulisch::ExactAccumulator;
pub use real::{Real, DEFAULT_PRECISION};
pub use scalar::{dot, exp, sum};
pub use softmax::softmax;
