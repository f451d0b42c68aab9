//! Row primitives: the interface attention and the dense layer are written in ([`RowOps`]), its
//! implementations, and the dispatch of a kernel ([`Job`]) to them.
//!
//! - [`Generic`](generic::Generic): scalar loops over any element and accumulator, each operation
//!   rounded separately in the accumulator's arithmetic (the deviation study's emulated formats
//!   run here, and so does the generic backend of the production `f32` accumulator);
//! - [`LaneOps`](lanes::LaneOps): the same primitives written once over the 16 lanes of any
//!   `simd` token, in the canonical order every SIMD backend shares.
//!
//! [`run`] asks the accumulator type, then the element type, whether a SIMD backend serves them
//! (only the `f32` accumulator over `f32` and `bf16` elements does), and runs the job there or on
//! [`Generic`](generic::Generic).

#[cfg(test)]
mod bf16_pv_tests;
pub(crate) mod dense;
#[cfg(test)]
mod dense_tests;
mod exp_pass;
mod generic;
mod lane_dense;
pub(crate) mod lanes;
pub(crate) mod ops;
mod pairs;
mod row_kernels;
mod score_element;
pub(crate) mod softmax;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod tests;
pub(crate) mod tile;
mod tile_scores;

pub(crate) use ops::{Counts, Job, QTile, Routed, RowOps, SoftmaxStop, SoftmaxTile};

use crate::simd::Backend;
use crate::{Accumulator, Element, Error, Result};

/// Runs `job` on `backend` with the element type `E` and accumulator `A`. The SIMD backends serve
/// only the `f32` accumulator over `f32` and `bf16` elements; every other pair runs on the generic
/// backend (`Err(BackendUnavailable)` if another one is forced).
#[inline]
pub(crate) fn run<E: Element, A: Accumulator, J: Job<E, A>>(
    backend: Backend,
    job: J,
) -> Result<J::Output> {
    match A::route(backend, job) {
        Routed::Done(out) => out,
        Routed::Generic(job) => match backend {
            Backend::Auto | Backend::Generic => Ok(job.run(generic::Generic)),
            other => Err(Error::BackendUnavailable(other)),
        },
    }
}
