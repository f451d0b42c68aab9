//! Elementary operations, each correctly rounded to `f64`: dot product, sum, `exp`.

use std::cell::RefCell;

use astro_float::{Consts, RoundingMode};

use crate::bigfloat::{from_f64, to_f64};
use crate::kulisch::ExactAccumulator;

/// The exact dot product `Σ a_i·b_i`, correctly rounded to `f64`.
///
/// NaN and infinite inputs follow IEEE 754 (a NaN or `0 · ∞` term gives NaN, infinities of both
/// signs give NaN, otherwise an infinity wins); an exact sum beyond `f64::MAX` rounds to infinity.
///
/// # Panics
/// If the slices have different lengths.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = ExactAccumulator::new();
    acc.add_dot(a, b);
    acc.to_f64()
}

/// The exact sum `Σ x_i`, correctly rounded to `f64` (IEEE 754 rules for NaN and infinities).
pub fn sum(x: &[f64]) -> f64 {
    let mut acc = ExactAccumulator::new();
    for &v in x {
        acc.add(v);
    }
    acc.to_f64()
}

thread_local! {
    /// astro-float's cache of constants (π, ln 2, ...), one per thread.
    pub(crate) static CONSTS: RefCell<Consts> =
        RefCell::new(Consts::new().expect("astro-float constants"));
}

/// Bits of the `exp` approximation that [`exp`] rounds.
const EXP_BITS: usize = 256;

/// `e^x` correctly rounded to `f64` (subnormal and overflowing results included).
///
/// `e^x` is transcendental for every `x != 0`, so it is never an `f64` nor a midpoint between
/// two; the hardest `f64` arguments (Lefèvre and Muller's search) put it within about `2^-(53+60)`
/// relative of a midpoint, far above the `2^-256` of the truncated approximation rounded here.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    // Beyond these the result is certainly infinite or zero (e^710 > MAX, e^-746 < 2^-1075).
    if x > 710.0 {
        return f64::INFINITY;
    }
    if x < -746.0 {
        return 0.0;
    }
    let y = CONSTS.with(|c| from_f64(x).exp(EXP_BITS, RoundingMode::ToZero, &mut c.borrow_mut()));
    to_f64(&y, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_known_values() {
        assert_eq!(exp(1.0), std::f64::consts::E);
        assert_eq!(exp(-745.1), 5e-324);
        assert_eq!(exp(-746.0), 0.0);
        assert_eq!(exp(709.0), 8.218407461554972e307);
        assert_eq!(exp(710.0), f64::INFINITY);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn dot_and_sum() {
        assert_eq!(dot(&[1e30, 1.0, -1e30], &[1.0, 1.0, 1.0]), 1.0);
        assert_eq!(sum(&[0.1, 0.2, -0.3]), 2.7755575615628914e-17);
        assert_eq!(sum(&[]), 0.0);
    }
}
