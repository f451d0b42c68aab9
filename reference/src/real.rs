//! [`Real`]: a big binary float at a chosen precision, for computations that need far more than
//! `f64` (differentiating optimizer steps, say), rounded once to `f64` at the end.

use core::cmp::Ordering;
use core::fmt;
use core::iter::Sum;
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use astro_float::{BigFloat, RoundingMode, INF_NEG, INF_POS, NAN};

use crate::bigfloat;
use crate::scalar::CONSTS;

/// Precision of a [`Real`] made without one, in bits.
pub const DEFAULT_PRECISION: usize = 256;

/// Every operation rounds to nearest, ties to even.
const ROUNDING: RoundingMode = RoundingMode::ToEven;

/// A binary floating-point number with a `precision`-bit mantissa (astro-float's `BigFloat`;
/// precisions are rounded up to multiples of 64) and an exponent range of about `±2^31` bits.
///
/// Each arithmetic result is correctly rounded to the larger precision of its operands; `exp`,
/// `ln` and `sqrt` are correctly rounded to the operand's precision. Conversion from `f64` is
/// exact (any precision holds an `f64`) and [`Real::to_f64`] rounds correctly, subnormals
/// included. NaN and infinities propagate as in IEEE 754.
///
/// ```
/// use tessera_reference::Real;
/// let third = Real::new(1.0) / Real::new(3.0);
/// assert_eq!(third.to_f64(), 1.0 / 3.0);
/// // 1e30 + 1 − 1e30 is exact at 256 bits.
/// let x = Real::new(1e30) + Real::new(1.0) - Real::new(1e30);
/// assert_eq!(x.to_f64(), 1.0);
/// assert_eq!(Real::new(1.0).exp().to_f64(), std::f64::consts::E);
/// ```
#[derive(Clone, Debug)]
pub struct Real {
    value: BigFloat,
    precision: usize,
}

impl Real {
    /// `x` exactly, at [`DEFAULT_PRECISION`].
    pub fn new(x: f64) -> Real {
        Real::with_precision(x, DEFAULT_PRECISION)
    }

    /// `x` exactly, carrying `precision` bits (at least 64) into later operations.
    pub fn with_precision(x: f64, precision: usize) -> Real {
        let precision = precision.max(64);
        let value = if x.is_nan() {
            NAN
        } else if x == f64::INFINITY {
            INF_POS
        } else if x == f64::NEG_INFINITY {
            INF_NEG
        } else {
            bigfloat::from_f64(x)
        };
        Real { value, precision }
    }

    /// Wraps a `BigFloat`, rounding it to `precision` bits.
    pub fn from_big_float(value: BigFloat, precision: usize) -> Real {
        let precision = precision.max(64);
        let mut value = value;
        // Only fails for NaN/infinity (which carry no mantissa) or on allocation failure.
        let _ = value.set_precision(precision, ROUNDING);
        Real { value, precision }
    }

    /// The underlying `BigFloat`.
    pub fn as_big_float(&self) -> &BigFloat {
        &self.value
    }

    /// The precision in bits that results of operations on this value get (at least).
    pub fn precision(&self) -> usize {
        self.precision
    }

    /// The same value rounded to `precision` bits, which later operations then use.
    pub fn to_precision(&self, precision: usize) -> Real {
        Real::from_big_float(self.value.clone(), precision)
    }

    /// The value correctly rounded to `f64` (round to nearest, ties to even).
    pub fn to_f64(&self) -> f64 {
        bigfloat::to_f64(&self.value, false)
    }

    /// Whether the value is NaN.
    pub fn is_nan(&self) -> bool {
        self.value.is_nan()
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.value.is_zero()
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.value.is_negative()
    }

    /// `|self|`.
    pub fn abs(&self) -> Real {
        self.with_value(self.value.abs())
    }

    /// `e^self`, correctly rounded.
    pub fn exp(&self) -> Real {
        let p = self.precision;
        self.with_value(CONSTS.with(|c| self.value.exp(p, ROUNDING, &mut c.borrow_mut())))
    }

    /// `ln(self)`, correctly rounded (NaN below zero, `-∞` at zero).
    pub fn ln(&self) -> Real {
        if self.is_negative() {
            return self.with_value(NAN);
        }
        let p = self.precision;
        self.with_value(CONSTS.with(|c| self.value.ln(p, ROUNDING, &mut c.borrow_mut())))
    }

