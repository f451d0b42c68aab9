//! Linear layers without bias: `y = x·Wᵀ` for a weight `W` of shape `[out, in]`.
//!
//! [`linear_matvec`] is one row (decoding one token); [`linear_matmul`] is many rows (prefill,
//! verification, training). Both run the backend's dense primitive (SIMD where the CPU has it),
//! which computes each output the same way, so a row gives the same bits whichever function
//! computes it and however many rows share a call. The backward passes are scalar.

use crate::check::{length, mul};
use crate::rows::{self, Job, RowOps};
use crate::simd::Backend;
use crate::{Element, Result};

/// Rows processed while one weight row stays in L1 (backward passes).
const ROW_BLOCK: usize = 32;

/// The sizes of a linear layer applied to `rows` input rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    /// Input rows (tokens).
    pub rows: usize,
    /// Input features (columns of `W`).
    pub in_dim: usize,
    /// Output features (rows of `W`).
    pub out_dim: usize,
}

impl LinearShape {
    /// `rows` inputs of `in_dim` features mapped to `out_dim` features.
    pub const fn new(rows: usize, in_dim: usize, out_dim: usize) -> Self {
        LinearShape {
            rows,
            in_dim,
            out_dim,
        }
    }

    /// Checks the lengths of `x` (`rows·in`), `w` (`out·in`) and `y` (`rows·out`).
    fn check(&self, x: usize, w: usize, y: usize) -> Result<()> {
        length("x", x, mul(self.rows, self.in_dim)?)?;
        length("w", w, mul(self.out_dim, self.in_dim)?)?;
        length("y", y, mul(self.rows, self.out_dim)?)
    }
}

/// `y += a·w` over the common length.
#[inline(always)]
pub(crate) fn axpy<W: Element>(y: &mut [f32], a: f32, w: &[W]) {
    for (yi, &wi) in y.iter_mut().zip(w) {
        *yi += a * wi.to_f32();
    }
}

/// Matrix-vector product for one token: `y[o] = x·W[o]`, `x` of `in_dim`, `y` of `out_dim`
/// (`shape.rows` must be 1: `Err(BadParameter)` otherwise), on the best backend (see
/// [`linear_matmul_with`]).
pub fn linear_matvec<W: Element>(
    shape: LinearShape,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) -> Result<()> {
    if shape.rows != 1 {
        return Err(crate::Error::BadParameter("linear_matvec takes one row"));
    }
    linear_matmul_with(Backend::Auto, shape, x, w, y)
}

/// Matrix-matrix product `y = x·Wᵀ` for `rows` tokens (`x` is `[rows, in]`, `y` is
/// `[rows, out]`) on the best backend (see [`linear_matmul_with`]).
pub fn linear_matmul<W: Element>(
    shape: LinearShape,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) -> Result<()> {
    linear_matmul_with(Backend::Auto, shape, x, w, y)
}

/// [`linear_matmul`] on a chosen backend. Each output row equals the product of that input row
/// alone, bit for bit, whatever the number of rows (so a batched verification pass gives the
/// logits of one-token decoding). The SIMD backends agree with one another bit for bit (one fused
/// multiply-add chain per output in the canonical 16-lane order); the generic backend rounds
/// products and sums separately and agrees within the usual dot-product bound.
pub fn linear_matmul_with<W: Element>(
    backend: Backend,
    shape: LinearShape,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) -> Result<()> {
    shape.check(x.len(), w.len(), y.len())?;
    if shape.in_dim == 0 || shape.out_dim == 0 {
        y.fill(0.0);
        return Ok(());
    }
    rows::run::<W, f32, _>(
        backend,
        LinearJob {
            in_dim: shape.in_dim,
            x,
            w,
            y,
        },
    )
}

/// The dense product as a backend job.
struct LinearJob<'a, W> {
    in_dim: usize,
    x: &'a [f32],
    w: &'a [W],
    y: &'a mut [f32],
}

impl<W: Element> Job<W, f32> for LinearJob<'_, W> {
    type Output = ();
    #[inline(always)]
    fn run<O: RowOps<W, f32>>(self, ops: O) {
        ops.linear(self.in_dim, self.x, self.w, self.y)
    }
}

/// Gradient with respect to the input: `dx = dy·W` (`dy` is `[rows, out]`, `dx` is `[rows, in]`,
/// overwritten).
pub fn linear_backward_input<W: Element>(
    shape: LinearShape,
    dy: &[f32],
    w: &[W],
    dx: &mut [f32],
) -> Result<()> {
    shape.check(dx.len(), w.len(), dy.len())?;
    let (n_in, n_out) = (shape.in_dim, shape.out_dim);
    dx.fill(0.0);
    if n_in == 0 || n_out == 0 {
        return Ok(());
    }
    let dx_blocks = dx.chunks_mut(ROW_BLOCK * n_in);
    let dy_blocks = dy.chunks(ROW_BLOCK * n_out);
    for (dxb, dyb) in dx_blocks.zip(dy_blocks) {
        for (o, w_row) in w.chunks_exact(n_in).enumerate() {
            for (dx_row, dy_row) in dxb.chunks_exact_mut(n_in).zip(dyb.chunks_exact(n_out)) {
                let g = dy_row.get(o).copied().unwrap_or(0.0);
                if g != 0.0 {
                    axpy(dx_row, g, w_row);
                }
            }
        }
    }
    Ok(())
}

/// Gradient with respect to the weight, *added* into `dw` (`[out, in]`): `dW += dyᵀ·x`.
pub fn linear_backward_weight(
    shape: LinearShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<()> {
    shape.check(x.len(), dw.len(), dy.len())?;
    let (n_in, n_out) = (shape.in_dim, shape.out_dim);
    if n_in == 0 || n_out == 0 {
        return Ok(());
    }
    for (xb, dyb) in x.chunks(ROW_BLOCK * n_in).zip(dy.chunks(ROW_BLOCK * n_out)) {
        for (o, dw_row) in dw.chunks_exact_mut(n_in).enumerate() {
            for (x_row, dy_row) in xb.chunks_exact(n_in).zip(dyb.chunks_exact(n_out)) {
                let g = dy_row.get(o).copied().unwrap_or(0.0);
                if g != 0.0 {
                    axpy(dw_row, g, x_row);
                }
            }
        }
    }
    Ok(())
}
