//! Rotary position embedding (RoPE), half-split form: in each head, feature `i` and `i + h/2`
//! (for `h` the head dimension) are rotated by the angle `pos · theta^(-2i/h)`.

use crate::check::mul;
use crate::{Error, Result};
use core::num::NonZeroUsize;

fn rotate(
    heads: usize,
    head_dim: usize,
    start_pos: usize,
    theta: f32,
    x: &mut [f32],
    sign: f64,
) -> Result<()> {
    if heads == 0 || head_dim == 0 {
        return Err(Error::ZeroDimension("heads/head_dim"));
    }
    if !head_dim.is_multiple_of(2) {
        return Err(Error::BadParameter("rope head_dim must be even"));
    }
    if !(theta.is_finite() && theta > 1.0) {
        return Err(Error::BadParameter("rope theta must be finite and above 1"));
    }
    // Positive (both factors are): a divisor the compiler can see is non-zero.
    let row = NonZeroUsize::new(mul(heads, head_dim)?).ok_or(Error::ZeroDimension("heads"))?;
    if !x.len().is_multiple_of(row.get()) {
        return Err(Error::LengthMismatch {
            what: "rope x",
            expected: mul(x.len() / row + 1, row.get())?,
            actual: x.len(),
        });
    }
    let half = head_dim / 2;
    start_pos
        .checked_add(x.len() / row)
        .ok_or(Error::Overflow)?;
    // No table: pair `i`'s frequency is computed once per call and each angle where it is used,
    // so the stack frame does not grow with the head dimension (a firmware task may have 2 KB).
    for i in 0..half {
        let inv_freq = libm::pow(theta as f64, -2.0 * i as f64 / head_dim as f64);
        for (t, token) in x.chunks_exact_mut(row.get()).enumerate() {
            let angle = (start_pos + t) as f64 * inv_freq;
            let (c, s) = cos_sin(angle);
            let (c, s) = (c as f32, (sign * s) as f32);
            for head in token.chunks_exact_mut(head_dim.max(1)) {
                if let (Some(&u), Some(&v)) = (head.get(i), head.get(i + half)) {
                    let (x1, x2) = (u * c - v * s, u * s + v * c);
                    if let Some(p) = head.get_mut(i) {
                        *p = x1;
                    }
                    if let Some(p) = head.get_mut(i + half) {
                        *p = x2;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `(cos x, sin x)` for `0 <= x < 2^52`, reduced to `[-π/4, π/4]` here so that `libm`'s `sin` and
/// `cos` take their direct path: their general argument reduction (`rem_pio2`) reserves a 720-byte
/// stack frame on a Cortex-M, a third of a firmware task's budget. `fmod` is exact; `2π` and
/// `π/2` as `f64` put the reduced angle within about `1e-16 · x / 2π` of the exact one, far
/// below the `f32` results' resolution.
fn cos_sin(x: f64) -> (f64, f64) {
    use core::f64::consts::{FRAC_PI_2, TAU};
    let r = libm::fmod(x, TAU);
    let k = libm::round(r / FRAC_PI_2);
    let t = r - k * FRAC_PI_2;
    let (s, c) = (libm::sin(t), libm::cos(t));
    match (k as i32).rem_euclid(4) {
        0 => (c, s),
        1 => (-s, c),
        2 => (-c, -s),
        _ => (s, -c),
    }
}

/// Rotates `x` (`[tokens, heads, head_dim]`, token `t` at position `start_pos + t`) in place.
pub fn rope_forward(
    heads: usize,
    head_dim: usize,
    start_pos: usize,
    theta: f32,
    x: &mut [f32],
) -> Result<()> {
    rotate(heads, head_dim, start_pos, theta, x, 1.0)
}

/// Backward of [`rope_forward`]: rotating the gradient by the opposite angle (a rotation's
/// transpose is its inverse), in place.
pub fn rope_backward(
    heads: usize,
    head_dim: usize,
    start_pos: usize,
    theta: f32,
    dx: &mut [f32],
) -> Result<()> {
    rotate(heads, head_dim, start_pos, theta, dx, -1.0)
}
