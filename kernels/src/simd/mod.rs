//! Row primitives and the backends that implement them.
//!
//! The attention algorithms are written once, over the [`RowOps`] primitives (a tile of dot
//! products, a max, an exp-and-sum, a scaled accumulate of value rows). Each backend implements
//! them: [`Backend::Generic`] for every element and accumulator type, the SIMD backends for the
//! production accumulator `f32` over `f32` and `bf16` elements.
//!
//! Backend choice is decided here and nowhere else: a forced backend is checked against the CPU;
//! [`Backend::Auto`] picks the best available one (compile-time target features first, then runtime
//! detection when the `std` feature is on, then the generic path).

pub(crate) mod dispatch;
mod generic;
mod ops;

pub(crate) use dispatch::Job;
pub use dispatch::{available_backends, Backend};
pub(crate) use generic::Generic;
pub(crate) use ops::RowOps;
