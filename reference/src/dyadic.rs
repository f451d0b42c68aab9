//! Exact signed binary fractions of any size: the values of exact sums, compared and subtracted
//! without rounding.

use core::cmp::Ordering;

use crate::kulisch::Split;
use crate::round::round_to_f64;

/// An exact number `±Σ words[i] · 2^(64·(low_word + i))`.
///
/// The representation is canonical (no zero words at either end, zero has no words and is
/// positive), so equal values compare equal field by field.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Dyadic {
    negative: bool,
    words: Vec<u64>,
    low_word: i64,
}

impl Dyadic {
    /// Zero.
    pub fn zero() -> Dyadic {
        Dyadic::default()
    }

    /// Builds `±magnitude · 2^(64·low_word)` in canonical form.
    pub(crate) fn from_magnitude(negative: bool, magnitude: &[u64], low_word: i64) -> Dyadic {
        let Some(last) = magnitude.iter().rposition(|&w| w != 0) else {
            return Dyadic::zero();
        };
        let first = magnitude.iter().position(|&w| w != 0).unwrap_or(0);
        Dyadic {
            negative,
            words: magnitude[first..=last].to_vec(),
            low_word: low_word + first as i64,
        }
    }

    /// `(pos − neg) · 2^(64·low_word)` for two magnitudes of equal length.
    pub(crate) fn from_difference(pos: &[u64], neg: &[u64], low_word: i64) -> Dyadic {
        debug_assert_eq!(pos.len(), neg.len());
        let negative = compare_magnitudes(pos, neg) == Ordering::Less;
        let (big, small) = if negative { (neg, pos) } else { (pos, neg) };
        let mut out = big.to_vec();
        subtract_in_place(&mut out, small);
        Dyadic::from_magnitude(negative, &out, low_word)
    }

    /// `x` exactly (`x` finite).
    pub fn from_f64(x: f64) -> Dyadic {
        let s = Split::new(x);
        let low_word = s.exponent.div_euclid(64);
        let shifted = (s.mantissa as u128) << s.exponent.rem_euclid(64);
        Dyadic::from_magnitude(
            s.negative,
            &[shifted as u64, (shifted >> 64) as u64],
            low_word,
        )
    }

    /// `value · 2^exponent` exactly.
    pub(crate) fn from_i128(value: i128, exponent: i64) -> Dyadic {
        let magnitude = value.unsigned_abs();
        let low_word = exponent.div_euclid(64);
        let shift = exponent.rem_euclid(64) as u32;
        let words = if shift == 0 {
            [magnitude as u64, (magnitude >> 64) as u64, 0]
        } else {
            [
                (magnitude as u64) << shift,
                (magnitude >> (64 - shift)) as u64,
                (magnitude >> (128 - shift)) as u64,
            ]
        };
        Dyadic::from_magnitude(value < 0, &words, low_word)
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.words.is_empty()
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Little-endian magnitude words.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Exponent of bit 0 of [`Self::words`].
    pub fn lsb_exponent(&self) -> i64 {
        64 * self.low_word
    }

    /// Exponent of the leading bit (`None` for zero): the value's magnitude is in
    /// `[2^e, 2^(e+1))`.
    pub fn leading_exponent(&self) -> Option<i64> {
        let last = self.words.last()?;
        Some(
            self.lsb_exponent() + 64 * (self.words.len() as i64 - 1) + 63
                - last.leading_zeros() as i64,
        )
    }

    /// The value correctly rounded to `f64`.
    pub fn to_f64(&self) -> f64 {
        round_to_f64(self.negative, &self.words, self.lsb_exponent(), false)
    }

    /// `-self`.
    pub fn neg(&self) -> Dyadic {
        let mut out = self.clone();
        out.negative = !out.negative && !out.is_zero();
        out
    }

    /// `self − other`, exactly.
    pub fn sub(&self, other: &Dyadic) -> Dyadic {
        self.add(&other.neg())
    }

    /// `self + other`, exactly.
    pub fn add(&self, other: &Dyadic) -> Dyadic {
        if other.is_zero() {
            return self.clone();
        }
        if self.is_zero() {
            return other.clone();
        }
        let low = self.low_word.min(other.low_word);
        let high = self.high_word().max(other.high_word());
        let a = self.aligned(low, high + 2);
        let b = other.aligned(low, high + 2);
        if self.negative == other.negative {
            let mut out = a;
            add_in_place(&mut out, &b);
            Dyadic::from_magnitude(self.negative, &out, low)
        } else if self.negative {
            Dyadic::from_difference(&b, &a, low)
        } else {
            Dyadic::from_difference(&a, &b, low)
        }
    }

    /// `|self| · factor` as a magnitude with the same [`Self::lsb_exponent`].
    pub(crate) fn magnitude_times(&self, factor: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.words.len() + 1);
        let mut carry = 0u64;
        for &w in &self.words {
            let product = w as u128 * factor as u128 + carry as u128;
            out.push(product as u64);
            carry = (product >> 64) as u64;
        }
        out.push(carry);
        out
    }

