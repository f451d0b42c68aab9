//! Exact sums of `weight · value` products in a register sized to the sum, per output column.
//!
//! A product of a 256-bit [`Weight`] and an `f64` value (at most 53 bits) is exact in 309 bits.
//! Each column's window begins `768 − L` bits below `2^top`, where `top` bounds every product of
//! the column and `L = ⌊log2 n⌋ + 2`: every product whose last bit lies inside is added exactly (the
//! register reaches above the window, so nothing overflows). A product whose last bit falls below
//! it is smaller than `2^(top − 459 + L)`; when the largest product reaches `2^(top − 2)` (normal
//! values), all dropped products together are under `2^(2L − 457) <= 2^-373` of it for `n < 2^40`.
//! They are dropped whole, never in part: two keys with identical logits get identical weights, and
//! their contributions cancel exactly when their values do.

use crate::kulisch::Split;
use crate::weight::Weight;

/// Words of the window.
const WORDS: usize = 12;
/// Words of the register: the window plus room for a product's top words and carries.
const REGISTER: usize = WORDS + 8;

/// A signed exact sum of products inside a window.
///
/// The register is carry-save: word `i` is a signed 128-bit sum of 64-bit limbs of weight
/// `2^(64·i + bottom)`, so each product is added limb by limb with no carry chain; at most
/// `2^62` products keep every word far from overflow. [`WeightedSum::value`] propagates the
/// carries once.
#[derive(Clone)]
pub(crate) struct WeightedSum {
    words: [i128; REGISTER],
    /// Exponent of the window's bit 0.
    bottom: i64,
}

/// Upper bound (exclusive) on the exponent of `weight · value`: `2^bound(w, v) > |w · v|`.
#[inline(always)]
pub(crate) fn product_bound(weight: &Weight, value: &Split) -> i64 {
    weight.exponent + 256 + value.exponent + (64 - value.mantissa.leading_zeros()) as i64
}

impl WeightedSum {
    /// A zero sum for at most `terms` products, each below `2^top`.
    pub(crate) fn new(top: i64, terms: usize) -> WeightedSum {
        let headroom = (usize::BITS - terms.leading_zeros()) as i64 + 1;
        WeightedSum {
            words: [0; REGISTER],
            bottom: top + headroom - 64 * WORDS as i64,
        }
    }

    /// Adds `weight · value` exactly, or drops it whole if it reaches below the window.
    #[inline(always)]
    pub(crate) fn add(&mut self, weight: &Weight, value: &Split) {
        if value.mantissa == 0 {
            return;
        }
        let position = weight.exponent + value.exponent - self.bottom;
        if position < 0 {
            return;
        }
        let (word, shift) = ((position / 64) as usize, (position % 64) as u32);
        // The value's mantissa pre-shifted (at most 116 bits) times the 4-word weight: 6 limbs.
        let shifted = (value.mantissa as u128) << shift;
        let (low, high) = (shifted as u64, (shifted >> 64) as u64);
        let mut limbs = [0u64; 6];
        let mut carry = 0u64;
        for (i, &m) in weight.mantissa.iter().enumerate() {
            let t = m as u128 * low as u128 + limbs[i] as u128 + carry as u128;
            limbs[i] = t as u64;
            carry = (t >> 64) as u64;
        }
        limbs[4] = carry;
        if high != 0 {
            let mut carry = 0u64;
            for (i, &m) in weight.mantissa.iter().enumerate() {
                let t = m as u128 * high as u128 + limbs[i + 1] as u128 + carry as u128;
                limbs[i + 1] = t as u64;
                carry = (t >> 64) as u64;
            }
            limbs[5] = carry;
        }
        let target = &mut self.words[word..word + 6];
        if value.negative {
            for (w, &l) in target.iter_mut().zip(&limbs) {
                *w -= l as i128;
            }
        } else {
            for (w, &l) in target.iter_mut().zip(&limbs) {
                *w += l as i128;
            }
        }
    }

