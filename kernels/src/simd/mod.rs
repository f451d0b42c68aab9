//! Instruction sets, and nothing else: sixteen virtual `f32` lanes (`Lanes`) implemented once
//! per ISA by a zero-sized capability token, the backend names, and the one dispatch that runs a
//! kernel's loop on a token inside a function compiled for its features.
//!
//! Tokens: `Scalar` (always; the generic backend of lane kernels and the model
//! the others are tested against), `x86/` AVX2 + FMA, AVX-512F and AVX-512F with AVX512_BF16,
//! `aarch64/` NEON, and `core::simd` with the `nightly` feature. A token can be made only where
//! its instructions run, so the lane methods are safe. Every token performs the same IEEE-754
//! operations on the same operands in the same order (element `i` of a row in lane `i % 16`, one
//! canonical reduction tree, one exp polynomial), so all backends agree bit for bit, except
//! `avx512bf16`'s bf16 attention scores and flash `P·V` (`vdpbf16ps`).
//!
//! Backend choice is decided here and nowhere else (`dispatch::run_lanes`): a forced backend is
//! checked against the CPU; [`Backend::Auto`] picks the best available one (compile-time target
//! features first, then runtime detection when the `std` feature is on, then the generic path).
//! The kernels' loops live beside their algorithms (`rows/`, `optim/`, `nn/`), written over
//! `Lanes`.

// Arch code is gated here, at the `mod` line.
#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
mod backend;
pub(crate) mod dispatch;
mod exp;
pub(crate) mod isa;
pub(crate) mod lanes;
mod peak;
#[cfg(feature = "nightly")]
pub(crate) mod portable;
pub(crate) mod scalar;
#[cfg(test)]
mod tokens;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

pub use backend::{available_backends, Backend};
pub(crate) use dispatch::{run_lanes, with_token};
pub(crate) use exp::exp_clamped;
pub(crate) use isa::{Isa, LaneJob};
pub(crate) use lanes::{LaneElement, Lanes, LANES};
pub use peak::{bf16_dot_chains, fma_chains, peak_chains};
#[cfg(test)]
pub(crate) use tokens::{for_each_lane_token, for_each_row_token};