    /// Index of the highest word (`low_word` for zero).
    fn high_word(&self) -> i64 {
        self.low_word + self.words.len().max(1) as i64 - 1
    }

    /// The magnitude laid over words `low..high` (which must cover it).
    fn aligned(&self, low: i64, high: i64) -> Vec<u64> {
        let mut out = vec![0; (high - low) as usize];
        let start = (self.low_word - low) as usize;
        out[start..start + self.words.len()].copy_from_slice(&self.words);
        out
    }
}

impl PartialOrd for Dyadic {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dyadic {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (negative, _) => {
                let magnitude = self.compare_magnitude(other);
                if negative {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
        }
    }
}

impl Dyadic {
    /// Compares `|self|` with `|other|`.
    fn compare_magnitude(&self, other: &Dyadic) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let by_top = self.leading_exponent().cmp(&other.leading_exponent());
        if by_top != Ordering::Equal {
            return by_top;
        }
        let low = self.low_word.min(other.low_word);
        let high = self.high_word().max(other.high_word()) + 1;
        compare_magnitudes(&self.aligned(low, high), &other.aligned(low, high))
    }
}

/// Compares two little-endian magnitudes of equal length.
fn compare_magnitudes(a: &[u64], b: &[u64]) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// `a -= b` for `a >= b` of equal length.
fn subtract_in_place(a: &mut [u64], b: &[u64]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d, b1) = x.overflowing_sub(y);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        *x = d;
        borrow = b1 || b2;
    }
    debug_assert!(!borrow, "subtracted a larger magnitude");
}

/// `a += b` for equal lengths, with `a`'s top word free to take the carry.
fn add_in_place(a: &mut [u64], b: &[u64]) {
    let mut carry = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (s, c1) = x.overflowing_add(y);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        *x = s;
        carry = c1 || c2;
    }
    debug_assert!(!carry, "carry out of an aligned sum");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(negative: bool, words: &[u64], low: i64) -> Dyadic {
        Dyadic::from_magnitude(negative, words, low)
    }

    #[test]
    fn canonical_and_ordered() {
        assert_eq!(d(false, &[0, 5, 0], -1), d(false, &[5], 0));
        assert_eq!(d(true, &[0, 0], 3), Dyadic::zero());
        let values = [
            d(true, &[1, 1], 0),
            d(true, &[7], 0),
            d(true, &[1], -1),
            Dyadic::zero(),
            d(false, &[1], -2),
            d(false, &[u64::MAX], -1),
            d(false, &[1], 0),
            d(false, &[0, 1], 0),
        ];
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn add_and_sub_are_exact() {
        let a = d(false, &[1], 1); // 2^64
        let b = d(false, &[1], -1); // 2^-64
        let sum = a.add(&b);
        assert_eq!(sum, d(false, &[1, 0, 1], -1));
        assert_eq!(sum.sub(&a), b);
        assert_eq!(b.sub(&sum), a.neg());
        assert_eq!(a.sub(&a), Dyadic::zero());
        let carry = d(false, &[u64::MAX], 0).add(&d(false, &[1], 0));
        assert_eq!(carry, d(false, &[1], 1));
        assert_eq!(carry.to_f64(), 2f64.powi(64));
        assert_eq!(carry.leading_exponent(), Some(64));
    }
}
