//! SwiGLU MLP: `y = W_down · (silu(W_gate·x) ⊙ (W_up·x))`, `silu(g) = g·sigmoid(g)`.

use super::linear::{linear_backward_input, linear_backward_weight, linear_matmul, LinearShape};
use super::rounding::ActivationRounding;
use crate::check::{length, mul, split};
use crate::{Element, Result};

#[inline(always)]
pub(crate) fn sigmoid(g: f32) -> f32 {
    // Below -80, `1 + e^-g` is `e^-g` in f32 and overflows below -88.7, which gave 0: `e^g` keeps
    // the subnormal range there (fuzz: nn_blocks). The same bits as before above -80.
    if g < -80.0 {
        libm::expf(g)
    } else {
        1.0 / (1.0 + libm::expf(-g))
    }
}

/// The gated activation `h = silu(gate) ⊙ up`, elementwise.
pub fn swiglu_forward(gate: &[f32], up: &[f32], h: &mut [f32]) -> Result<()> {
    length("up", up.len(), gate.len())?;
    length("h", h.len(), gate.len())?;
    for ((hi, &g), &u) in h.iter_mut().zip(gate).zip(up) {
        *hi = g * sigmoid(g) * u;
    }
    Ok(())
}

/// Backward of [`swiglu_forward`]: `d_up = dh·silu(g)`, `d_gate = dh·u·σ(g)·(1 + g·(1 − σ(g)))`
/// (both overwritten).
pub fn swiglu_backward(
    gate: &[f32],
    up: &[f32],
    dh: &[f32],
    d_gate: &mut [f32],
    d_up: &mut [f32],
) -> Result<()> {
    for (what, len) in [
        ("up", up.len()),
        ("dh", dh.len()),
        ("d_gate", d_gate.len()),
        ("d_up", d_up.len()),
    ] {
        length(what, len, gate.len())?;
    }
    let inputs = gate.iter().zip(up).zip(dh);
    for (((&g, &u), &d), (dg, du)) in inputs.zip(d_gate.iter_mut().zip(d_up.iter_mut())) {
        let s = sigmoid(g);
        *du = d * g * s;
        *dg = d * u * s * (1.0 + g * (1.0 - s));
    }
    Ok(())
}

/// The sizes of a SwiGLU MLP applied to `rows` tokens of `dim` features with `hidden` inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlpShape {
    /// Tokens.
    pub rows: usize,
    /// Features in and out.
    pub dim: usize,
    /// Features inside (the gate and up projections' outputs).
    pub hidden: usize,
}

impl MlpShape {
    /// `rows` tokens of `dim` features through `hidden` inner features.
    pub const fn new(rows: usize, dim: usize, hidden: usize) -> Self {
        MlpShape { rows, dim, hidden }
    }

    /// `rows · hidden`: the length of each inner activation.
    fn inner(&self) -> Result<usize> {
        mul(self.rows, self.hidden)
    }
}

/// The three weight matrices: `gate` and `up` are `[hidden, dim]`, `down` is `[dim, hidden]`.
#[derive(Clone, Copy, Debug)]
pub struct MlpWeights<'a, W> {
    /// `W_gate`.
    pub gate: &'a [W],
    /// `W_up`.
    pub up: &'a [W],
    /// `W_down`.
    pub down: &'a [W],
}

/// The weight gradients the backward pass *adds* into, shaped as [`MlpWeights`].
#[derive(Debug)]
pub struct MlpGradients<'a> {
    /// `dW_gate`.
    pub gate: &'a mut [f32],
    /// `dW_up`.
    pub up: &'a mut [f32],
    /// `dW_down`.
    pub down: &'a mut [f32],
}

/// Floats of scratch [`swiglu_mlp_forward`] needs: `3·rows·hidden` (the pre-activations `gate`
/// and `up`, then `h`).
pub fn swiglu_mlp_scratch_len(shape: MlpShape) -> Result<usize> {
    mul(3, shape.inner()?)
}

