//! The softmax pipeline: exact logits, weights `e^(logit − max)`, exact weighted sums, one
//! rounding per output.
//!
//! 1. Logits `s_j = scale · (q·k_j)`: each dot product is an exact [`Dyadic`] (Kulisch
//!    accumulator), so the extreme logit is found exactly and `u_j = |scale| · |d_j − d_ext| >= 0`
//!    (`d_ext` the dot product of the largest logit) is exact before it is truncated to `2^-320`.
//! 2. Weights `w_j = e^-u_j` to 256 bits ([`crate::weight`]); the largest is exactly 1, so the
//!    denominator is at least 1, and `u_j >= 1600` gives weight zero.
//! 3. Numerators `Σ_j w_j · v_jc` and the denominator `Σ_j w_j` are exact sums of the exact
//!    products ([`crate::weighted_sum`]).
//! 4. Each output is the quotient of its numerator and the denominator, correctly rounded.
//!
//! Error: each weight is `e^-u_j (1 + δ_j)` with `|δ_j| < 2^-255`, so the quotient before rounding
//! is within about `2^-254 · Σ_j p_j |v_jc|` of the true output (`p_j` the exact softmax
//! probabilities) plus the `2^-370`-relative products dropped by the window: the rounding is
//! correct unless the exact output lies that close to a rounding boundary. When all logits are
//! equal every weight is exactly 1 and the result is exact (ties included).

use crate::bigfloat::{divide_to_f64, from_words};
use crate::dyadic::Dyadic;
use crate::fixed;
use crate::kulisch::Split;
use crate::logits::exact_dots;
use crate::row::{check_row, RowCheck};
use crate::weight::{exp_neg, Weight};
use crate::weighted_sum::{product_bound, WeightedSum};
use astro_float::Sign;

/// See [`crate::attention_row`].
pub(crate) fn weighted_row(q: &[f64], keys: &[f64], values: &[f64], scale: f64) -> Vec<f64> {
    let (n, d) = match check_row(q, keys, values, scale) {
        RowCheck::Empty(d) => return vec![0.0; d],
        RowCheck::NotFinite(d) => return vec![f64::NAN; d],
        RowCheck::Rows { n, d } => (n, d),
    };
    let logits = exact_dots(q, keys);
    let weights = weights(&logits, scale);
    let den = denominator(&weights);

    // One pass for each column's bound, one to add the products. The bound uses the value's
    // exponent field alone: exact for normal values, an overestimate (at most 2^-1021) for zeros
    // and subnormals, which only lowers products that cannot reach an f64 output over a
    // denominator of at least 1.
    let mut tops = vec![i64::MIN; d];
    for (weight, row) in weights.iter().zip(values.chunks_exact(d)) {
        let Some(weight) = weight else { continue };
        let base = weight.exponent + 256 - 1022;
        for (top, &v) in tops.iter_mut().zip(row) {
            let field = ((v.to_bits() >> 52) & 0x7ff) as i64;
            *top = (*top).max(base + field);
        }
    }
    let mut sums: Vec<WeightedSum> = tops.iter().map(|&top| WeightedSum::new(top, n)).collect();
    for (weight, row) in weights.iter().zip(values.chunks_exact(d)) {
        let Some(weight) = weight else { continue };
        for (sum, &v) in sums.iter_mut().zip(row) {
            sum.add(weight, &Split::new(v));
        }
    }
    sums.iter()
        .map(|sum| {
            let (negative, words, lsb) = sum.value();
            let sign = if negative { Sign::Neg } else { Sign::Pos };
            divide_to_f64(&from_words(sign, &words, lsb), &den)
        })
        .collect()
}

/// `softmax(x)`, each element correctly rounded: `e^(x_i − max) / Σ_j e^(x_j − max)` with
/// 256-bit weights, an exact sum and one rounding per element. Any NaN or infinity gives all NaN.
pub fn softmax(x: &[f64]) -> Vec<f64> {
    if x.iter().any(|v| !v.is_finite()) {
        return vec![f64::NAN; x.len()];
    }
    let logits: Vec<Dyadic> = x.iter().map(|&v| Dyadic::from_f64(v)).collect();
    let weights = weights(&logits, 1.0);
    let den = denominator(&weights);
    weights
        .iter()
        .map(|w| match w {
            Some(w) => divide_to_f64(&from_words(Sign::Pos, &w.mantissa, w.exponent), &den),
            None => 0.0,
        })
        .collect()
}

/// `e^(scale · (d_j − d_ext))` for exact dot products `d_j` (`None`: weight zero).
fn weights(logits: &[Dyadic], scale: f64) -> Vec<Option<Weight>> {
    if scale == 0.0 {
        return vec![Some(Weight::ONE); logits.len()];
    }
    let extreme = if scale > 0.0 {
        logits.iter().max()
    } else {
        logits.iter().min()
    };
    let Some(extreme) = extreme else {
        return Vec::new();
    };
    let scale = Split::new(scale);
    logits
        .iter()
        .map(|logit| {
            let gap = logit.sub(extreme);
            let u = fixed::from_words(
                &gap.magnitude_times(scale.mantissa),
                gap.lsb_exponent() + scale.exponent,
            )?;
            exp_neg(&u)
        })
        .collect()
}

/// `Σ_j w_j` as an exact `BigFloat`.
fn denominator(weights: &[Option<Weight>]) -> astro_float::BigFloat {
    let one = Split::new(1.0);
    let mut sum = WeightedSum::new(product_bound(&Weight::ONE, &one), weights.len());
    for w in weights.iter().flatten() {
        sum.add(w, &one);
    }
    let (negative, words, lsb) = sum.value();
    debug_assert!(!negative);
    from_words(Sign::Pos, &words, lsb)
}
