//! The row primitives attention and the dense layer are written in, and the job a kernel hands to
//! the dispatch. The traits carry no bounds, so nothing here depends on the element or
//! accumulator modules (which route jobs through [`Routed`]).

use crate::error::Result;

/// The primitives attention is written in. `d` is the head dimension (`q.len()` or `acc.len()`).
///
/// Every SIMD implementation must agree with every other one bit for bit on the same inputs
/// (they use one canonical 16-lane summation order and one exp polynomial); the generic
/// implementation rounds each operation separately and agrees within the documented bound.
pub trait RowOps<E, A>: Copy {
    /// `out[j] = dot(q, keys[j*d .. (j+1)*d]) * scale` for every `j < out.len()`.
    fn scores(self, q: &[E], keys: &[E], scale: A, out: &mut [A]);
    /// The largest value of `s` (NaN ignored), or `NEG_INFINITY` for an empty or all-NaN slice.
    fn max(self, s: &[A]) -> A;
    /// The running max `m' = max(m, max(s))` (NaN ignored, as `f32::max`), then
    /// `s[j] = exp(s[j] - m')` in place; returns `(m', Σ s[j])`. One call for flash's per-tile
    /// softmax step (the same operations as `max` then `exp_sum`).
    fn max_exp_sum(self, s: &mut [A], m: A) -> (A, A);
    /// `s[j] = exp(s[j] - m)` in place; returns the sum of the new values.
    fn exp_sum(self, s: &mut [A], m: A) -> A;
    /// `s[j] = s[j] / l` in place.
    fn normalize(self, s: &mut [A], l: A);
    /// `acc[i] = acc[i] * alpha` in place.
    fn scale(self, acc: &mut [A], alpha: A);
    /// `acc[i] += sum_j p[j] * values[j*d + i]`, accumulated in order of `j`.
    fn accumulate(self, acc: &mut [A], p: &[A], values: &[E]);
    /// `out[i] = round(acc[i] / denom)` into the storage format.
    fn store(self, out: &mut [E], acc: &[A], denom: A);
    /// Dense layer `y = x·Wᵀ` in `f32`: `y[r·n + o] = Σ_i x[r·k + i]·w[o·k + i]` for
    /// `k = in_dim`, `n = w.len() / k` outputs and `y.len() / n` rows. Each output is computed by
    /// the same operations in the same order however many rows share the call.
    fn linear(self, in_dim: usize, x: &[f32], w: &[E], y: &mut [f32]);
}

/// A kernel body, written once over [`RowOps`] and run with whichever backend is chosen.
pub trait Job<E, A> {
    /// What the kernel returns.
    type Output;
    /// Runs the kernel with `ops`. Implementations are `#[inline(always)]` (and so is everything
    /// they call with `ops`), so that the SIMD backends compile them with their features.
    fn run<O: RowOps<E, A>>(self, ops: O) -> Self::Output;
}

/// Where the element and accumulator types sent a job: run on a SIMD backend, or handed back for
/// the generic one.
pub enum Routed<J: Job<E, A>, E, A> {
    /// The job ran (or the backend was refused).
    Done(Result<J::Output>),
    /// The job runs on the generic backend (or, if one was forced, is refused there).
    Generic(J),
}
