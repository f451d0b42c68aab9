//! Softmax weights `e^-u` for `u >= 0`, to 256 bits, fast: table-driven fixed-point `exp`.
//!
//! `e^-u = 2^-k · e^r` with `k = ⌈u / ln 2⌉` and `r = k·ln 2 − u ∈ [0, ln 2)`. The first 64
//! fraction bits of `r` are eight bytes `b_i`, and `e^r = Π_i e^(b_i · 2^(-8(i+1))) · e^ρ` with
//! `ρ < 2^-64`: eight lookups in tables computed once with astro-float, times the Taylor
//! polynomial through `ρ^4/24` (the rest is below `ρ^5/119 < 2^-326`). All of it is [`crate::fixed`] arithmetic truncated at
//! `2^-320`; with `ln 2` good to `2^-320` and `k <= 2400`, `r` errs by under `2^-308`, and
//! the seventeen truncations add under `2^-315` each, so before the final rounding to 256 bits
//! the relative error is below `2^-305`. The weight is then `e^-u · (1 + δ)` with
//! `|δ| < 2^-256 + 2^-305`. The same `u` always gives the same weight.

use std::sync::OnceLock;

use astro_float::{BigFloat, Consts, RoundingMode, Sign};

use crate::bigfloat::from_words;
use crate::fixed::{self, Fixed, ONE};
use crate::round::bits_at;

/// `u` at or beyond this gets weight zero: `e^-1600 < 2^-2308`, and such a weight times any
/// `f64` (below `2^1024`) over a denominator of at least 1 is below `2^-1284`, under half the
/// smallest subnormal even summed over `2^200` keys.
pub(crate) const CUTOFF: u64 = 1600;

/// A positive weight `mantissa · 2^exponent`, with `mantissa` a 256-bit integer (little-endian)
/// whose top bit is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Weight {
    /// Little-endian 256-bit mantissa in `[2^255, 2^256)`.
    pub mantissa: [u64; 4],
    /// Exponent of the mantissa's last bit.
    pub exponent: i64,
}

impl Weight {
    /// Exactly one.
    pub(crate) const ONE: Weight = Weight {
        mantissa: [0, 0, 0, 1 << 63],
        exponent: -255,
    };
}

/// The tables: `ln 2` and `e^(b · 2^(-8(i+1)))` for `i < 8`, `b < 256`.
struct Tables {
    ln2: Fixed,
    exp: Vec<[Fixed; 256]>,
    /// `1/k!` for `k = 0..=4`, truncated.
    taylor: [Fixed; 5],
}

/// Working precision of the table construction.
const TABLE_BITS: usize = 512;

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let rm = RoundingMode::ToZero;
        let mut consts = Consts::new().expect("astro-float constants");
        let ln2 = to_fixed(&consts.ln_2(TABLE_BITS, rm));
        let exp = (0..8i64)
            .map(|i| {
                // e^(2^-(8(i+1))), then its powers: 255 products at 512 bits err by < 2^-503.
                let step = from_words(Sign::Pos, &[1], -8 * (i + 1));
                let base = step.exp(TABLE_BITS, rm, &mut consts);
                let mut power = BigFloat::from_word(1, TABLE_BITS);
                let mut table = [[0u64; 6]; 256];
                for entry in table.iter_mut() {
                    *entry = to_fixed(&power);
                    power = power.mul(&base, TABLE_BITS, rm);
                }
                table
            })
            .collect();
        let mut taylor = [ONE; 5];
        for k in 1..5 {
            taylor[k] = fixed::div_small(&taylor[k - 1], k as u64);
        }
        Tables { ln2, exp, taylor }
    })
}

/// A positive `BigFloat` below `2^64`, truncated to fixed point.
fn to_fixed(x: &BigFloat) -> Fixed {
    let (words, _, _, exponent, _) = x.as_raw_parts().expect("finite table value");
    let lsb = exponent as i64 - 64 * words.len() as i64;
    fixed::from_words(words, lsb).expect("table value below 2^64")
}

