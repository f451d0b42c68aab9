//! Pieces both attention algorithms share: per-head slicing and the overflow fix-up of logits.

use crate::attention::AttentionShape;
use crate::{Accumulator, Element, Error, Result};

/// The key and value rows of the KV head that query head `(b, h)` reads, given the flat index
/// `bh = b * heads + h`.
#[inline]
pub(crate) fn kv_head<'a, E>(
    shape: &AttentionShape,
    bh: usize,
    k: &'a [E],
    v: &'a [E],
) -> Result<(&'a [E], &'a [E])> {
    // Checked divisions: the shape was validated (no zero), so they never fail, and no
    // division-by-zero panic is compiled.
    let group = shape.heads.checked_div(shape.kv_heads).unwrap_or(0);
    let (b, h) = (
        bh.checked_div(shape.heads).unwrap_or(0),
        bh.checked_rem(shape.heads).unwrap_or(0),
    );
    let stride = shape.kv_capacity * shape.head_dim;
    let start = (b * shape.kv_heads + h.checked_div(group).unwrap_or(0)) * stride;
    let used = shape.kv_len * shape.head_dim;
    let end = start + used;
    match (k.get(start..end), v.get(start..end)) {
        (Some(kh), Some(vh)) => Ok((kh, vh)),
        _ => Err(Error::LengthMismatch {
            what: "k/v",
            expected: end,
            actual: k.len().min(v.len()),
        }),
    }
}

/// Refuses values the accumulator cannot hold: with an element format whose range exceeds the
/// accumulator's (`f64` elements through an `f32` accumulator, `f32` through the fp16 models), a
/// finite value beyond the accumulator's largest would become infinite on conversion and the
/// output with it. (Queries and keys need no such check: an overflowing logit is recomputed from
/// the elements by [`fix_overflowed_scores`].) Free, nothing read, for every other pairing.
pub(crate) fn check_values<E: Element, A: Accumulator>(v: &[E]) -> Result<()> {
    let max = A::MAX.to_f64();
    if E::LARGEST > max
        && v.iter()
            .any(|x| x.to_f64().abs() > max && x.to_f64().is_finite())
    {
        return Err(Error::OutOfRange("v"));
    }
    Ok(())
}

/// A row's output after the kernel: an infinite element can only come from an infinite value
/// (finite inputs give a convex combination of value rows), so the row becomes NaN, as the
/// exact computation gives for any non-finite input.
#[inline]
pub(crate) fn nan_if_infinite<E: Element>(out: &mut [E]) {
    if !all_finite(out) {
        out.fill(E::from_f32(f32::NAN));
    }
}

/// Clamps a row's accumulated output into `±max|v|` over its visible values. The exact output
/// is a convex combination of value rows, so it lies in that interval and the clamp can only
/// reduce the error; it matters when values sit at the format's limit and the weights' rounding
/// carries the sum past it (to infinity). NaN stays NaN; an infinite value disables the clamp.
#[inline(never)]
pub(crate) fn clamp_to_values<E: Element, A: Accumulator>(acc: &mut [A], values: &[E]) {
    let magnitude = |a: A| if a < A::ZERO { A::ZERO.sub(a) } else { a };
    let vmax = values
        .iter()
        .fold(A::ZERO, |m, &x| m.max(magnitude(A::from_element(x))));
    let vmin = A::ZERO.sub(vmax);
    for a in acc.iter_mut() {
        if *a > vmax {
            *a = vmax;
        } else if *a < vmin {
            *a = vmin;
        }
    }
}

/// Whether every element is finite: a fold without early exit, which the compiler vectorises
/// (an `any` with its early exit stays scalar and costs ~10% of a short baseline row).
#[inline]
pub(crate) fn all_finite<E: Element>(x: &[E]) -> bool {
    x.iter().fold(true, |ok, e| ok & e.is_finite())
}

