//! A second oracle on MPFR (through `rug`), with the same API, for cross-checking (feature `mpfr`).
//!
//! It shares nothing numerical with the default path: logits are exact sums of exact products at
//! precisions that hold any `f64` data exactly (`mpfr_sum` rounds correctly, and these sums need no
//! rounding), `exp` is MPFR's at 320 bits, the softmax sums are `mpfr_sum` at 640 bits, and the
//! quotient is rounded to `f64` by `mpfr_get_d`. Results agree with the default path bit for bit
//! except where the exact value lies within about `2^-250` (relative) of a rounding boundary.
//! Slow (MPFR at thousands of bits per logit): meant for tests.

use rug::Float;

use crate::attention::{rows_with, ReferenceShape};
use crate::row::{check_row, RowCheck};

/// Holds any exact dot product of `f64` values: terms are multiples of `2^-2148` below `2^2048`,
/// summed over fewer than `2^64` of them.
const DOT_BITS: u32 = 4352;
/// Holds any exact logit difference `scale · (d_j − d_max)`: multiples of `2^-3222` below `2^3200`.
const LOGIT_BITS: u32 = 6528;
/// Precision of each `exp`.
const EXP_BITS: u32 = 320;
/// Precision of the softmax sums and the quotient.
const SUM_BITS: u32 = 640;

/// [`crate::attention_row`] on MPFR.
pub fn attention_row(q: &[f64], keys: &[f64], values: &[f64], scale: f64) -> Vec<f64> {
    let (n, d) = match check_row(q, keys, values, scale) {
        RowCheck::Empty(d) => return vec![0.0; d],
        RowCheck::NotFinite(d) => return vec![f64::NAN; d],
        RowCheck::Rows { n, d } => (n, d),
    };
    let logits: Vec<Float> = keys
        .chunks_exact(d)
        .map(|key| Float::with_val(LOGIT_BITS, exact_dot(q, key) * scale))
        .collect();
    let weights = weights(&logits);
    let den = Float::with_val(SUM_BITS, Float::sum(weights.iter()));
    (0..d)
        .map(|c| {
            let terms: Vec<Float> = (0..n)
                .map(|j| Float::with_val(EXP_BITS + 64, &weights[j] * values[j * d + c]))
                .collect();
            let num = Float::with_val(SUM_BITS, Float::sum(terms.iter()));
            Float::with_val(SUM_BITS, num / &den).to_f64()
        })
        .collect()
}

/// [`crate::softmax`] on MPFR.
pub fn softmax(x: &[f64]) -> Vec<f64> {
    if x.iter().any(|v| !v.is_finite()) {
        return vec![f64::NAN; x.len()];
    }
    let logits: Vec<Float> = x.iter().map(|&v| Float::with_val(64, v)).collect();
    let weights = weights(&logits);
    let den = Float::with_val(SUM_BITS, Float::sum(weights.iter()));
    weights
        .iter()
        .map(|w| Float::with_val(SUM_BITS, w / &den).to_f64())
        .collect()
}

/// [`crate::attention`] on MPFR.
pub fn attention(shape: &ReferenceShape, q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
    let rows: Vec<usize> = (0..shape.rows()).collect();
    attention_rows(shape, q, k, v, &rows).concat()
}

/// [`crate::attention_rows`] on MPFR.
pub fn attention_rows(
    shape: &ReferenceShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    rows: &[usize],
) -> Vec<Vec<f64>> {
    rows_with(shape, q, k, v, rows, attention_row)
}

/// [`crate::dot`] on MPFR: an exact sum, rounded once.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "dot product of slices of different lengths"
    );
    exact_dot(a, b).to_f64()
}

/// [`crate::sum`] on MPFR: an exact sum, rounded once.
pub fn sum(x: &[f64]) -> f64 {
    let terms: Vec<Float> = x.iter().map(|&v| Float::with_val(64, v)).collect();
    Float::with_val(DOT_BITS, Float::sum(terms.iter())).to_f64()
}

/// [`crate::exp`] on MPFR: 256 bits, then `mpfr_get_d` (exp of a nonzero `f64` is never a
/// midpoint, and never within `2^-256` of one).
pub fn exp(x: f64) -> f64 {
    Float::with_val(256, x).exp().to_f64()
}

/// `Σ a_i·b_i` exactly (IEEE rules for NaN and infinities).
fn exact_dot(a: &[f64], b: &[f64]) -> Float {
    let products: Vec<Float> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| Float::with_val(128, Float::with_val(64, x) * y))
        .collect();
    Float::with_val(DOT_BITS, Float::sum(products.iter()))
}

/// `exp(logit − max)` for each logit.
fn weights(logits: &[Float]) -> Vec<Float> {
    let max = logits
        .iter()
        .fold(&logits[0], |m, l| if l > m { l } else { m });
    logits
        .iter()
        .map(|l| Float::with_val(EXP_BITS, Float::with_val(LOGIT_BITS, l - max).exp_ref()))
        .collect()
}
