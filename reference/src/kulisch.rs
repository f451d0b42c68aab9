//! Exact sums of `f64` values and of their pairwise products: a Kulisch accumulator.
//!
//! Every finite `f64` is an integer of at most 53 bits times `2^e` with `-1074 <= e <= 971`, so
//! the product of two is an integer of at most 106 bits times `2^e` with `-2148 <= e <= 1942`. A
//! fixed-point register whose least significant bit is `2^-2240` and which reaches `2^2240`
//! therefore holds any such product without rounding, and with 64 bits of headroom above the
//! largest product it holds the sum of up to `2^64` of them: addition in it is integer addition,
//! exact by construction. This is the classic "long accumulator" of Kulisch; two registers (one for
//! positive and one for negative terms) keep every update a carry-propagating add.

use crate::dyadic::Dyadic;
use crate::round::round_to_f64;

/// Words of each register.
const WORDS: usize = 70;
/// The register's bit 0 has weight `2^GRID_EXP`.
pub(crate) const GRID_EXP: i64 = -(35 * 64);

/// A finite `f64` split into sign, integer mantissa and the exponent of its last bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// Whether the value is negative.
    pub negative: bool,
    /// Integer mantissa, below `2^53`; zero for a zero.
    pub mantissa: u64,
    /// The value is `mantissa · 2^exponent`.
    pub exponent: i64,
}

impl Split {
    /// Splits a finite `f64` (callers check finiteness).
    #[inline(always)]
    pub(crate) fn new(x: f64) -> Split {
        let bits = x.to_bits();
        let field = ((bits >> 52) & 0x7ff) as i64;
        let fraction = bits & ((1 << 52) - 1);
        let (mantissa, exponent) = if field == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1 << 52), field - 1075)
        };
        Split {
            negative: bits >> 63 == 1,
            mantissa,
            exponent,
        }
    }
}

/// An exact accumulator of `f64` terms and products, with IEEE 754 semantics for NaN and infinity.
#[derive(Clone)]
pub struct ExactAccumulator {
    /// `registers[0]` sums positive terms, `registers[1]` the magnitudes of negative ones.
    registers: [[u64; WORDS]; 2],
    /// Lowest and highest word written since the last reset (`low > high` when none).
    low: usize,
    high: usize,
    /// A NaN term, or infinities of both signs, or `0 · ∞`.
    nan: bool,
    /// An infinite term of each sign.
    infinite: [bool; 2],
}

impl Default for ExactAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl ExactAccumulator {
    /// An accumulator holding zero.
    pub fn new() -> Self {
        ExactAccumulator {
            registers: [[0; WORDS]; 2],
            low: WORDS,
            high: 0,
            nan: false,
            infinite: [false; 2],
        }
    }

    /// Resets to zero, touching only the words in use.
    pub fn clear(&mut self) {
        if self.low <= self.high {
            for register in &mut self.registers {
                register[self.low..=self.high].fill(0);
            }
        }
        self.low = WORDS;
        self.high = 0;
        self.nan = false;
        self.infinite = [false; 2];
    }