/// Recomputes every logit that came out infinite or NaN from finite inputs, without overflow,
/// and saturates it into the accumulator's range: finite inputs never give a non-finite logit.
/// A logit whose query or key holds a NaN or an infinity becomes NaN, so the row comes out
/// NaN, as the exact computation (the oracle) gives for any non-finite input.
///
/// The recomputation scales the query and the key by powers of two into `[-1, 1]`, sums in
/// `f32` and scales back, saturating; only an `f64` accumulator (whose inputs may exceed the
/// `f32` range) or `f64` elements recompute in `f64`, so no double-precision code is linked for `f32` and the
/// narrower models (no soft-float on a Cortex-M4F).
#[inline]
pub(crate) fn fix_overflowed_scores<E: Element, A: Accumulator>(
    q: &[E],
    keys: &[E],
    scale: f32,
    scores: &mut [A],
) {
    let d = q.len();
    // A fold, not `all`: without the early exit the common all-finite case vectorises (it is
    // run on every row of every flash tile).
    if d == 0 || scores.iter().fold(true, |ok, s| ok & s.is_finite()) {
        return;
    }
    let wide = E::LARGEST > f32::MAX as f64;
    let finite = |x: &[E]| x.iter().all(|e| e.is_finite());
    let q_finite = finite(q);
    for (t, s) in scores.iter_mut().enumerate() {
        if s.is_finite() {
            continue;
        }
        let Some(key) = keys.get(t * d..(t + 1) * d) else {
            return;
        };
        if !q_finite || !finite(key) {
            // A NaN or infinite input: the row will be NaN, as the exact computation gives.
            *s = A::from_f32(f32::NAN);
            continue;
        }
        *s = if wide || A::MAX.to_f64() > f32::MAX as f64 {
            A::saturating_from_f64(scaled_dot_f64(q, key, scale))
        } else {
            saturate(scaled_dot(q, key, scale))
        };
    }
}

/// `scale · q·k` for `f32`-range inputs without intermediate overflow: `q` and `k` are scaled
/// by powers of two (exactly) so their largest entries are below 1, summed, and scaled back;
/// the result may be infinite (beyond `f32`), never NaN.
fn scaled_dot<E: Element>(q: &[E], k: &[E], scale: f32) -> f32 {
    let largest = |x: &[E]| x.iter().fold(0.0f32, |m, e| m.max(e.to_f32().abs()));
    let (qmax, kmax) = (largest(q), largest(k));
    if qmax == 0.0 || kmax == 0.0 {
        return 0.0;
    }
    let (_, eq) = libm::frexpf(qmax);
    let (_, ek) = libm::frexpf(kmax);
    let sum: f32 = q
        .iter()
        .zip(k)
        .map(|(&a, &b)| libm::scalbnf(a.to_f32(), -eq) * libm::scalbnf(b.to_f32(), -ek))
        .sum();
    // The scale too is split into a significand and an exponent: a subnormal scale times the
    // sum would lose bits before the exponents are put back.
    let (ms, es) = libm::frexpf(scale);
    libm::scalbnf(sum * ms, eq + ek + es)
}

/// [`scaled_dot`] in `f64`, for `f64` elements or an `f64` accumulator: their products can
/// overflow even `f64` (1e277 · 1e282), where a plain sum would give `inf − inf = NaN`.
fn scaled_dot_f64<E: Element>(q: &[E], k: &[E], scale: f32) -> f64 {
    let largest = |x: &[E]| x.iter().fold(0.0f64, |m, e| m.max(e.to_f64().abs()));
    let (qmax, kmax) = (largest(q), largest(k));
    if qmax == 0.0 || kmax == 0.0 {
        return 0.0;
    }
    let (_, eq) = libm::frexp(qmax);
    let (_, ek) = libm::frexp(kmax);
    let sum: f64 = q
        .iter()
        .zip(k)
        .map(|(&a, &b)| libm::scalbn(a.to_f64(), -eq) * libm::scalbn(b.to_f64(), -ek))
        .sum();
    let (ms, es) = libm::frexp(scale as f64);
    libm::scalbn(sum * ms, eq + ek + es)
}

/// `x` rounded into the accumulator, clamped to `±A::MAX` (`A`'s range is within `f32`'s).
fn saturate<A: Accumulator>(x: f32) -> A {
    let max = A::MAX.to_f64() as f32;
    if x > max {
        A::MAX
    } else if x < -max {
        A::ZERO.sub(A::MAX)
    } else {
        A::from_f32(x)
    }
}
