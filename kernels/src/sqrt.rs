//! A correctly rounded `f32` square root that also runs in `const` context, so shapes whose
//! default scale is `1/sqrt(head_dim)` can be built in a `const` or `static` initialiser. It
//! gives the bits of `libm::sqrtf` (IEEE 754 square root, round to nearest even).

/// `sqrt(x)` correctly rounded, for any `f32` (NaN and negative inputs give NaN, `±0` and `+inf`
/// themselves).
pub(crate) const fn sqrt_f32(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 || x == f32::INFINITY {
        return x;
    }
    // x = m · 2^e with m an integer below 2^24 (subnormals have a smaller m).
    let bits = x.to_bits();
    let biased = (bits >> 23) as i32;
    let (mut m, mut e) = if biased == 0 {
        ((bits & 0x7f_ffff) as u64, -149)
    } else {
        (((bits & 0x7f_ffff) | 0x80_0000) as u64, biased - 150)
    };
    // Make the exponent even, then bring m into [2^48, 2^50), so that isqrt(m) has 25 bits: 24
    // for the result and one to round with. No bit of m is lost.
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    }
    while m < (1 << 48) {
        m <<= 2;
        e -= 2;
    }
    let r = m.isqrt();
    assemble(r, m != r * r, e / 2)
}

/// The float `r/2 · 2^half_exp` for a 25-bit `r` (`2^24 <= r < 2^25`), rounded to nearest even;
/// `inexact` tells whether bits below `r`'s last were lost.
const fn assemble(r: u64, inexact: bool, half_exp: i32) -> f32 {
    let round = r & 1;
    let mut mant = r >> 1;
    if round == 1 && (inexact || mant & 1 == 1) {
        mant += 1;
    }
    // mant · 2^(half_exp + 1) with mant in [2^23, 2^24]; fold a carry into the exponent.
    let mut exp = half_exp + 1;
    if mant == 1 << 24 {
        mant >>= 1;
        exp += 1;
    }
    // A square root of an f32 is a normal f32: its exponent is in range.
    let biased = (exp + 150) as u32;
    f32::from_bits((biased << 23) | (mant as u32 & 0x7f_ffff))
}

#[cfg(test)]
mod tests {
    use super::sqrt_f32;

    fn check(x: f32) {
        let (got, want) = (sqrt_f32(x), libm::sqrtf(x));
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "sqrt({x:e}) = {got:e}, libm {want:e}"
        );
    }

    #[test]
    fn equals_libm_on_integers_and_specials() {
        // Under Miri (interpreted) a shorter sweep.
        let last = if cfg!(miri) { 300 } else { 70_000u32 };
        for d in 0..last {
            check(d as f32);
        }
        for x in [
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            f32::INFINITY,
            -1.0,
            f32::NAN,
            -0.0,
        ] {
            check(x);
        }
    }

    #[test]
    fn equals_libm_on_a_bit_sweep() {
        // Every 4099th bit pattern of the positive floats: all exponents, odd and even.
        let step = if cfg!(miri) { 4099 * 1024 } else { 4099 };
        let mut bits = 0u32;
        while bits < 0x7f80_0000 {
            check(f32::from_bits(bits));
            bits += step;
        }
    }
}
