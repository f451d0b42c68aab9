//! The row primitives every backend implements.

use crate::{Accumulator, Element};

/// The primitives attention is written in. `d` is the head dimension (`q.len()` or `acc.len()`).
///
/// Every SIMD implementation must agree with every other one bit for bit on the same inputs
/// (they use one canonical 16-lane summation order and one exp polynomial); the generic
/// implementation rounds each operation separately and agrees within the documented bound.
pub trait RowOps<E: Element, A: Accumulator>: Copy {
    /// `out[j] = dot(q, keys[j*d .. (j+1)*d]) * scale` for every `j < out.len()`.
    fn scores(self, q: &[E], keys: &[E], scale: A, out: &mut [A]);
    /// The largest value of `s` (NaN ignored), or `NEG_INFINITY` for an empty or all-NaN slice.
    fn max(self, s: &[A]) -> A;
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