    /// Adds `x` exactly.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.add_special(x);
            return;
        }
        let s = Split::new(x);
        self.add_scaled(s.negative, s.mantissa as u128, s.exponent);
    }

    /// Adds `a · b` exactly.
    #[inline]
    pub fn add_product(&mut self, a: f64, b: f64) {
        if !(a.is_finite() && b.is_finite()) {
            self.add_special(a * b);
            return;
        }
        let (sa, sb) = (Split::new(a), Split::new(b));
        self.add_scaled(
            sa.negative != sb.negative,
            sa.mantissa as u128 * sb.mantissa as u128,
            sa.exponent + sb.exponent,
        );
    }

    /// Adds the exact dot product of `a` and `b` (equal lengths).
    pub fn add_dot(&mut self, a: &[f64], b: &[f64]) {
        assert_eq!(
            a.len(),
            b.len(),
            "dot product of slices of different lengths"
        );
        for (&x, &y) in a.iter().zip(b) {
            self.add_product(x, y);
        }
    }

    /// Records a non-finite term (`a · b` of IEEE arithmetic, so `0 · ∞` is NaN).
    fn add_special(&mut self, x: f64) {
        if x.is_nan() {
            self.nan = true;
        } else {
            self.infinite[usize::from(x < 0.0)] = true;
        }
    }

    /// Adds `±magnitude · 2^exponent`, with `exponent >= GRID_EXP` and the value below `2^2048`.
    #[inline(always)]
    fn add_scaled(&mut self, negative: bool, magnitude: u128, exponent: i64) {
        if magnitude == 0 {
            return;
        }
        let position = (exponent - GRID_EXP) as usize;
        let (word, shift) = (position / 64, position % 64);
        let (lo, hi) = (magnitude as u64, (magnitude >> 64) as u64);
        let parts = if shift == 0 {
            [lo, hi, 0]
        } else {
            [
                lo << shift,
                (hi << shift) | (lo >> (64 - shift)),
                hi >> (64 - shift),
            ]
        };
        let register = &mut self.registers[usize::from(negative)];
        let mut carry = false;
        let mut index = word;
        for part in parts {
            let (sum, c1) = register[index].overflowing_add(part);
            let (sum, c2) = sum.overflowing_add(u64::from(carry));
            register[index] = sum;
            carry = c1 || c2;
            index += 1;
        }
        while carry {
            let (sum, c) = register[index].overflowing_add(1);
            register[index] = sum;
            carry = c;
            index += 1;
        }
        self.low = self.low.min(word);
        self.high = self.high.max(index - 1);
    }

    /// The IEEE 754 special result, if a NaN or infinity was added.
    fn special(&self) -> Option<f64> {
        match (self.nan, self.infinite) {
            (true, _) | (_, [true, true]) => Some(f64::NAN),
            (_, [true, false]) => Some(f64::INFINITY),
            (_, [false, true]) => Some(f64::NEG_INFINITY),
            _ => None,
        }
    }

    /// The exact sum (`None` if a NaN or infinity was added).
    pub fn value(&self) -> Option<Dyadic> {
        if self.special().is_some() {
            return None;
        }
        if self.low > self.high {
            return Some(Dyadic::zero());
        }
        let range = self.low..=self.high;
        let pos = &self.registers[0][range.clone()];
        let neg = &self.registers[1][range];
        Some(Dyadic::from_difference(
            pos,
            neg,
            self.low as i64 + GRID_EXP / 64,
        ))
    }

    /// The sum correctly rounded to `f64` (IEEE results for NaN and infinite terms; a zero sum is
    /// `+0`).
    pub fn to_f64(&self) -> f64 {
        if let Some(special) = self.special() {
            return special;
        }
        match self.value() {
            Some(v) => round_to_f64(v.is_negative(), v.words(), v.lsb_exponent(), false),
            None => f64::NAN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_is_exact() {
        let mut acc = ExactAccumulator::new();
        acc.add_dot(&[1e30, 1.0, -1e30], &[1.0, 1.0, 1.0]);
        assert_eq!(acc.to_f64(), 1.0);
        acc.clear();
        for x in [f64::MAX, f64::MAX, 5e-324, -f64::MAX, -f64::MAX] {
            acc.add(x);
        }
        assert_eq!(acc.to_f64(), 5e-324);
    }

    #[test]
    fn extreme_products_fit() {
        let mut acc = ExactAccumulator::new();
        acc.add_product(f64::MAX, f64::MAX);
        acc.add_product(5e-324, 5e-324);
        assert_eq!(acc.to_f64(), f64::INFINITY);
        acc.add_product(-f64::MAX, f64::MAX);
        // What is left is 2^-2148, far below the smallest subnormal.
        assert_eq!(acc.to_f64(), 0.0);
        let v = acc.value().expect("finite");
        assert!(!v.is_zero());
        assert_eq!(
            v.lsb_exponent() + crate::round::top_bit(v.words()).unwrap() as i64,
            -2148
        );
    }

    #[test]
    fn ieee_specials() {
        let mut acc = ExactAccumulator::new();
        acc.add(1.0);
        acc.add(f64::INFINITY);
        assert_eq!(acc.to_f64(), f64::INFINITY);
        acc.add(f64::NEG_INFINITY);
        assert!(acc.to_f64().is_nan());
        acc.clear();
        acc.add_product(0.0, f64::INFINITY);
        assert!(acc.to_f64().is_nan());
        acc.clear();
        assert_eq!(acc.to_f64(), 0.0);
    }
}