/// The SwiGLU MLP `y = W_down · (silu(W_gate·x) ⊙ (W_up·x))` over `shape.rows` tokens (`x` and
/// `y` are `[rows, dim]`). `scratch` holds at least [`swiglu_mlp_scratch_len`] floats; afterwards
/// its first `rows·hidden` floats are the pre-activation `gate` and the next `rows·hidden` are
/// `up`, which [`swiglu_mlp_backward`] takes.
pub fn swiglu_mlp_forward<W: Element>(
    shape: MlpShape,
    weights: &MlpWeights<'_, W>,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let n = shape.inner()?;
    let (gate, rest) = split(scratch, n)?;
    let (up, rest) = split(rest, n)?;
    let (h, _) = split(rest, n)?;
    swiglu_mlp_forward_rounded(shape, weights, x, [gate, up, h], y, ActivationRounding::F32)
}

/// [`swiglu_mlp_forward`] into carved activations `[gate, up, h]` (`[rows, hidden]` each), with
/// `gate`, `up` and `h` rounded by `rounding` right after the op that makes them (`y` is left to
/// the caller, who adds it to the residual).
pub(crate) fn swiglu_mlp_forward_rounded<W: Element>(
    shape: MlpShape,
    weights: &MlpWeights<'_, W>,
    x: &[f32],
    [gate, up, h]: [&mut [f32]; 3],
    y: &mut [f32],
    rounding: ActivationRounding,
) -> Result<()> {
    let MlpShape { rows, dim, hidden } = shape;
    let into = LinearShape::new(rows, dim, hidden);
    linear_matmul(into, x, weights.gate, gate)?;
    linear_matmul(into, x, weights.up, up)?;
    rounding.round(gate);
    rounding.round(up);
    swiglu_forward(gate, up, h)?;
    rounding.round(h);
    linear_matmul(LinearShape::new(rows, hidden, dim), h, weights.down, y)
}

/// Floats of scratch [`swiglu_mlp_backward`] needs: `3·rows·hidden + rows·dim`.
pub fn swiglu_mlp_backward_scratch_len(shape: MlpShape) -> Result<usize> {
    mul(3, shape.inner()?)?
        .checked_add(mul(shape.rows, shape.dim)?)
        .ok_or(crate::Error::Overflow)
}

/// Backward of [`swiglu_mlp_forward`] from its input `x` and saved `(gate, up)`: `dx` is
/// overwritten, weight gradients are *added* into `grads`. `scratch` holds at least
/// [`swiglu_mlp_backward_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_mlp_backward<W: Element>(
    shape: MlpShape,
    weights: &MlpWeights<'_, W>,
    x: &[f32],
    (gate, up): (&[f32], &[f32]),
    dy: &[f32],
    dx: &mut [f32],
    grads: &mut MlpGradients<'_>,
    scratch: &mut [f32],
) -> Result<()> {
    let MlpShape { rows, dim, hidden } = shape;
    let n = shape.inner()?;
    length("gate", gate.len(), n)?;
    let (h, rest) = split(scratch, n)?;
    let (dh, rest) = split(rest, n)?;
    let (dgate, rest) = split(rest, n)?;
    let (dx_up, _) = split(rest, mul(rows, dim)?)?;
    swiglu_forward(gate, up, h)?;
    let down = LinearShape::new(rows, hidden, dim);
    linear_backward_weight(down, h, dy, grads.down)?;
    linear_backward_input(down, dy, weights.down, dh)?;
    // `h` is no longer needed: it becomes d_up.
    let dup = h;
    swiglu_backward(gate, up, dh, dgate, dup)?;
    let into = LinearShape::new(rows, dim, hidden);
    linear_backward_weight(into, x, dgate, grads.gate)?;
    linear_backward_weight(into, x, dup, grads.up)?;
    linear_backward_input(into, dgate, weights.gate, dx)?;
    linear_backward_input(into, dup, weights.up, dx_up)?;
    for (a, &b) in dx.iter_mut().zip(dx_up.iter()) {
        *a += b;
    }
    Ok(())
}
