//! Rounding `f32` data to a narrower number format and back: the one place the harness does it.
//!
//! The rounding is the kernels' own ([`ActivationRounding::Bf16`], `half`'s conversion: round to
//! nearest with ties to even, CONVENTIONS 6), so the harness rounds exactly as the kernels' `bf16`
//! element type and their bf16-emulated layers do.

use tessera_kernels::nn::ActivationRounding;

/// Rounds every value to the nearest bf16 (ties to even; NaN stays NaN, values past bf16's range
/// become infinite) and widens it back to `f32`, in place. The result is exact in bf16, f16
/// (within its range), f32 and f64 alike. It makes the bf16 inputs of the studies and of
/// `tessera run --dtype bf16`, and it is the rounding of bf16-emulated training (weights after
/// every update, activations after every op).
pub fn round_bf16(x: &mut [f32]) {
    ActivationRounding::Bf16.round(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_with_ties_to_even() {
        // bf16 keeps 8 significand bits: the step above 1 is 2^-7.
        let step = 2f32.powi(-7);
        let mut x = [
            1.0,
            1.0 + step / 2.0,     // a tie: down to the even 1
            1.0 + 1.5 * step,     // a tie: up to the even 1 + 2 steps
            1.0 + 0.75 * step,    // nearer 1 + step
            -(1.0 + 0.25 * step), // nearer -1
            f32::MAX,             // past bf16's largest finite value
            f32::INFINITY,
            f32::MIN_POSITIVE / 3.0, // a subnormal bf16 keeps only its top bits
        ];
        round_bf16(&mut x);
        assert_eq!(x[..5], [1.0, 1.0, 1.0 + 2.0 * step, 1.0 + step, -1.0]);
        assert_eq!(x[5..7], [f32::INFINITY, f32::INFINITY]);
        assert_eq!(
            x[7].to_bits() & 0xFFFF,
            0,
            "{:e} has bits below bf16's",
            x[7]
        );
        let mut nan = [f32::NAN];
        round_bf16(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn rounded_values_are_fixed_points() {
        let mut x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        round_bf16(&mut x);
        let once = x.clone();
        round_bf16(&mut x);
        assert_eq!(x, once);
        assert!(x.iter().all(|v| v.to_bits() & 0xFFFF == 0));
    }
}