/// `e^-u`, or `None` when `u >= CUTOFF` (weight zero).
pub(crate) fn exp_neg(u: &Fixed) -> Option<Weight> {
    if u[5] >= CUTOFF {
        return None;
    }
    if *u == [0; 6] {
        return Some(Weight::ONE);
    }
    let tables = tables();
    // k = ⌈u / ln 2⌉ from a float estimate, then corrected until 0 <= k·ln 2 − u < ln 2.
    let estimate = u[5] as f64 + u[4] as f64 * 2f64.powi(-64);
    let mut k = (estimate / core::f64::consts::LN_2).ceil() as u64;
    let mut r = loop {
        match fixed::sub(&fixed::mul_small(&tables.ln2, k), u) {
            Some(r) => break r,
            None => k += 1,
        }
    };
    while let Some(smaller) = fixed::sub(&r, &tables.ln2) {
        r = smaller;
        k -= 1;
    }
    // e^ρ for the bits below 2^-64, by Horner: 1 + ρ(1 + ρ(1/2 + ρ(1/6 + ρ/24))).
    let rho: Fixed = [r[0], r[1], r[2], r[3], 0, 0];
    let mut value = tables.taylor[4];
    for coefficient in tables.taylor[..4].iter().rev() {
        value = fixed::add(coefficient, &fixed::mul(&rho, &value));
    }
    for (i, table) in tables.exp.iter().enumerate() {
        let byte = (r[4] >> (56 - 8 * i)) & 0xff;
        if byte != 0 {
            value = fixed::mul(&value, &table[byte as usize]);
        }
    }
    Some(round_weight(&value, -(k as i64)))
}

/// `value · 2^shift` for `value` in `[1, 2)`, rounded to a 256-bit [`Weight`].
fn round_weight(value: &Fixed, shift: i64) -> Weight {
    debug_assert_eq!(value[5], 1, "e^r outside [1, 2)");
    // The mantissa is bits 65..=320 (the integer bit is bit 320); bit 64 rounds it.
    let mut mantissa = [0u64; 4];
    for (i, m) in mantissa.iter_mut().enumerate() {
        *m = bits_at(value, 65 + 64 * i, 64);
    }
    let mut exponent = shift - 255;
    if bits_at(value, 64, 1) == 1 {
        let mut carry = true;
        for m in mantissa.iter_mut() {
            let (s, c) = m.overflowing_add(u64::from(carry));
            *m = s;
            carry = c;
        }
        if carry {
            mantissa = Weight::ONE.mantissa;
            exponent += 1;
        }
    }
    Weight { mantissa, exponent }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `u` given as `n · 2^-e`.
    fn fixed_u(n: u64, e: i64) -> Fixed {
        fixed::from_words(&[n], -e).expect("small u")
    }

    /// |weight / e^-u − 1| in units of 2^-256, with e^-u from astro-float at 1024 bits.
    fn error_vs_astro(u: &Fixed, w: &Weight) -> f64 {
        let mut consts = Consts::new().expect("constants");
        let rm = RoundingMode::ToEven;
        let exact = from_words(Sign::Neg, u, -fixed::FRACTION_BITS).exp(1024, rm, &mut consts);
        let ours = from_words(Sign::Pos, &w.mantissa, w.exponent);
        let relative = ours.sub(&exact, 1024, rm).div(&exact, 1024, rm);
        let scaled = relative.mul(&BigFloat::from_f64(2f64.powi(256), 64), 1024, rm);
        crate::bigfloat::to_f64(&scaled, false).abs()
    }

    #[test]
    fn matches_astro_float_to_256_bits() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut cases: Vec<Fixed> = vec![
            fixed_u(1, 320),
            fixed_u(1, 64),
            fixed_u(1, 0),
            fixed_u(3, 1),
            fixed_u(1599, 0),
            fixed_u(u64::MAX, 63),
        ];
        // ln 2 itself and its multiples land on the k boundaries.
        cases.push(tables().ln2);
        cases.push(fixed::mul_small(&tables().ln2, 1000));
        for _ in 0..300 {
            let mut u = [0u64; 6];
            for w in u.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *w = seed;
            }
            u[5] %= 1 << (seed % 11);
            cases.push(u);
        }
        for u in &cases {
            let w = exp_neg(u).expect("below the cutoff");
            assert!(w.mantissa[3] >> 63 == 1, "normalised");
            let err = error_vs_astro(u, &w);
            assert!(err <= 1.0, "u = {u:x?}: error {err} · 2^-256");
        }
    }

    #[test]
    fn zero_and_cutoff() {
        assert_eq!(exp_neg(&[0; 6]), Some(Weight::ONE));
        assert_eq!(exp_neg(&fixed_u(CUTOFF, 0)), None);
        assert!(exp_neg(&fixed_u(CUTOFF - 1, 0)).is_some());
    }
}
