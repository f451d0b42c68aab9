//! How a layer forward stores the activations its ops produce: exactly in `f32`, or rounded to
//! bf16 or fp16 to emulate low-precision training while keeping the math inside every op in `f32`.

/// The number format of the activations a layer forward produces. Every op's output is rounded
/// once, right after the op; the math inside the op stays `f32`.
///
/// [`ActivationRounding::F32`] rounds nothing: a forward with it gives the same bits as one
/// without the hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ActivationRounding {
    /// Keep every activation in `f32`.
    #[default]
    F32,
    /// Round every activation to the nearest bf16 (ties to even), kept as `f32`.
    Bf16,
    /// Round every activation to the nearest IEEE fp16 (ties to even; values past fp16's largest
    /// finite value, 65504, become infinite, and small ones lose bits to fp16's subnormals), kept
    /// as `f32`.
    F16,
}

impl ActivationRounding {
    /// Rounds every value of `x` in place to this format.
    #[inline]
    pub fn round(self, x: &mut [f32]) {
        match self {
            ActivationRounding::F32 => {}
            ActivationRounding::Bf16 => {
                for v in x {
                    *v = half::bf16::from_f32(*v).to_f32();
                }
            }
            ActivationRounding::F16 => {
                for v in x {
                    *v = half::f16::from_f32(*v).to_f32();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ActivationRounding;

    #[test]
    fn f16_rounds_to_nearest_even_and_overflows_to_infinity() {
        // fp16 keeps 11 significand bits: the step above 1 is 2^-10.
        let step = 1.0 / 1024.0;
        let mut x = [
            1.0 + step / 2.0, // a tie: down to the even 1
            1.0 + 1.5 * step, // a tie: up to the even 1 + 2 steps
            65504.0,
            65520.0, // halfway to the next binade's first value: rounds to infinity
            -1e6,
        ];
        ActivationRounding::F16.round(&mut x);
        assert_eq!(x[..3], [1.0, 1.0 + 2.0 * step, 65504.0]);
        assert_eq!(x[3..], [f32::INFINITY, f32::NEG_INFINITY]);
    }
}
