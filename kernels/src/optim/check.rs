//! Argument checks shared by every optimizer step: slice lengths, finiteness, hyperparameter ranges.

use crate::{Error, Result};

/// `Err(NonFinite(what))` when any value is NaN or infinite: on the SIMD backends
/// `simd::optim::all_finite_lanes`, elsewhere [`finite_bits`].
#[inline]
pub(crate) fn all_finite(what: &'static str, values: &[f32]) -> Result<()> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let ok = crate::simd::optim::all_finite_lanes(values).unwrap_or_else(|| finite_bits(values));
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let ok = finite_bits(values);
    if ok {
        Ok(())
    } else {
        Err(Error::NonFinite(what))
    }
}

/// Whether every value is finite, from an integer max over the magnitude bits: associative, so
/// the loop vectorises, and there is no early exit to defeat it. A value is non-finite exactly
/// when its exponent bits are all ones.
#[inline]
fn finite_bits(values: &[f32]) -> bool {
    const LANES: usize = 16;
    let mut acc = [0u32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a = (*a).max(x.to_bits() & 0x7fff_ffff);
        }
    }
    let mut max = acc.iter().copied().fold(0, u32::max);
    for x in chunks.remainder() {
        max = max.max(x.to_bits() & 0x7fff_ffff);
    }
    max < 0x7f80_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position (each quarter of the SIMD pass, the chunks left over, the rest) and every
    /// kind of non-finite value is found, by the dispatching check and by the portable one; the
    /// extremes of the finite range are not mistaken for one.
    #[test]
    fn all_finite_finds_every_non_finite_value() {
        let mut x = [0.0f32; 200];
        for (i, v) in x.iter_mut().enumerate() {
            *v = match i % 4 {
                0 => f32::MAX,
                1 => -f32::MAX,
                2 => f32::MIN_POSITIVE / 8.0,
                _ => i as f32 * -0.5,
            };
        }
        for n in [0, 1, 15, 16, 17, 48, 63, 64, 65, 80, 112, 127, 128, 200] {
            assert_eq!(all_finite("x", &x[..n]), Ok(()), "n {n}");
            assert!(finite_bits(&x[..n]), "n {n}");
            for pos in 0..n {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut y = x;
                    y[pos] = bad;
                    assert_eq!(
                        all_finite("y", &y[..n]),
                        Err(Error::NonFinite("y")),
                        "n {n} at {pos}"
                    );
                    assert!(!finite_bits(&y[..n]), "n {n} at {pos}");
                }
            }
        }
    }
}
