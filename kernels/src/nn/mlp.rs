//! SwiGLU MLP: `y = W_down · (silu(W_gate·x) ⊙ (W_up·x))`, `silu(g) = g·sigmoid(g)`.

use super::linear::{linear_backward_input, linear_backward_weight, linear_matmul, LinearShape};
use super::rounding::ActivationRounding;
use crate::check::{length, mul, split};
use crate::{Element, Result};

#[inline(always)]
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-g))
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

/// The SwiGLU MLP over `rows` tokens of `dim` features with `hidden` features inside.
/// `w_gate`, `w_up` are `[hidden, dim]`, `w_down` is `[dim, hidden]`. The caller keeps the
/// pre-activations `gate` and `up` (`[rows, hidden]` each, written here) for the backward pass;
/// `h` (`[rows, hidden]`) is working space.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_mlp_forward<W: Element>(
    rows: usize,
    dim: usize,
    hidden: usize,
    x: &[f32],
    w_gate: &[W],
    w_up: &[W],
    w_down: &[W],
    gate: &mut [f32],
    up: &mut [f32],
    h: &mut [f32],
    y: &mut [f32],
) -> Result<()> {
    swiglu_mlp_forward_rounded(
        rows,
        dim,
        hidden,
        x,
        [w_gate, w_up, w_down],
        gate,
        up,
        h,
        y,
        ActivationRounding::F32,
    )
}

/// [`swiglu_mlp_forward`] with its activations `gate`, `up` and `h` rounded by `rounding` right
/// after the op that makes them (`y` is left to the caller, who adds it to the residual).
/// `weights` is `[w_gate, w_up, w_down]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn swiglu_mlp_forward_rounded<W: Element>(
    rows: usize,
    dim: usize,
    hidden: usize,
    x: &[f32],
    weights: [&[W]; 3],
    gate: &mut [f32],
    up: &mut [f32],
    h: &mut [f32],
    y: &mut [f32],
    rounding: ActivationRounding,
) -> Result<()> {
    let [w_gate, w_up, w_down] = weights;
    let into = LinearShape::new(rows, dim, hidden);
    linear_matmul(into, x, w_gate, gate)?;
    linear_matmul(into, x, w_up, up)?;
    rounding.round(gate);
    rounding.round(up);
    swiglu_forward(gate, up, h)?;
    rounding.round(h);
    linear_matmul(LinearShape::new(rows, hidden, dim), h, w_down, y)
}

/// Floats of scratch [`swiglu_mlp_backward`] needs: `3·rows·hidden + rows·dim`.
pub fn swiglu_mlp_backward_scratch_len(rows: usize, dim: usize, hidden: usize) -> Result<usize> {
    mul(3, mul(rows, hidden)?)?
        .checked_add(mul(rows, dim)?)
        .ok_or(crate::Error::Overflow)
}

/// Backward of [`swiglu_mlp_forward`] from its input `x` and saved `gate`, `up`: `dx` is
/// overwritten, weight gradients are *added* into `dw_gate`, `dw_up`, `dw_down`. `scratch` holds
/// at least [`swiglu_mlp_backward_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_mlp_backward<W: Element>(
    rows: usize,
    dim: usize,
    hidden: usize,
    x: &[f32],
    w_gate: &[W],
    w_up: &[W],
    w_down: &[W],
    gate: &[f32],
    up: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dw_gate: &mut [f32],
    dw_up: &mut [f32],
    dw_down: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let n = mul(rows, hidden)?;
    length("gate", gate.len(), n)?;
    let (h, rest) = split(scratch, n)?;
    let (dh, rest) = split(rest, n)?;
    let (dgate, rest) = split(rest, n)?;
    let (dx_up, _) = split(rest, mul(rows, dim)?)?;
    swiglu_forward(gate, up, h)?;
    let down = LinearShape::new(rows, hidden, dim);
    linear_backward_weight(down, h, dy, dw_down)?;
    linear_backward_input(down, dy, w_down, dh)?;
    // `h` is no longer needed: it becomes d_up.
    let dup = h;
    swiglu_backward(gate, up, dh, dgate, dup)?;
    let into = LinearShape::new(rows, dim, hidden);
    linear_backward_weight(into, x, dgate, dw_gate)?;
    linear_backward_weight(into, x, dup, dw_up)?;
    linear_backward_input(into, dgate, w_gate, dx)?;
    linear_backward_input(into, dup, w_up, dx_up)?;
    for (a, &b) in dx.iter_mut().zip(dx_up.iter()) {
        *a += b;
    }
    Ok(())
}
