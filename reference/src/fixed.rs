//! 384-bit unsigned fixed-point numbers: one integer word and five fraction words.
//!
//! The fast `exp` works in this format: every operation is word arithmetic with truncation, so
//! each multiplication errs by less than one unit of the last place, `2^-320`.

/// `Σ words[i] · 2^(64·i − 320)`: word 5 is the integer part, words 0..5 the fraction.
pub(crate) type Fixed = [u64; 6];

/// Fraction bits of [`Fixed`].
pub(crate) const FRACTION_BITS: i64 = 320;

/// The fixed-point one.
pub(crate) const ONE: Fixed = [0, 0, 0, 0, 0, 1];

/// `a · b`, truncated (the integer part of the product must fit a word).
#[inline]
pub(crate) fn mul(a: &Fixed, b: &Fixed) -> Fixed {
    let mut full = [0u64; 12];
    for (i, &x) in a.iter().enumerate() {
        if x == 0 {
            continue;
        }
        let mut carry = 0u64;
        for (j, &y) in b.iter().enumerate() {
            let t = x as u128 * y as u128 + full[i + j] as u128 + carry as u128;
            full[i + j] = t as u64;
            carry = (t >> 64) as u64;
        }
        full[i + 6] = carry;
    }
    debug_assert_eq!(full[11], 0, "fixed-point product overflows");
    [full[5], full[6], full[7], full[8], full[9], full[10]]
}

/// `a · k` for a small integer `k` (the product must stay below `2^64`).
pub(crate) fn mul_small(a: &Fixed, k: u64) -> Fixed {
    let mut out = [0u64; 6];
    let mut carry = 0u64;
    for (o, &x) in out.iter_mut().zip(a) {
        let t = x as u128 * k as u128 + carry as u128;
        *o = t as u64;
        carry = (t >> 64) as u64;
    }
    debug_assert_eq!(carry, 0, "fixed-point product overflows");
    out
}

/// `a / k`, truncated.
pub(crate) fn div_small(a: &Fixed, k: u64) -> Fixed {
    let mut out = [0u64; 6];
    let mut remainder = 0u64;
    for i in (0..6).rev() {
        let t = ((remainder as u128) << 64) | a[i] as u128;
        out[i] = (t / k as u128) as u64;
        remainder = (t % k as u128) as u64;
    }
    out
}

/// `a + b` (must not overflow).
pub(crate) fn add(a: &Fixed, b: &Fixed) -> Fixed {
    let mut out = [0u64; 6];
    let mut carry = false;
    for i in 0..6 {
        let (s, c1) = a[i].overflowing_add(b[i]);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        out[i] = s;
        carry = c1 || c2;
    }
    debug_assert!(!carry, "fixed-point sum overflows");
    out
}

/// `a − b`, or `None` when `b > a`.
pub(crate) fn sub(a: &Fixed, b: &Fixed) -> Option<Fixed> {
    let mut out = [0u64; 6];
    let mut borrow = false;
    for i in 0..6 {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        out[i] = d;
        borrow = b1 || b2;
    }
    (!borrow).then_some(out)
}

/// `M · 2^exponent` truncated to [`Fixed`] for the little-endian magnitude `M = words`, or
/// `None` when the value is `2^64` or more.
pub(crate) fn from_words(words: &[u64], exponent: i64) -> Option<Fixed> {
    // Bit i of M lands on bit i + shift of the fixed-point words.
    let shift = exponent + FRACTION_BITS;
    let mut out = [0u64; 6];
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            continue;
        }
        let position = 64 * i as i64 + shift;
        let top = position + 63 - w.leading_zeros() as i64;
        if top >= 384 {
            return None;
        }
        if position + 64 <= 0 {
            continue;
        }
        if position < 0 {
            out[0] |= w >> (-position);
            continue;
        }
        let (index, offset) = ((position / 64) as usize, position % 64);
        out[index] |= w << offset;
        if offset != 0 && index + 1 < 6 {
            out[index + 1] |= w >> (64 - offset);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x` (exactly representable) as fixed point.
    fn fx(x: f64) -> Fixed {
        let bits = x.to_bits();
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        let exponent = ((bits >> 52) & 0x7ff) as i64 - 1075;
        from_words(&[mantissa], exponent).expect("below 2^64")
    }

    #[test]
    fn arithmetic_on_exact_values() {
        assert_eq!(fx(1.0), ONE);
        assert_eq!(mul(&fx(1.5), &fx(2.25)), fx(3.375));
        assert_eq!(mul(&fx(0.5), &fx(2f64.powi(-300))), fx(2f64.powi(-301)));
        assert_eq!(mul_small(&fx(0.75), 6), fx(4.5));
        assert_eq!(div_small(&fx(4.5), 6), fx(0.75));
        assert_eq!(add(&fx(1.25), &fx(1e9)), fx(1e9 + 1.25));
        assert_eq!(sub(&fx(3.0), &fx(0.5)), Some(fx(2.5)));
        assert_eq!(sub(&fx(0.5), &fx(3.0)), None);
        // Bits below 2^-320 are truncated; 2^64 does not fit.
        assert_eq!(from_words(&[3], -321), Some([1, 0, 0, 0, 0, 0]));
        assert_eq!(from_words(&[1], 64), None);
        assert_eq!(from_words(&[1, 1], -64), Some([0, 0, 0, 0, 1, 1]));
        assert_eq!(from_words(&[1 << 63], -448), Some([0; 6]));
    }
}
