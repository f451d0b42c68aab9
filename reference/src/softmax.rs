//! The softmax pipeline: exact logits, weights `exp(logit − max)`, exact weighted sums, one
//! rounding.

/// See [`crate::attention_row`].
pub(crate) fn weighted_row(q: &[f64], keys: &[f64], values: &[f64], scale: f64) -> Vec<f64> {
    crate::naive::attention_row(q, keys, values, scale)
}

/// `softmax(x)`, each element correctly rounded: `exp(x_i − max) / Σ_j exp(x_j − max)` with
/// 256-bit weights, an exact sum and one rounding per element. Any NaN or infinity gives all NaN.
pub fn softmax(x: &[f64]) -> Vec<f64> {
    crate::naive::softmax(x)
}