    /// `√self`, correctly rounded (NaN below zero).
    pub fn sqrt(&self) -> Real {
        if self.is_negative() {
            return self.with_value(NAN);
        }
        self.with_value(self.value.sqrt(self.precision, ROUNDING))
    }

    /// `self^n` for an integer `n` (rounded once per multiplication).
    pub fn powi(&self, n: i32) -> Real {
        let power = self.with_value(self.value.powi(
            n.unsigned_abs() as usize,
            self.precision,
            ROUNDING,
        ));
        if n < 0 {
            Real::with_precision(1.0, self.precision) / power
        } else {
            power
        }
    }

    /// `1 / self`, correctly rounded.
    pub fn recip(&self) -> Real {
        Real::with_precision(1.0, self.precision) / self.clone()
    }

    /// The larger of two values (NaN if either is).
    pub fn max(&self, other: &Real) -> Real {
        match self.partial_cmp(other) {
            Some(Ordering::Less) => other.clone(),
            Some(_) => self.clone(),
            None => self.with_value(NAN),
        }
    }

    /// The smaller of two values (NaN if either is).
    pub fn min(&self, other: &Real) -> Real {
        match self.partial_cmp(other) {
            Some(Ordering::Greater) => other.clone(),
            Some(_) => self.clone(),
            None => self.with_value(NAN),
        }
    }

    fn with_value(&self, value: BigFloat) -> Real {
        Real {
            value,
            precision: self.precision,
        }
    }

    /// Applies a rounded binary operation at the larger precision.
    fn binary(
        &self,
        other: &Real,
        op: fn(&BigFloat, &BigFloat, usize, RoundingMode) -> BigFloat,
    ) -> Real {
        let precision = self.precision.max(other.precision);
        Real {
            value: op(&self.value, &other.value, precision, ROUNDING),
            precision,
        }
    }
}

impl Default for Real {
    fn default() -> Self {
        Real::new(0.0)
    }
}

impl From<f64> for Real {
    fn from(x: f64) -> Self {
        Real::new(x)
    }
}

impl From<f32> for Real {
    fn from(x: f32) -> Self {
        Real::new(x as f64)
    }
}

impl From<i32> for Real {
    fn from(x: i32) -> Self {
        Real::new(x as f64)
    }
}

impl fmt::Display for Real {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.value, f)
    }
}

impl PartialEq for Real {
    fn eq(&self, other: &Self) -> bool {
        self.partial_cmp(other) == Some(Ordering::Equal)
    }
}

impl PartialOrd for Real {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        // astro-float's `cmp` returns a signed difference, not -1/0/1.
        self.value.cmp(&other.value).map(|c| c.cmp(&0))
    }
}

impl Neg for Real {
    type Output = Real;
    fn neg(self) -> Real {
        let value = BigFloat::neg(&self.value);
        Real { value, ..self }
    }
}

impl Neg for &Real {
    type Output = Real;
    fn neg(self) -> Real {
        self.with_value(BigFloat::neg(&self.value))
    }
}

/// `Real ∘ Real`, `&Real ∘ &Real`, mixed forms, `Real ∘ f64`, and the `∘=` forms.
macro_rules! binary_op {
    ($trait:ident, $method:ident, $assign_trait:ident, $assign:ident, $big:ident) => {
        impl $trait<&Real> for &Real {
            type Output = Real;
            fn $method(self, other: &Real) -> Real {
                self.binary(other, BigFloat::$big)
            }
        }
        impl $trait<Real> for Real {
            type Output = Real;
            fn $method(self, other: Real) -> Real {
                (&self).$method(&other)
            }
        }
        impl $trait<&Real> for Real {
            type Output = Real;
            fn $method(self, other: &Real) -> Real {
                (&self).$method(other)
            }
        }
        impl $trait<Real> for &Real {
            type Output = Real;
            fn $method(self, other: Real) -> Real {
                self.$method(&other)
            }
        }
        impl $trait<f64> for Real {
            type Output = Real;
            fn $method(self, other: f64) -> Real {
                let other = Real::with_precision(other, self.precision);
                (&self).$method(&other)
            }
        }
        impl $trait<f64> for &Real {
            type Output = Real;
            fn $method(self, other: f64) -> Real {
                self.$method(&Real::with_precision(other, self.precision))
            }
        }
        impl $assign_trait<&Real> for Real {
            fn $assign(&mut self, other: &Real) {
                *self = (&*self).$method(other);
            }
        }
        impl $assign_trait<Real> for Real {
            fn $assign(&mut self, other: Real) {
                *self = (&*self).$method(&other);
            }
        }
        impl $assign_trait<f64> for Real {
            fn $assign(&mut self, other: f64) {
                *self = (&*self).$method(other);
            }
        }
    };
}

