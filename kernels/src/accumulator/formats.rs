//! The `Accumulator` trait, the native formats (`f32`, `f64`) and the emulated bf16/fp16 ones.

use crate::element::{f64_to_f32_round_to_odd, Element};
use core::fmt::Debug;
use half::{bf16, f16};

pub(super) mod sealed {
    use crate::rows::{Job, Routed};
    use crate::simd::Backend;
    use crate::Element;

    /// Closes `Accumulator` to the formats here, and routes each one's jobs: only `f32` has SIMD
    /// backends (through its element type); the others run on the generic one.
    pub trait Sealed: Sized {
        fn route<E: Element, J: Job<E, Self>>(_backend: Backend, job: J) -> Routed<J, E, Self> {
            Routed::Generic(job)
        }
    }
    impl Sealed for f32 {
        fn route<E: Element, J: Job<E, f32>>(backend: Backend, job: J) -> Routed<J, E, f32> {
            E::route_f32(backend, job)
        }
    }
    impl Sealed for f64 {}
    impl Sealed for super::Bf16Acc {}
    impl Sealed for super::F16Acc {}
    impl Sealed for super::Bf16Mma {}
    impl Sealed for super::F16Mma {}
}

/// A number format for intermediate results, with its arithmetic.
///
/// Every operation returns the exact result rounded once to the format (round to nearest, ties to
/// even). `exp` is `libm`'s, rounded once more into the format. `max` ignores a NaN operand, like
/// `f32::max`; NaN still reaches the output of attention through `exp` and the sums.
pub trait Accumulator:
    Copy + PartialOrd + Debug + Default + Send + Sync + 'static + sealed::Sealed
{
    /// Short name, as used in reports (`"f32"`, `"bf16"`, `"f16"`, `"f64"`).
    const NAME: &'static str;
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Negative infinity (the running maximum before any key).
    const NEG_INFINITY: Self;
    /// The largest finite value.
    const MAX: Self;
    /// Unit roundoff `u = 2^-p` for `p` significand bits.
    const UNIT_ROUNDOFF: f64;
    /// The format the reductions inside one primitive (a dot product, the sum of a row of
    /// probabilities, the `p·V` of a key tile) run in before their result is rounded once to
    /// `Self`. `Self` for the production formats and for "every operation rounded" emulation;
    /// `f32` for the matrix-unit model (bf16/fp16 tensors, f32 accumulation inside each matmul).
    type Wide: Accumulator;
    /// Whether `Wide` differs from `Self` (reductions are rounded once at their end).
    const NARROWS: bool;
    /// Rounds an `f32` into the format.
    fn from_f32(x: f32) -> Self;
    /// Rounds an `f64` into the format.
    fn from_f64(x: f64) -> Self;
    /// The value as `f64` (exact).
    fn to_f64(self) -> f64;
    /// Rounds a storage element into the format.
    #[inline(always)]
    fn from_element<E: Element>(e: E) -> Self {
        // Compile-time choice: `f32` and `bf16` widen exactly to `f32`; `f64` elements need `f64`.
        if E::PRECISION > 24 {
            Self::from_f64(e.to_f64())
        } else {
            Self::from_f32(e.to_f32())
        }
    }
    /// Rounds the value into a storage format.
    fn to_element<E: Element>(self) -> E;
    /// The value rounded to the storage format `E` and held again in this format:
    /// `from_element(to_element::<E>())`, the identity when `E` is at least as precise. Flash
    /// attention stores its probabilities this way before `P·V`, as FlashAttention-2 converts `P`
    /// to the element type for its second matmul.
    #[inline(always)]
    fn round_to<E: Element>(self) -> Self {
        Self::from_element(self.to_element::<E>())
    }
    /// `self + rhs`, rounded.
    fn add(self, rhs: Self) -> Self;
    /// `self - rhs`, rounded.
    fn sub(self, rhs: Self) -> Self;
    /// `self * rhs`, rounded.
    fn mul(self, rhs: Self) -> Self;
    /// `self / rhs`, rounded.
    fn div(self, rhs: Self) -> Self;
    /// `e^self`, rounded.
    fn exp(self) -> Self;
    /// The larger operand; a NaN operand is ignored.
    fn max(self, rhs: Self) -> Self;
    /// Whether the value is neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// Whether the value is NaN.
    fn is_nan(self) -> bool;
    /// The value in the wide format (exact).
    #[inline(always)]
    fn widen(self) -> Self::Wide {
        <Self::Wide as Accumulator>::from_f64(self.to_f64())
    }
    /// Rounds a wide value into the format.
    #[inline(always)]
    fn narrow(wide: Self::Wide) -> Self {
        Self::from_f64(wide.to_f64())
    }
    /// Rounds an `f64` into the format, clamping finite values beyond the range to `±MAX`.
    #[inline]
    fn saturating_from_f64(x: f64) -> Self {
        let max = Self::MAX.to_f64();
        if x > max {
            Self::MAX
        } else if x < -max {
            Self::ZERO.sub(Self::MAX)
        } else {
            Self::from_f64(x)
        }
    }
}

