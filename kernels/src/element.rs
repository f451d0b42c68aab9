//! Storage types: the element formats tensors are kept in, and their rounding rules.
//!
//! `f32` is IEEE binary32. `bf16` is `half::bf16`: conversions round to nearest, ties to even, and
//! keep NaN a NaN (half's rules). Conversions from `f64` are correctly rounded (no double rounding):
//! the value is first rounded to `f32` with round-to-odd, which is exact enough for the final
//! round-to-nearest-even step to be correct.

use core::fmt::Debug;
use half::bf16;

mod sealed {
    use crate::rows::lanes::run_rows;
    use crate::rows::{Job, Routed};
    use crate::simd::Backend;

    /// Closes `Element` to `f32`, `bf16` and `f64`, and routes `f32`-accumulator jobs to the
    /// SIMD backends written for each element type (none for `f64`).
    pub trait Sealed: Sized {
        fn route_f32<J: Job<Self, f32>>(backend: Backend, job: J) -> Routed<J, Self, f32>;
    }
    impl Sealed for f32 {
        fn route_f32<J: Job<f32, f32>>(backend: Backend, job: J) -> Routed<J, f32, f32> {
            run_rows(backend, job)
        }
    }
    impl Sealed for half::bf16 {
        fn route_f32<J: Job<Self, f32>>(backend: Backend, job: J) -> Routed<J, Self, f32> {
            run_rows(backend, job)
        }
    }
    impl Sealed for f64 {
        fn route_f32<J: Job<f64, f32>>(_backend: Backend, job: J) -> Routed<J, f64, f32> {
            Routed::Generic(job)
        }
    }
}

/// A storage format for tensor elements: `f32` and `bf16` for models, `f64` for research runs
/// that must not round their output (the deviation study's `f64` format).
pub trait Element:
    Copy + Default + PartialEq + Debug + Send + Sync + 'static + sealed::Sealed
{
    /// Short name, as used in reports (`"f32"`, `"bf16"`).
    const NAME: &'static str;
    /// Bits of significand precision, including the implicit bit.
    const PRECISION: u32;
    /// The largest finite value, as `f64`.
    const LARGEST: f64;
    /// Widens to `f32` (exact for both formats).
    fn to_f32(self) -> f32;
    /// Rounds an `f32` into this format (nearest, ties to even).
    fn from_f32(x: f32) -> Self;
    /// Widens to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Rounds an `f64` into this format, correctly (nearest, ties to even).
    fn from_f64(x: f64) -> Self;
    /// Rounds an `f32` into this format and widens it back: `from_f32(x).to_f32()`. What
    /// FlashAttention-2 does to the probabilities `P` before the `P·V` matmul, when the
    /// accumulator is `f32`. `bf16` overrides it with branch-free integer arithmetic (the same
    /// round-to-nearest-even) that compilers vectorise.
    #[inline(always)]
    fn round_f32(x: f32) -> f32 {
        Self::from_f32(x).to_f32()
    }
    /// Whether the value is neither infinite nor NaN (in this format: an `f64` beyond `f32`'s
    /// range is finite). Checked in `f32` unless the format is wider, so no double-precision code
    /// is needed for `f32` and `bf16`.
    #[inline(always)]
    fn is_finite(self) -> bool {
        if Self::LARGEST > f32::MAX as f64 {
            self.to_f64().is_finite()
        } else {
            self.to_f32().is_finite()
        }
    }
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    const PRECISION: u32 = 24;
    const LARGEST: f64 = f32::MAX as f64;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    const PRECISION: u32 = 53;
    const LARGEST: f64 = f64::MAX;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x as f64
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
}

impl Element for bf16 {
    const NAME: &'static str = "bf16";
    const PRECISION: u32 = 8;
    // 0x7f7f: the largest finite bf16, (2 - 2^-7) * 2^127.
    const LARGEST: f64 = 3.389_531_389_251_535_5e38;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        bf16::to_f32(self) as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        bf16::from_f32(f64_to_f32_round_to_odd(x))
    }
    #[inline(always)]
    fn round_f32(x: f32) -> f32 {
        // Round to nearest, ties to even, on the bit pattern: add half an ulp of bf16 minus one,
        // plus the lowest kept bit (the tie goes to the even neighbour), then truncate. A finite
        // value past bf16's largest rounds to infinity, as `half` does; NaN is kept as it is.
        let bits = x.to_bits();
        let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000;
        if x.is_nan() {
            x
        } else {
            f32::from_bits(rounded)
        }
    }
}

/// Rounds `x` to `f32` with round-to-odd: an inexact result is truncated toward zero and its last
/// bit set. Rounding that result again to any format with at least two fewer significand bits
/// (bf16, f16) gives the correctly rounded value of `x` (Boldo and Melquiond, 2008).
#[inline]
pub fn f64_to_f32_round_to_odd(x: f64) -> f32 {
    let y = x as f32;
    if !x.is_finite() || y as f64 == x {
        return y;
    }
    let mut bits = y.to_bits();
    if (y as f64).abs() > x.abs() {
        // `y` was rounded away from zero; step back toward zero (never below the zero encoding
        // because `y` is non-zero when its magnitude exceeds another number's).
        bits = bits.wrapping_sub(1);
    }
    f32::from_bits(bits | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_round_f32_is_halfs_conversion() {
        // Every 4093rd bit pattern (all exponents, both signs, ties and near-ties in the low bits),
        // plus the edges: the fast path must equal `bf16::from_f32(x).to_f32()`, NaN as NaN.
        // Under Miri every 1048573rd pattern (about 4096): the interpreter is ~1000x slower.
        let step: u32 = if cfg!(miri) { 1_048_573 } else { 4093 };
        let cases = (0..=u32::MAX / step)
            .map(|i| i.wrapping_mul(step) ^ (i & 0xFFFF))
            .chain([
                0x3F80_8000,
                0x3F81_8000,
                0x7F7F_FFFF,
                0x7F7F_8000,
                0xFF7F_8000,
                0x0000_8000,
            ]);
        for b in cases {
            let x = f32::from_bits(b);
            let fast = <bf16 as Element>::round_f32(x);
            let half = bf16::from_f32(x).to_f32();
            if x.is_nan() {
                assert!(fast.is_nan());
            } else {
                assert_eq!(fast.to_bits(), half.to_bits(), "{b:#010x}");
            }
        }
    }

    #[test]
    fn bf16_from_f64_avoids_double_rounding() {
        // 1 + 2^-8 is the midpoint between bf16 1.0 and 1.0078125; adding 2^-40 puts it just above.
        let x = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        // Via a plain f32 cast the tail is lost and the tie rounds to even (1.0): wrong.
        assert_eq!(bf16::from_f32(x as f32), bf16::from_f32(1.0));
        assert_eq!(<bf16 as Element>::from_f64(x), bf16::from_f32(1.0078125));
    }

    #[test]
    fn round_to_odd_keeps_sign_and_nan() {
        assert!(f64_to_f32_round_to_odd(f64::NAN).is_nan());
        assert_eq!(f64_to_f32_round_to_odd(-1e-300).to_bits(), 0x8000_0001);
        // Overflow truncates to the largest finite value; the final rounding then overflows to inf.
        assert_eq!(f64_to_f32_round_to_odd(1e300), f32::MAX);
        assert_eq!(<bf16 as Element>::from_f64(1e300), bf16::INFINITY);
        assert_eq!(f64_to_f32_round_to_odd(0.5), 0.5);
    }
}