binary_op!(Add, add, AddAssign, add_assign, add);
binary_op!(Sub, sub, SubAssign, sub_assign, sub);
binary_op!(Mul, mul, MulAssign, mul_assign, mul);
binary_op!(Div, div, DivAssign, div_assign, div);

impl Sum for Real {
    fn sum<I: Iterator<Item = Real>>(iter: I) -> Real {
        iter.fold(Real::new(0.0), |acc, x| acc + x)
    }
}

impl<'a> Sum<&'a Real> for Real {
    fn sum<I: Iterator<Item = &'a Real>>(iter: I) -> Real {
        iter.fold(Real::new(0.0), |acc, x| acc + x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_rounded_at_the_working_precision() {
        let third = Real::new(1.0) / Real::new(3.0);
        // 1/3 − fl(1/3) = 2^-54 / 3 exactly; at 256 bits the difference is still right to f64.
        assert_eq!((&third - 1.0 / 3.0).to_f64(), 2f64.powi(-54) / 3.0);
        assert!(third != Real::new(1.0 / 3.0));
        // A 64-bit precision loses 2^-70; 256 bits keep it.
        let tiny = 2f64.powi(-70);
        let low = Real::with_precision(1.0, 64) + tiny - 1.0;
        assert!(low.is_zero());
        let high = Real::new(1.0) + tiny - 1.0;
        assert_eq!(high.to_f64(), tiny);
        assert_eq!(
            (Real::with_precision(1.0, 64) + Real::new(tiny)).precision(),
            DEFAULT_PRECISION
        );
    }

    #[test]
    fn elementary_functions_match_f64_where_f64_is_exact_or_correct() {
        assert_eq!(Real::new(2.0).sqrt().to_f64(), std::f64::consts::SQRT_2);
        assert_eq!(Real::new(2.0).ln().to_f64(), std::f64::consts::LN_2);
        assert_eq!(Real::new(-1.0).exp().to_f64(), 0.36787944117144233);
        assert_eq!(Real::new(3.0).powi(-2).to_f64(), 1.0 / 9.0);
        assert_eq!(Real::new(1.5).powi(3).to_f64(), 3.375);
        assert!(Real::new(-1.0).sqrt().is_nan());
        assert!(Real::new(-1.0).ln().is_nan());
        assert_eq!(Real::new(0.0).ln().to_f64(), f64::NEG_INFINITY);
        assert_eq!(Real::new(4.0).recip().to_f64(), 0.25);
    }

    #[test]
    fn conversions_and_ordering() {
        for x in [5e-324, -2.5e-310, f64::MAX, -0.1, 1e300] {
            assert_eq!(Real::new(x).to_f64(), x);
        }
        assert!(Real::new(f64::NAN).is_nan());
        assert_eq!(Real::new(f64::INFINITY).to_f64(), f64::INFINITY);
        assert!(Real::new(1.0) < Real::new(1.0 + f64::EPSILON));
        assert!(Real::new(-3.0) < Real::new(2.0));
        assert!(Real::new(f64::NAN).partial_cmp(&Real::new(1.0)).is_none());
        assert_eq!(Real::new(2.0).max(&Real::new(-3.0)).to_f64(), 2.0);
        assert_eq!(Real::new(2.0).min(&Real::new(-3.0)).to_f64(), -3.0);
        let total: Real = [1e30, 1.0, -1e30].iter().map(|&x| Real::new(x)).sum();
        assert_eq!(total.to_f64(), 1.0);
        assert_eq!((-Real::new(2.0)).to_f64(), -2.0);
    }
}