impl Accumulator for f32 {
    const NAME: &'static str = "f32";
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const MAX: Self = f32::MAX;
    const UNIT_ROUNDOFF: f64 = 5.960_464_477_539_063e-8; // 2^-24
    type Wide = f32;
    const NARROWS: bool = false;
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(wide: f32) -> Self {
        wide
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn to_element<E: Element>(self) -> E {
        E::from_f32(self)
    }
    #[inline(always)]
    fn round_to<E: Element>(self) -> Self {
        if E::PRECISION >= 24 {
            self
        } else {
            E::round_f32(self)
        }
    }
    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        self + rhs
    }
    #[inline(always)]
    fn sub(self, rhs: Self) -> Self {
        self - rhs
    }
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        self * rhs
    }
    #[inline(always)]
    fn div(self, rhs: Self) -> Self {
        self / rhs
    }
    #[inline(always)]
    fn exp(self) -> Self {
        libm::expf(self)
    }
    #[inline(always)]
    fn max(self, rhs: Self) -> Self {
        f32::max(self, rhs)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Accumulator for f64 {
    const NAME: &'static str = "f64";
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const MAX: Self = f64::MAX;
    const UNIT_ROUNDOFF: f64 = 1.110_223_024_625_156_5e-16; // 2^-53
    type Wide = f64;
    const NARROWS: bool = false;
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
    #[inline(always)]
    fn narrow(wide: f64) -> Self {
        wide
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn to_element<E: Element>(self) -> E {
        E::from_f64(self)
    }
    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        self + rhs
    }
    #[inline(always)]
    fn sub(self, rhs: Self) -> Self {
        self - rhs
    }
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        self * rhs
    }
    #[inline(always)]
    fn div(self, rhs: Self) -> Self {
        self / rhs
    }
    #[inline(always)]
    fn exp(self) -> Self {
        libm::exp(self)
    }
    #[inline(always)]
    fn max(self, rhs: Self) -> Self {
        f64::max(self, rhs)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// Defines an emulated low-precision accumulator: the value is kept as an `f32` that is always
/// exactly representable in the target format, and every result is computed in `f64` and rounded
/// once into that format. `f64` has more than `2p + 2` bits for both BF16 (p = 8) and FP16
/// (p = 11), so the intermediate `f64` rounding of `+ - * /` is innocuous (Figueroa, 1995).
macro_rules! emulated_accumulator {
    ($(#[$doc:meta])* $name:ident, $half:ty, $label:literal, $max:expr, $u:expr, $wide:ty, $narrows:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
        pub struct $name(f32);

        impl $name {
            #[inline(always)]
            fn round(x: f64) -> Self {
                $name(<$half>::from_f32(f64_to_f32_round_to_odd(x)).to_f32())
            }
            /// The value as `f32` (exact).
            pub fn to_f32(self) -> f32 {
                self.0
            }
        }

        impl Accumulator for $name {
            const NAME: &'static str = $label;
            const ZERO: Self = $name(0.0);
            const ONE: Self = $name(1.0);
            const NEG_INFINITY: Self = $name(f32::NEG_INFINITY);
            const MAX: Self = $name($max);
            const UNIT_ROUNDOFF: f64 = $u;
            type Wide = $wide;
            const NARROWS: bool = $narrows;
            #[inline(always)]
            fn from_f32(x: f32) -> Self {
                $name(<$half>::from_f32(x).to_f32())
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                Self::round(x)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self.0 as f64
            }
            #[inline(always)]
            fn to_element<E: Element>(self) -> E {
                E::from_f32(self.0)
            }
            #[inline(always)]
            fn add(self, rhs: Self) -> Self {
                Self::round(self.0 as f64 + rhs.0 as f64)
            }
            #[inline(always)]
            fn sub(self, rhs: Self) -> Self {
                Self::round(self.0 as f64 - rhs.0 as f64)
            }
            #[inline(always)]
            fn mul(self, rhs: Self) -> Self {
                Self::round(self.0 as f64 * rhs.0 as f64)
            }
            #[inline(always)]
            fn div(self, rhs: Self) -> Self {
                Self::round(self.0 as f64 / rhs.0 as f64)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                Self::round(libm::exp(self.0 as f64))
            }
            #[inline(always)]
            fn max(self, rhs: Self) -> Self {
                $name(f32::max(self.0, rhs.0))
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                self.0.is_finite()
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                self.0.is_nan()
            }
        }
    };
}

emulated_accumulator!(
    /// Emulated BF16, every operation rounded: each add, multiply, divide and exp, including those
    /// inside dot products and sums, is rounded to BF16 (8 significand bits).
    Bf16Acc,
    bf16,
    "bf16",
    3.389_531_4e38, // bf16::MAX
    0.00390625, // 2^-8
    Bf16Acc,
    false
);

emulated_accumulator!(
    /// Emulated FP16, every operation rounded (11 significand bits).
    F16Acc,
    f16,
    "f16",
    65504.0, // f16::MAX
    0.00048828125, // 2^-11
    F16Acc,
    false
);

emulated_accumulator!(
    /// Emulated BF16 on a matrix unit: every stored intermediate (logits, probabilities, running
    /// max, sum and output) is rounded to BF16, but the reductions inside one primitive (a dot
    /// product, a tile's row sum, a tile's `p·V`) accumulate in `f32` and are rounded once, as
    /// tensor-core MMA instructions and `torch.matmul` on bf16 tensors do.
    Bf16Mma,
    bf16,
    "bf16-mma",
    3.389_531_4e38, // bf16::MAX
    0.00390625, // 2^-8
    f32,
    true
);

emulated_accumulator!(
    /// Emulated FP16 on a matrix unit: as [`Bf16Mma`], with FP16 storage.
    F16Mma,
    f16,
    "f16-mma",
    65504.0, // f16::MAX
    0.00048828125, // 2^-11
    f32,
    true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_ops_round_every_result() {
        let a = Bf16Acc::from_f32(1.0);
        let tiny = Bf16Acc::from_f32(2f32.powi(-9));
        // 1 + 2^-9 is below the bf16 half-ulp of 1 (2^-8): it rounds back to 1.
        assert_eq!(a.add(tiny), a);
        let h = F16Acc::from_f32(1.0);
        let t = F16Acc::from_f32(2f32.powi(-10));
        assert_eq!(h.add(t).to_f64(), 1.0 + 2f64.powi(-10));
        assert_eq!(F16Acc::from_f32(70000.0).to_f64(), f64::INFINITY);
        assert_eq!(F16Acc::saturating_from_f64(1e9), F16Acc::MAX);
        assert_eq!(Bf16Acc::MAX.to_f64(), bf16::MAX.to_f64());
    }

    #[test]
    fn max_ignores_nan_like_f32() {
        assert_eq!(Accumulator::max(f32::NAN, 1.0), 1.0);
        assert_eq!(Bf16Acc::NEG_INFINITY.max(Bf16Acc::ONE), Bf16Acc::ONE);
    }
}
