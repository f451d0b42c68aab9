//! Exact sums of `weight · value` products in a register sized to the sum, per output column.
//!
//! A product of a 256-bit [`Weight`] and an `f64` value (53 bits) is exact in 309 bits. The
//! register is a 768-bit window whose top leaves room for the carries of all terms above the
//! largest product's bound `2^top`: every product whose last bit lies inside the window is added
//! exactly. A product whose last bit falls below it is smaller than `2^(top − 457 + L)` (with
//! `L = ⌈log2 n⌉ + 2`), so all of them together are under `2^-372` of the largest product for any
//! `n <= 2^40`; they are dropped whole. Whole products, never parts: two keys with identical logits
//! get identical weights, and their contributions cancel exactly when their values do.

use crate::kulisch::Split;
use crate::weight::Weight;

/// Words of the window.
const WORDS: usize = 12;

/// A signed exact sum of products inside a window.
#[derive(Clone)]
pub(crate) struct WeightedSum {
    /// Positive terms and magnitudes of negative ones; two spare words take carries that the
    /// bound says cannot happen, so that indexing needs no check.
    registers: [[u64; WORDS + 2]; 2],
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
            registers: [[0; WORDS + 2]; 2],
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
        // The 5-word product, then shifted into 6 words.
        let mut product = [0u64; 6];
        let mut carry = 0u64;
        for (p, &m) in product.iter_mut().zip(&weight.mantissa) {
            let t = m as u128 * value.mantissa as u128 + carry as u128;
            *p = t as u64;
            carry = (t >> 64) as u64;
        }
        product[4] = carry;
        if shift != 0 {
            for i in (1..6).rev() {
                product[i] = (product[i] << shift) | (product[i - 1] >> (64 - shift));
            }
            product[0] <<= shift;
        }
        let register = &mut self.registers[usize::from(value.negative)];
        let mut carry = false;
        let mut index = word;
        for part in product {
            if index >= WORDS + 2 {
                debug_assert!(part == 0 && !carry, "product above the window");
                break;
            }
            let (s, c1) = register[index].overflowing_add(part);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            register[index] = s;
            carry = c1 || c2;
            index += 1;
        }
        while carry && index < WORDS + 2 {
            let (s, c) = register[index].overflowing_add(1);
            register[index] = s;
            carry = c;
            index += 1;
        }
        debug_assert!(!carry, "carry above the window");
    }

    /// The sum as `(negative, magnitude words, exponent of bit 0)`.
    pub(crate) fn value(&self) -> (bool, Vec<u64>, i64) {
        let [pos, neg] = &self.registers;
        let negative = pos.iter().rev().cmp(neg.iter().rev()) == core::cmp::Ordering::Less;
        let (big, small) = if negative { (neg, pos) } else { (pos, neg) };
        let mut out = big.to_vec();
        let mut borrow = false;
        for (x, &y) in out.iter_mut().zip(small) {
            let (d, b1) = x.overflowing_sub(y);
            let (d, b2) = d.overflowing_sub(u64::from(borrow));
            *x = d;
            borrow = b1 || b2;
        }
        (negative, out, self.bottom)
    }
}
