//! Elementwise activations of diffusion models: SiLU (the resnet blocks) and GELU (the spatial
//! transformer's GEGLU feed-forward), in place, in `f32`.

use crate::check::length;
use crate::nn::mlp::sigmoid;
use crate::Result;

/// `x ← x·sigmoid(x)` (SiLU, or swish), the same sigmoid as the SwiGLU MLP's.
pub fn silu_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v *= sigmoid(*v);
    }
}

/// GELU, `x·Φ(x) = x/2·(1 + erf(x/√2))` (the exact form, not the tanh approximation).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `x ← gelu(x)` elementwise.
pub fn gelu_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = gelu(*v);
    }
}

/// The GEGLU gate of a transformer feed-forward: `h = a ⊙ gelu(gate)` elementwise.
pub fn geglu_forward(a: &[f32], gate: &[f32], h: &mut [f32]) -> Result<()> {
    length("gate", gate.len(), a.len())?;
    length("h", h.len(), a.len())?;
    for ((hi, &ai), &gi) in h.iter_mut().zip(a).zip(gate) {
        *hi = ai * gelu(gi);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-3.0) + 0.004_049_7).abs() < 1e-6);
        let mut x = [0.0f32, 1.0, -100.0];
        silu_in_place(&mut x);
        assert!(x[0] == 0.0 && (x[1] - 0.731_058_6).abs() < 1e-6 && x[2].abs() < 1e-30);
    }
}
