//! Rotary position embedding (RoPE), half-split form: in each head, feature `i` and `i + h/2`
//! (for `h` the head dimension) are rotated by the angle `pos · theta^(-2i/h)`.

use crate::check::mul;
use crate::{Error, Result};

/// Largest supported head dimension (the per-position angle table lives on the stack).
pub const MAX_HEAD_DIM: usize = 512;

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
    if !head_dim.is_multiple_of(2) || head_dim > MAX_HEAD_DIM {
        return Err(Error::BadParameter(
            "rope head_dim must be even and at most 512",
        ));
    }
    if !(theta.is_finite() && theta > 1.0) {
        return Err(Error::BadParameter("rope theta must be finite and above 1"));
    }
    let row = mul(heads, head_dim)?;
    if !x.len().is_multiple_of(row) {
        return Err(Error::LengthMismatch {
            what: "rope x",
            expected: mul(x.len() / row + 1, row)?,
            actual: x.len(),
        });
    }
    let half = head_dim / 2;
    let mut inv_freq = [0.0f64; MAX_HEAD_DIM / 2];
    for (i, f) in inv_freq.iter_mut().take(half).enumerate() {
        *f = libm::pow(theta as f64, -2.0 * i as f64 / head_dim as f64);
    }
    let mut cos = [0.0f32; MAX_HEAD_DIM / 2];
    let mut sin = [0.0f32; MAX_HEAD_DIM / 2];
    for (t, token) in x.chunks_exact_mut(row).enumerate() {
        let pos = start_pos.checked_add(t).ok_or(Error::Overflow)? as f64;
        let pairs = cos.iter_mut().zip(sin.iter_mut()).zip(&inv_freq);
        for ((c, s), &f) in pairs.take(half) {
            let angle = pos * f;
            *c = libm::cos(angle) as f32;
            *s = (sign * libm::sin(angle)) as f32;
        }
        for head in token.chunks_exact_mut(head_dim) {
            let (a, b) = head.split_at_mut(half);
            for (((x1, x2), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(&cos).zip(&sin) {
                let (u, v) = (*x1, *x2);
                *x1 = u * c - v * s;
                *x2 = u * s + v * c;
            }
        }
    }
    Ok(())
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
