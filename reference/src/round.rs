//! Correct rounding of big binary numbers to `f64` (round to nearest, ties to even).
//!
//! Every public result of this crate leaves through [`round_to_f64`]: the big value is rounded
//! exactly once, with subnormals and overflow handled as IEEE 754 prescribes.

/// Smallest exponent of an `f64` bit: the least significant bit of a subnormal is `2^-1074`.
const MIN_LSB: i64 = -1074;

/// Rounds `±(M + δ)·2^lsb_exp` to the nearest `f64`, ties to even.
///
/// `M` is the little-endian magnitude `words`; `inexact` says that the true value has a fraction
/// `0 < δ < 1` beyond `M` (a truncated magnitude), `δ = 0` otherwise. A truncated magnitude must
/// carry at least two bits below the result's last bit, so that `δ` only acts as a sticky bit.
pub(crate) fn round_to_f64(negative: bool, words: &[u64], lsb_exp: i64, inexact: bool) -> f64 {
    let sign = if negative { -1.0 } else { 1.0 };
    let Some(top) = top_bit(words) else {
        debug_assert!(!inexact || lsb_exp <= MIN_LSB - 2, "too few bits to round");
        return sign * 0.0;
    };
    // Exponent of the leading bit.
    let lead = lsb_exp + top as i64;
    if lead > 1023 {
        return sign * f64::INFINITY;
    }
    let lsb = (lead - 52).max(MIN_LSB);
    let shift = lsb - lsb_exp;
    let (mut mantissa, round, sticky) = if shift <= 0 {
        // Every bit is kept: M < 2^53 here, so the shift cannot overflow.
        debug_assert!(!inexact || shift < 0, "too few bits to round");
        (bits_at(words, 0, 64) << (-shift), false, inexact)
    } else {
        debug_assert!(!inexact || shift >= 2, "too few bits to round");
        let shift = shift as usize;
        let mantissa = bits_at(words, shift, 53);
        let round = bits_at(words, shift - 1, 1) == 1;
        (mantissa, round, inexact || any_bit_below(words, shift - 1))
    };
    if round && (sticky || mantissa & 1 == 1) {
        mantissa += 1;
    }
    // For a normal result mantissa is in [2^52, 2^53] and the biased exponent is lsb + 1075; the
    // hidden bit adds one to the exponent field, and a carry to 2^53 moves it up once more. For a
    // subnormal (lsb = -1074) the field is 0 and mantissa < 2^52, or exactly 2^52 after a carry,
    // which is the smallest normal number. Overflow by rounding lands on the infinity bit pattern.
    let bits = (((lsb - MIN_LSB) as u64) << 52) + mantissa;
    sign * f64::from_bits(bits.min(f64::INFINITY.to_bits()))
}

/// Index of the most significant set bit of a little-endian magnitude.
pub(crate) fn top_bit(words: &[u64]) -> Option<usize> {
    let index = words.iter().rposition(|&w| w != 0)?;
    Some(index * 64 + 63 - words[index].leading_zeros() as usize)
}

/// `count <= 64` bits of `words` starting at bit `start` (bits past the end read as zero).
pub(crate) fn bits_at(words: &[u64], start: usize, count: usize) -> u64 {
    let word = start / 64;
    let offset = start % 64;
    let low = words.get(word).copied().unwrap_or(0) >> offset;
    let high = if offset == 0 {
        0
    } else {
        words.get(word + 1).copied().unwrap_or(0) << (64 - offset)
    };
    let value = low | high;
    if count >= 64 {
        value
    } else {
        value & ((1u64 << count) - 1)
    }
}

/// Whether any bit below bit `end` is set.
pub(crate) fn any_bit_below(words: &[u64], end: usize) -> bool {
    let word = end / 64;
    let offset = end % 64;
    if words[..word.min(words.len())].iter().any(|&w| w != 0) {
        return true;
    }
    offset != 0
        && words
            .get(word)
            .is_some_and(|&w| w & ((1u64 << offset) - 1) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a finite f64 into magnitude words and exponent.
    fn parts(x: f64) -> (bool, Vec<u64>, i64) {
        let bits = x.to_bits();
        let field = ((bits >> 52) & 0x7ff) as i64;
        let fraction = bits & ((1 << 52) - 1);
        let (m, e) = if field == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1 << 52), field - 1075)
        };
        (x < 0.0, vec![m], e)
    }

    #[test]
    fn representable_values_round_trip() {
        for x in [
            1.0,
            -2.5,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -1.2345e-310,
            std::f64::consts::PI,
        ] {
            let (neg, w, e) = parts(x);
            assert_eq!(round_to_f64(neg, &w, e, false), x);
            // Shifted left by 70 bits into two words, with lower exponent: same value.
            let wide = [0, w[0] << 6, w[0] >> 58];
            assert_eq!(round_to_f64(neg, &wide, e - 70, false), x);
        }
    }

    #[test]
    fn ties_go_to_even_and_sticky_breaks_ties() {
        // 1 + 2^-53 is halfway between 1 and 1 + 2^-52.
        let half = [(1u64 << 53) | 1];
        assert_eq!(round_to_f64(false, &half, -53, false), 1.0);
        assert_eq!(
            round_to_f64(false, &[half[0] << 2], -55, true),
            1.0 + f64::EPSILON
        );
        // 1 + 3·2^-53 is halfway between 1 + 2^-52 and 1 + 2^-51: goes up to even.
        let odd = [(1u64 << 53) | 3];
        assert_eq!(
            round_to_f64(false, &odd, -53, false),
            1.0 + 2.0 * f64::EPSILON
        );
    }

    #[test]
    fn subnormals_underflow_and_overflow() {
        // 2^-1075 is halfway between 0 and the smallest subnormal: ties to even gives 0.
        assert_eq!(round_to_f64(false, &[1], -1075, false), 0.0);
        assert_eq!(round_to_f64(false, &[4], -1077, true), 5e-324);
        // 3·2^-1076 rounds up to 2^-1074.
        assert_eq!(round_to_f64(false, &[3], -1076, false), 5e-324);
        assert_eq!(round_to_f64(false, &[1], 1024, false), f64::INFINITY);
        assert_eq!(round_to_f64(true, &[1], 1024, false), f64::NEG_INFINITY);
        // MAX + half an ulp rounds to even, which is 2^1024: infinity.
        let max_plus_half = [(((1u64 << 53) - 1) << 1) | 1];
        assert_eq!(
            round_to_f64(false, &max_plus_half, 970, false),
            f64::INFINITY
        );
        assert_eq!(round_to_f64(false, &[(1 << 53) - 1], 971, false), f64::MAX);
    }
}
