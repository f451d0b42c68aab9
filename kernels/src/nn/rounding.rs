//! How a layer forward stores the activations its ops produce: exactly in `f32`, or rounded to
//! bf16 to emulate bf16 training while keeping the math inside every op in `f32`.

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
        }
    }
}