    /// The sum as `(negative, magnitude words, exponent of bit 0)`.
    pub(crate) fn value(&self) -> (bool, Vec<u64>, i64) {
        // Propagate the carries: two's complement limbs, then the sign from what is left.
        let mut limbs = Vec::with_capacity(REGISTER + 2);
        let mut carry: i128 = 0;
        for &w in &self.words {
            let t = w + carry;
            limbs.push(t as u64);
            carry = t >> 64;
        }
        limbs.push(carry as u64);
        limbs.push((carry >> 64) as u64);
        let negative = (limbs[limbs.len() - 1] as i64) < 0;
        if negative {
            // Magnitude = two's complement negation.
            let mut add_one = true;
            for l in limbs.iter_mut() {
                let (v, c) = (!*l).overflowing_add(u64::from(add_one));
                *l = v;
                add_one = c;
            }
        }
        (negative, limbs, self.bottom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weight `2^exponent · (1 + fraction)` with a few low bits set, so limbs carry.
    fn weight(exponent: i64) -> Weight {
        Weight {
            mantissa: [u64::MAX, 12345, u64::MAX, (1 << 63) | 7],
            exponent: exponent - 255,
        }
    }

    /// The exact value of `Σ w·v` from BigFloat arithmetic at full precision.
    fn reference(terms: &[(Weight, f64)]) -> f64 {
        use astro_float::{BigFloat, Sign};
        let mut total = BigFloat::from_word(0, 64);
        for (w, v) in terms {
            let w = crate::bigfloat::from_words(Sign::Pos, &w.mantissa, w.exponent);
            let p = w.mul_full_prec(&crate::bigfloat::from_f64(*v));
            // (astro-float's add_full_prec returns zero when an operand is zero.)
            if p.is_zero() {
                continue;
            }
            total = if total.is_zero() {
                p
            } else {
                total.add_full_prec(&p)
            };
        }
        crate::bigfloat::to_f64(&total, false)
    }

    fn sum(terms: &[(Weight, f64)]) -> (bool, Vec<u64>, i64) {
        let top = terms
            .iter()
            .map(|(w, v)| product_bound(w, &Split::new(*v)))
            .max()
            .unwrap_or(0);
        let mut s = WeightedSum::new(top, terms.len());
        for (w, v) in terms {
            s.add(w, &Split::new(*v));
        }
        s.value()
    }

    #[test]
    fn sums_with_carries_and_signs_are_exact() {
        let terms = vec![
            (weight(0), 3.0),
            (weight(-1), -1.5),
            (weight(-70), 2f64.powi(-30)),
            (weight(-3), -0.0),
            (weight(-2), -7.25),
            (weight(-200), 1e10),
        ];
        let (negative, words, lsb) = sum(&terms);
        let ours = crate::round::round_to_f64(negative, &words, lsb, false);
        assert_eq!(ours, reference(&terms));
        assert!(!negative);
        // The same terms negated: the mirror image.
        let negated: Vec<(Weight, f64)> = terms.iter().map(|&(w, v)| (w, -v)).collect();
        let (negative, words, lsb) = sum(&negated);
        assert!(negative);
        assert_eq!(
            crate::round::round_to_f64(negative, &words, lsb, false),
            -ours
        );
        // Equal and opposite products cancel to exactly zero.
        let (_, words, _) = sum(&[(weight(-5), 1.25), (weight(-5), -1.25)]);
        assert!(words.iter().all(|&w| w == 0));
    }

    #[test]
    fn products_far_below_the_window_are_dropped_whole() {
        let big = (weight(0), 1.0);
        let tiny = (weight(-600), 1.0);
        let (_, words, lsb) = sum(&[big, tiny]);
        // The same number of terms (a zero adds nothing), so the same window.
        let (_, alone, lsb_alone) = sum(&[big, (weight(-600), 0.0)]);
        assert_eq!((words, lsb), (alone, lsb_alone));
    }
}
