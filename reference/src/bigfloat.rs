//! Bridges to astro-float's `BigFloat`: exact conversions and the one correctly rounded division.

use astro_float::{BigFloat, RoundingMode, Sign};

use crate::dyadic::Dyadic;
use crate::kulisch::Split;
use crate::round::round_to_f64;

#[allow(dead_code)] // used by the fast softmax path, next
/// `value` as a `BigFloat`, exactly (the precision is the value's own width).
pub(crate) fn from_dyadic(value: &Dyadic) -> BigFloat {
    if value.is_zero() {
        return BigFloat::from_word(0, 64);
    }
    let sign = if value.is_negative() {
        Sign::Neg
    } else {
        Sign::Pos
    };
    from_words(sign, value.words(), value.lsb_exponent())
}

/// `±M · 2^lsb_exponent` for the little-endian magnitude `M = words`, exactly.
pub(crate) fn from_words(sign: Sign, words: &[u64], lsb_exponent: i64) -> BigFloat {
    // astro-float reads the words as the fraction 0.M, so the value is M · 2^(e − 64·len).
    let exponent = lsb_exponent + 64 * words.len() as i64;
    let exponent = i32::try_from(exponent).expect("exponent within astro-float's range");
    BigFloat::from_words(words, sign, exponent)
}

/// A finite `f64` as a `BigFloat`, exactly.
///
/// (astro-float's own `from_f64` puts subnormals one binade too low, so it is not used.)
pub(crate) fn from_f64(x: f64) -> BigFloat {
    debug_assert!(x.is_finite());
    let s = Split::new(x);
    let sign = if s.negative { Sign::Neg } else { Sign::Pos };
    from_words(sign, &[s.mantissa], s.exponent)
}

/// `x` rounded to the nearest `f64`, where `x` is taken as exact unless `inexact`, in which case
/// the true value lies strictly beyond `x` in magnitude by less than one unit of its last bit (a
/// result computed with [`RoundingMode::ToZero`]).
pub(crate) fn to_f64(x: &BigFloat, inexact: bool) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_inf_pos() {
        return f64::INFINITY;
    }
    if x.is_inf_neg() {
        return f64::NEG_INFINITY;
    }
    let Some((words, _, sign, exponent, _)) = x.as_raw_parts() else {
        return f64::NAN;
    };
    let lsb = exponent as i64 - 64 * words.len() as i64;
    round_to_f64(sign == Sign::Neg, words, lsb, inexact && !x.is_zero())
}

/// `num / den` correctly rounded to `f64` (`den` nonzero, both finite).
///
/// The quotient is first truncated to 192 bits; multiplying back tells whether that truncation
/// was exact, which is all the final rounding needs to know.
pub(crate) fn divide_to_f64(num: &BigFloat, den: &BigFloat) -> f64 {
    if num.is_zero() {
        return 0.0;
    }
    let quotient = num.div(den, 192, RoundingMode::ToZero);
    let back = quotient.mul_full_prec(den);
    let exact = back.cmp(num) == Some(0);
    debug_assert!(
        back.abs().cmp(&num.abs()).is_some_and(|c| c <= 0),
        "quotient not truncated"
    );
    to_f64(&quotient, !exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_divides() {
        for x in [1.0, -3.5, 5e-324, f64::MAX, 0.1] {
            assert_eq!(to_f64(&from_f64(x), false), x);
        }
        // 1/3 and 2/3 correctly rounded; 1/10 is what the literal says.
        assert_eq!(divide_to_f64(&from_f64(1.0), &from_f64(3.0)), 1.0 / 3.0);
        assert_eq!(divide_to_f64(&from_f64(-2.0), &from_f64(3.0)), -2.0 / 3.0);
        assert_eq!(divide_to_f64(&from_f64(1.0), &from_f64(10.0)), 0.1);
        // An exact tie: (1 + 2^-53)·3 / 3 is halfway, and must go to the even neighbour 1.
        let tie = from_words(Sign::Pos, &[3 * ((1u64 << 53) + 1)], -53);
        assert_eq!(divide_to_f64(&tie, &from_f64(3.0)), 1.0);
        let value = Dyadic::from_magnitude(true, &[0, 1], -2);
        assert_eq!(to_f64(&from_dyadic(&value), false), -(2f64.powi(-64)));
    }
}
