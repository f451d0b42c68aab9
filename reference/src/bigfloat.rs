//! Bridges to astro-float's `BigFloat`: exact conversions and the one correctly rounded division.

use astro_float::{BigFloat, RoundingMode, Sign};

use crate::kulisch::Split;
use crate::round::round_to_f64;

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
/// A 192-bit quotient `Q · 2^lsb` is made exactly the truncated one, `|Q·2^lsb·den| <= |num| <
/// |(Q+1)·2^lsb·den|`, by multiplying back (astro-float's own `ToZero` division can be one unit
/// off); whether the first is an equality is all the final rounding needs to know.
pub(crate) fn divide_to_f64(num: &BigFloat, den: &BigFloat) -> f64 {
    if num.is_zero() {
        return 0.0;
    }
    let guess = num.div(den, 192, RoundingMode::ToZero);
    let Some((words, _, sign, exponent, _)) = guess.as_raw_parts() else {
        return f64::NAN;
    };
    let lsb = exponent as i64 - 64 * words.len() as i64;
    let mut q = words.to_vec();
    q.push(0);
    let target = num.abs();
    let times_den = |q: &[u64]| from_words(Sign::Pos, q, lsb).mul_full_prec(den).abs();
    loop {
        // astro-float's `cmp` returns a signed difference of mantissas, not -1/0/1.
        match times_den(&q).cmp(&target).map(|c| c.signum()) {
            Some(1) => step(&mut q, false),
            Some(0) => return round_to_f64(sign == Sign::Neg, &q, lsb, false),
            _ => {
                let mut next = q.clone();
                step(&mut next, true);
                if times_den(&next).cmp(&target).is_some_and(|c| c <= 0) {
                    q = next;
                } else {
                    return round_to_f64(sign == Sign::Neg, &q, lsb, true);
                }
            }
        }
    }
}

/// Adds or subtracts one unit to a little-endian magnitude (with a spare top word).
fn step(q: &mut [u64], up: bool) {
    for w in q.iter_mut() {
        let (value, carry) = if up {
            w.overflowing_add(1)
        } else {
            w.overflowing_sub(1)
        };
        *w = value;
        if !carry {
            return;
        }
    }
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
        assert_eq!(
            to_f64(&from_words(Sign::Neg, &[0, 1], -128), false),
            -(2f64.powi(-64))
        );
    }
}
