//! Row primitives and the backends that implement them.
//!
//! The attention algorithms are written once, over the `RowOps` primitives (a tile of dot
//! products, a max, an exp-and-sum, a scaled accumulate of value rows). Each backend implements
//! them: [`Backend::Generic`] for every element and accumulator type, the SIMD backends for the
//! production accumulator `f32` over `f32` and `bf16` elements.
//!
//! The SIMD backends share one body per primitive (`rows.rs`, with `exp.rs`), written over 16
//! virtual `f32` lanes (`lanes.rs`); each instruction set only implements the lanes, and its
//! zero-sized token (`x86/`, `aarch64/`, `portable.rs`) can be made only where it runs. So they
//! agree with one another bit for bit, except `avx512bf16`'s bf16 dot products (`vdpbf16ps`).
//!
//! Backend choice is decided here and nowhere else: a forced backend is checked against the CPU;
//! [`Backend::Auto`] picks the best available one (compile-time target features first, then runtime
//! detection when the `std` feature is on, then the generic path).

// Arch code is gated here, at the `mod` line; the lane bodies exist wherever a SIMD backend does.
#[cfg(target_arch = "aarch64")]
mod aarch64;
pub(crate) mod dense;
pub(crate) mod dispatch;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", feature = "nightly"))]
mod exp;
mod generic;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", feature = "nightly"))]
mod lane_dense;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", feature = "nightly"))]
mod lanes;
mod ops;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) mod optim;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) mod optim_lr;
#[cfg(feature = "nightly")]
mod portable;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", feature = "nightly"))]
mod rows;
#[cfg(all(
    test,
    any(target_arch = "x86_64", target_arch = "aarch64", feature = "nightly")
))]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use dispatch::Job;
pub use dispatch::{available_backends, Backend};
pub(crate) use generic::Generic;
pub(crate) use ops::RowOps;
