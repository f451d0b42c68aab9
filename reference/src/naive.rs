//! A slow, straightforward big-float implementation, kept to cross-check the fast one.
//!
//! Everything here is astro-float arithmetic: exact logits (exact products and full-precision
//! sums), `exp` at 384 bits, sums and weighted sums at 1536 bits, one correctly rounded division.
//! It shares nothing with the fast path except the input checks and the final rounding, so the
//! two agreeing bit for bit is evidence that both are right. About 100 µs per key: use it on
//! small rows only.

use astro_float::{BigFloat, Consts, RoundingMode};

use crate::bigfloat::{divide_to_f64, from_f64};
use crate::row::{check_row, RowCheck};

/// Precision of each `exp`.
const EXP_BITS: usize = 384;
/// Precision of the running sums.
const SUM_BITS: usize = 1536;
/// Logits this far below the maximum get weight zero: `e^-2000 < 2^-2885`, and a weight that
/// small times any `f64` value (below `2^1024`) is below `2^-1861`, over a denominator of at
/// least 1: it cannot reach the smallest subnormal.
const CUTOFF: f64 = 2000.0;

/// [`crate::attention_row`], computed the slow way.
pub fn attention_row(q: &[f64], keys: &[f64], values: &[f64], scale: f64) -> Vec<f64> {
    let (n, d) = match check_row(q, keys, values, scale) {
        RowCheck::Empty(d) => return vec![0.0; d],
        RowCheck::NotFinite(d) => return vec![f64::NAN; d],
        RowCheck::Rows { n, d } => (n, d),
    };
    let scale = from_f64(scale);
    let logits: Vec<BigFloat> = (0..n)
        .map(|j| scale.mul_full_prec(&exact_dot(q, &keys[j * d..(j + 1) * d])))
        .collect();
    let weights = weights(&logits);
    let den = weighted_sum(&weights, |_| 1.0);
    (0..d)
        .map(|c| divide_to_f64(&weighted_sum(&weights, |j| values[j * d + c]), &den))
        .collect()
}

/// [`crate::softmax`], computed the slow way.
pub fn softmax(x: &[f64]) -> Vec<f64> {
    if x.iter().any(|v| !v.is_finite()) {
        return vec![f64::NAN; x.len()];
    }
    let logits: Vec<BigFloat> = x.iter().map(|&v| from_f64(v)).collect();
    let weights = weights(&logits);
    let den = weighted_sum(&weights, |_| 1.0);
    weights
        .iter()
        .map(|w| match w {
            Some(w) => divide_to_f64(w, &den),
            None => 0.0,
        })
        .collect()
}

/// `Σ a_i·b_i` as an exact `BigFloat` (full-precision products and sums).
fn exact_dot(a: &[f64], b: &[f64]) -> BigFloat {
    a.iter()
        .zip(b)
        .fold(BigFloat::from_word(0, 64), |acc, (&x, &y)| {
            exact_add(&acc, &from_f64(x).mul_full_prec(&from_f64(y)))
        })
}

/// `a + b` exactly. (astro-float 0.9.6's `add_full_prec` and `sub_full_prec` return zero when
/// either operand is zero, so zeros are handled here.)
fn exact_add(a: &BigFloat, b: &BigFloat) -> BigFloat {
    if a.is_zero() {
        b.clone()
    } else if b.is_zero() {
        a.clone()
    } else {
        a.add_full_prec(b)
    }
}

/// `exp(logit − max)` for each logit; `None` below the cutoff.
fn weights(logits: &[BigFloat]) -> Vec<Option<BigFloat>> {
    let mut max = &logits[0];
    for logit in logits {
        // astro-float's `cmp` returns a signed difference, not -1/0/1.
        if logit.cmp(max).is_some_and(|c| c > 0) {
            max = logit;
        }
    }
    let cutoff = from_f64(-CUTOFF);
    let mut consts = Consts::new().expect("astro-float constants");
    logits
        .iter()
        .map(|logit| {
            let t = exact_add(logit, &max.neg());
            (t.cmp(&cutoff).is_some_and(|c| c > 0))
                .then(|| t.exp(EXP_BITS, RoundingMode::ToEven, &mut consts))
        })
        .collect()
}

/// `Σ_j w_j · value(j)` at [`SUM_BITS`].
fn weighted_sum(weights: &[Option<BigFloat>], value: impl Fn(usize) -> f64) -> BigFloat {
    let mut acc = BigFloat::from_word(0, SUM_BITS);
    for (j, w) in weights.iter().enumerate() {
        if let Some(w) = w {
            acc = acc.add(
                &w.mul_full_prec(&from_f64(value(j))),
                SUM_BITS,
                RoundingMode::ToEven,
            );
        }
    }
    acc
}
