//! The precision of attention written op by op on bf16 (or fp16) tensors, as a framework runs it
//! eagerly: `softmax(q @ k.T * scale) @ v`.
//!
//! Each op reads and writes a tensor in the storage format, and computes inside in `f32`: a matmul
//! accumulates in `f32` and rounds its result once; softmax widens its input, computes the max,
//! `exp(x - max)`, their sum and the quotients in `f32`, and rounds the probabilities once.
//! With the baseline kernel that is: the scaled logits rounded to the format, the probabilities
//! rounded, `P·V` accumulated in `f32` and rounded once. The exponentials and the row sum are
//! never stored, so they stay in `f32`.
//!
//! The type holds an `f32`. Addition, subtraction, `exp` and `max` are `f32`'s (softmax's and the
//! matmuls' internal arithmetic); a product or a quotient is rounded to the storage format, because
//! in the baseline kernel those are exactly the values an eager framework stores: the logits
//! times the scale, and `exp / sum`. The reductions (`Wide = f32`) are rounded to nothing here and
//! once to the storage format when the output is stored. Only the baseline kernel is modelled:
//! flash attention run with this type is not a kernel anyone ships.
//!
//! One difference from the eager expression: the scale is applied to the `f32` dot product before
//! its one rounding, where `(q @ k.T) * scale` rounds twice. For a power-of-two scale (head_dim 64
//! or 256, scale 1/8 or 1/16) the two are the same value.

use super::formats::{sealed::Sealed, Accumulator};
use crate::element::{f64_to_f32_round_to_odd, Element};
use half::{bf16, f16};

macro_rules! eager_accumulator {
    ($(#[$doc:meta])* $name:ident, $half:ty, $label:literal, $max:expr, $u:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
        pub struct $name(f32);

        impl $name {
            /// Rounds an exact (or `f64`-rounded, see the emulated accumulators) result to the
            /// storage format.
            #[inline(always)]
            fn stored(x: f64) -> Self {
                $name(<$half>::from_f32(f64_to_f32_round_to_odd(x)).to_f32())
            }
            /// The value as `f32` (exact).
            pub fn to_f32(self) -> f32 {
                self.0
            }
        }

        impl Sealed for $name {}

        impl Accumulator for $name {
            const NAME: &'static str = $label;
            const ZERO: Self = $name(0.0);
            const ONE: Self = $name(1.0);
            const NEG_INFINITY: Self = $name(f32::NEG_INFINITY);
            const MAX: Self = $name($max);
            const UNIT_ROUNDOFF: f64 = $u;
            type Wide = f32;
            const NARROWS: bool = true;
            #[inline(always)]
            fn from_f32(x: f32) -> Self {
                $name(x)
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                $name(x as f32)
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
                $name(self.0 + rhs.0)
            }
            #[inline(always)]
            fn sub(self, rhs: Self) -> Self {
                $name(self.0 - rhs.0)
            }
            #[inline(always)]
            fn mul(self, rhs: Self) -> Self {
                Self::stored(self.0 as f64 * rhs.0 as f64)
            }
            #[inline(always)]
            fn div(self, rhs: Self) -> Self {
                Self::stored(self.0 as f64 / rhs.0 as f64)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $name(libm::expf(self.0))
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

eager_accumulator!(
    /// Eager bf16 attention (`softmax(q @ k.T * scale) @ v` on bf16 tensors) for the baseline
    /// kernel: the deviation study's `bf16-ops` model. See the module docs (`accumulator::eager`).
    Bf16Ops,
    bf16,
    "bf16-ops",
    3.389_531_4e38, // bf16::MAX
    0.00390625 // 2^-8
);

eager_accumulator!(
    /// Eager fp16 attention for the baseline kernel (`fp16-ops`), as [`Bf16Ops`].
    F16Ops,
    f16,
    "f16-ops",
    65504.0, // f16::MAX
    0.00048828125 // 2^-11
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_stay_f32_products_and_quotients_are_stored() {
        let one = Bf16Ops::ONE;
        let tiny = Bf16Ops::from_f32(2f32.powi(-12));
        // An f32 sum keeps 1 + 2^-12; bf16 (8 bits) would not.
        assert_eq!(one.add(tiny).to_f64(), 1.0 + 2f64.powi(-12));
        // A product is stored: 3 * (1 + 2^-12) rounds to 3 in bf16.
        assert_eq!(Bf16Ops::from_f32(3.0).mul(one.add(tiny)).to_f64(), 3.0);
        // A quotient too: 1/3 to the nearest bf16.
        let third = one.div(Bf16Ops::from_f32(3.0));
        assert_eq!(third.to_f64(), bf16::from_f64(1.0 / 3.0).to_f64());
        assert_eq!(
            F16Ops::ONE.div(F16Ops::from_f32(3.0)).to_f64(),
            f16::from_f64(1.0 / 3.0).to_f64()
        );
        // exp is f32's.
        assert_eq!(one.exp().to_f64(), libm::expf(1.0) as f64);
    }
}
