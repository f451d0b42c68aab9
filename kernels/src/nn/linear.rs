//! Linear layers without bias: `y = x·Wᵀ` for a weight `W` of shape `[out, in]`.
//!
//! [`linear_matvec`] is one row (decoding one token); [`linear_matmul`] is many rows (prefill,
//! verification, training). Both compute each output with the same [`dot`] in the same order, so
//! a row gives the same bits whichever function computes it and however many rows share a call.

use super::{check_len, mul};
use crate::{Element, Result};

/// Lanes of the dot product's partial sums (one AVX-512 register, four SSE registers).
const LANES: usize = 16;
/// Rows of `x` processed while one weight row stays in L1.
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
        check_len("x", x, mul(self.rows, self.in_dim)?)?;
        check_len("w", w, mul(self.out_dim, self.in_dim)?)?;
        check_len("y", y, mul(self.rows, self.out_dim)?)
    }
}

/// `sum_i x[i]·w[i]` in `f32`: sixteen interleaved partial sums, combined pairwise, then the tail
/// in order. The order depends only on the length, never on the caller.
#[inline(always)]
pub(crate) fn dot<W: Element>(x: &[f32], w: &[W]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let xc = x.chunks_exact(LANES);
    let wc = w.chunks_exact(LANES);
    let (xt, wt) = (xc.remainder(), wc.remainder());
    for (a, b) in xc.zip(wc) {
        for (s, (&xa, &wb)) in acc.iter_mut().zip(a.iter().zip(b)) {
            *s += xa * wb.to_f32();
        }
    }
    finish(acc, xt, wt)
}

/// The end of [`dot`]: pairwise halving of the partial sums plus the in-order tail.
#[inline(always)]
fn finish<W: Element>(mut acc: [f32; LANES], xt: &[f32], wt: &[W]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        let (lo, hi) = acc.split_at_mut(width);
        for (l, &h) in lo.iter_mut().zip(hi.iter()) {
            *l += h;
        }
        width /= 2;
    }
    let mut tail = 0.0f32;
    for (&xa, &wb) in xt.iter().zip(wt) {
        tail += xa * wb.to_f32();
    }
    acc[0] + tail
}

/// [`dot`] of four rows against one weight row, each row with exactly `dot`'s operations in
/// `dot`'s order (so the bits are the same), but every weight chunk loaded once for all four.
#[inline(always)]
fn dot4<W: Element>(x: [&[f32]; 4], w: &[W]) -> [f32; 4] {
    let mut acc = [[0.0f32; LANES]; 4];
    let chunks = x[0]
        .chunks_exact(LANES)
        .zip(x[1].chunks_exact(LANES))
        .zip(x[2].chunks_exact(LANES).zip(x[3].chunks_exact(LANES)))
        .zip(w.chunks_exact(LANES));
    for (((a0, a1), (a2, a3)), b) in chunks {
        let mut wf = [0.0f32; LANES];
        for (f, &v) in wf.iter_mut().zip(b) {
            *f = v.to_f32();
        }
        for (acc_r, a) in acc.iter_mut().zip([a0, a1, a2, a3]) {
            for (s, (&xa, &wv)) in acc_r.iter_mut().zip(a.iter().zip(&wf)) {
                *s += xa * wv;
            }
        }
    }
    let full = w.len() / LANES * LANES;
    let wt = w.get(full..).unwrap_or(&[]);
    let mut out = [0.0f32; 4];
    for ((o, acc_r), xr) in out.iter_mut().zip(acc).zip(x) {
        *o = finish(acc_r, xr.get(full..).unwrap_or(&[]), wt);
    }
    out
}

/// `y += a·w` over the common length.
#[inline(always)]
pub(crate) fn axpy<W: Element>(y: &mut [f32], a: f32, w: &[W]) {
    for (yi, &wi) in y.iter_mut().zip(w) {
        *yi += a * wi.to_f32();
    }
}

/// Matrix-vector product for one token: `y[o] = dot(x, W[o])`, `x` of `in_dim`, `y` of `out_dim`.
pub fn linear_matvec<W: Element>(
    in_dim: usize,
    out_dim: usize,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) -> Result<()> {
    LinearShape::new(1, in_dim, out_dim).check(x.len(), w.len(), y.len())?;
    if in_dim == 0 {
        y.fill(0.0);
        return Ok(());
    }
    for (yo, w_row) in y.iter_mut().zip(w.chunks_exact(in_dim)) {
        *yo = dot(x, w_row);
    }
    Ok(())
}

/// Matrix-matrix product `y = x·Wᵀ` for `rows` tokens: `x` is `[rows, in]`, `y` is `[rows, out]`.
/// Each output row equals [`linear_matvec`] of the input row, bit for bit.
pub fn linear_matmul<W: Element>(
    shape: LinearShape,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) -> Result<()> {
    shape.check(x.len(), w.len(), y.len())?;
    let (n_in, n_out) = (shape.in_dim, shape.out_dim);
    if n_in == 0 || n_out == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let x_blocks = x.chunks(ROW_BLOCK * n_in);
    let y_blocks = y.chunks_mut(ROW_BLOCK * n_out);
    for (xb, yb) in x_blocks.zip(y_blocks) {
        let rows = xb.len() / n_in;
        let quads = rows / 4 * 4;
        for (o, w_row) in w.chunks_exact(n_in).enumerate() {
            for r in (0..quads).step_by(4) {
                let row = |i: usize| xb.get((r + i) * n_in..(r + i + 1) * n_in).unwrap_or(&[]);
                let v = dot4([row(0), row(1), row(2), row(3)], w_row);
                for (i, &vi) in v.iter().enumerate() {
                    if let Some(yo) = yb.get_mut((r + i) * n_out + o) {
                        *yo = vi;
                    }
                }
            }
            let rest = xb
                .chunks_exact(n_in)
                .zip(yb.chunks_exact_mut(n_out))
                .skip(quads);
            for (x_row, y_row) in rest {
                if let Some(yo) = y_row.get_mut(o) {
                    *yo = dot(x_row, w_row);
                }
            }
        }
    }
    Ok(())
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
