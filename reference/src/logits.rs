//! Exact dot products of one query with many keys: the logits before scaling.
//!
//! Each product of two `f64` is `m·2^e` with `m` the product of the (trailing-zero-stripped)
//! mantissas. When, over the whole row, the largest possible product bit and the smallest possible
//! product exponent are less than `127 − ⌈log2 (d+1)⌉` bits apart (true of ordinary `f32`/`bf16`
//! data, whose products span a few dozen bits), every product shifted onto that smallest exponent
//! fits an `i128` with room for the sum of `d` of them: the dot product is an exact integer sum.
//! Otherwise each key goes through the general [`ExactAccumulator`]. Both give the same exact
//! [`Dyadic`].

use crate::dyadic::Dyadic;
use crate::kulisch::{ExactAccumulator, Split};

/// A nonzero finite value as `mantissa · 2^exponent` with an odd mantissa.
#[derive(Clone, Copy)]
struct Odd {
    negative: bool,
    mantissa: u64,
    exponent: i64,
}

impl Odd {
    #[inline(always)]
    fn new(x: f64) -> Option<Odd> {
        let s = Split::new(x);
        if s.mantissa == 0 {
            return None;
        }
        let zeros = s.mantissa.trailing_zeros();
        Some(Odd {
            negative: s.negative,
            mantissa: s.mantissa >> zeros,
            exponent: s.exponent + zeros as i64,
        })
    }
}

/// Smallest exponent of a lowest set bit and largest exponent just above a leading bit, over the
/// nonzero values (`None` if all are zero).
fn exponent_range(values: &[f64]) -> Option<(i64, i64)> {
    let (mut low, mut high) = (i64::MAX, i64::MIN);
    for &v in values {
        let bits = v.to_bits() & !(1 << 63);
        if bits == 0 {
            continue;
        }
        let field = (bits >> 52) as i64;
        let fraction = bits & ((1 << 52) - 1);
        let (mantissa, exponent) = if field == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1 << 52), field - 1075)
        };
        low = low.min(exponent + mantissa.trailing_zeros() as i64);
        high = high.max(exponent + (64 - mantissa.leading_zeros()) as i64);
    }
    (low <= high).then_some((low, high))
}

/// `q · key` for every key (`keys` is `n × q.len()`, all values finite).
pub(crate) fn exact_dots(q: &[f64], keys: &[f64]) -> Vec<Dyadic> {
    let d = q.len();
    let n = keys.len() / d;
    let (Some((q_low, q_high)), Some((k_low, k_high))) = (exponent_range(q), exponent_range(keys))
    else {
        return vec![Dyadic::zero(); n];
    };
    let carry_bits = (usize::BITS - d.leading_zeros()) as i64;
    let base = q_low + k_low;
    if q_high + k_high - base + carry_bits < 127 {
        let q_odd: Vec<Option<Odd>> = q.iter().map(|&x| Odd::new(x)).collect();
        keys.chunks_exact(d)
            .map(|key| {
                let mut total: i128 = 0;
                for (a, &b) in q_odd.iter().zip(key) {
                    let (Some(a), Some(b)) = (a, Odd::new(b)) else {
                        continue;
                    };
                    let shift = a.exponent + b.exponent - base;
                    let product = ((a.mantissa as u128 * b.mantissa as u128) << shift) as i128;
                    if a.negative != b.negative {
                        total -= product;
                    } else {
                        total += product;
                    }
                }
                Dyadic::from_i128(total, base)
            })
            .collect()
    } else {
        let mut acc = ExactAccumulator::new();
        keys.chunks_exact(d)
            .map(|key| {
                acc.clear();
                acc.add_dot(q, key);
                acc.value().expect("finite inputs")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general(q: &[f64], keys: &[f64]) -> Vec<Dyadic> {
        let mut acc = ExactAccumulator::new();
        keys.chunks_exact(q.len())
            .map(|key| {
                acc.clear();
                acc.add_dot(q, key);
                acc.value().expect("finite")
            })
            .collect()
    }

    #[test]
    fn narrow_path_equals_the_general_one() {
        let q = [1.5, -0.25, 0.0, 3.0f32 as f64, 1e-3f32 as f64];
        let keys: Vec<f64> = (0..40)
            .map(|i| (((i * 37) % 23) as f64 - 11.0) * 0.37f32 as f64 * [1.0, -2.0, 0.5][i % 3])
            .map(|x| x as f32 as f64)
            .collect();
        let keys = &keys[..35];
        assert_eq!(exact_dots(&q, keys), general(&q, keys));
        // Cancellation to an exact small result.
        let q = [1.0, 1.0, 1.0];
        let keys = [1e30f32 as f64, 1.0, -(1e30f32 as f64)];
        assert_eq!(exact_dots(&q, &keys)[0].to_f64(), 1.0);
    }

    #[test]
    fn wide_rows_take_the_general_path_and_agree() {
        let q = [1e300, 1e-300, 1.0];
        let keys = [1.0, 1e300, -1e300, 3.0, 5e-324, 7.0];
        assert_eq!(exact_dots(&q, &keys), general(&q, &keys));
        assert_eq!(exact_dots(&[0.0, 0.0], &[1.0, 2.0]), vec![Dyadic::zero()]);
    }
}
