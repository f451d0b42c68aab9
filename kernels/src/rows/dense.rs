//! Dense layers `y = x·Wᵀ` on the generic backend: sixteen interleaved `f32` partial sums per
//! output (separately rounded products and sums), combined by the lane tree, then the tail in
//! order. Every output is computed the same way however many rows share the call.

use crate::Element;

/// Partial sums of a dot product (the lanes of the SIMD backends).
const LANES: usize = 16;
/// Rows of `x` that share one pass over a weight row.
const PAIR: usize = 2;
/// Rows of `x` processed while one weight row stays in L1.
const ROW_BLOCK: usize = 32;

/// `sum_i x[i]·w[i]` in `f32`: sixteen interleaved partial sums, combined pairwise, then the tail
/// in order. The order depends only on the length, never on the caller.
#[inline(always)]
pub(crate) fn dot<W: Element>(x: &[f32], w: &[W]) -> f32 {
    let mut acc = [0.0f32; LANES];
    // Array chunks: zipping them needs no division (a zip of `ChunksExact` does, which at
    // opt-level "s" can leave a panic path out of line).
    let (xc, xt) = x.as_chunks::<LANES>();
    let (wc, wt) = w.as_chunks::<LANES>();
    for (a, b) in xc.iter().zip(wc) {
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

/// [`dot`] of `R` rows against one weight row, each row with exactly `dot`'s operations in
/// `dot`'s order (so the bits are the same), but every weight chunk loaded once for all rows.
#[inline(always)]
fn dot_rows<W: Element, const R: usize>(x: [&[f32]; R], w: &[W]) -> [f32; R] {
    let mut acc = [[0.0f32; LANES]; R];
    let (wc, wt) = w.as_chunks::<LANES>();
    for (c, b) in wc.iter().enumerate() {
        let mut wf = [0.0f32; LANES];
        for (f, &v) in wf.iter_mut().zip(b) {
            *f = v.to_f32();
        }
        for (acc_r, xr) in acc.iter_mut().zip(x) {
            let Some(a) = xr.as_chunks::<LANES>().0.get(c) else {
                continue;
            };
            for (s, (&xa, &wv)) in acc_r.iter_mut().zip(a.iter().zip(&wf)) {
                *s += xa * wv;
            }
        }
    }
    let full = w.len() / LANES * LANES;
    let mut out = [0.0f32; R];
    for ((o, acc_r), xr) in out.iter_mut().zip(acc).zip(x) {
        *o = finish(acc_r, xr.get(full..).unwrap_or(&[]), wt);
    }
    out
}

/// `y[r·n + o] = dot(x[r·k..], w[o·k..])` for `k = in_dim > 0`, `n = w.len() / k` outputs and
/// `y.len() / n` rows (the caller checks the lengths).
pub(crate) fn linear<W: Element>(in_dim: usize, x: &[f32], w: &[W], y: &mut [f32]) {
    let n_in = in_dim;
    if n_in == 0 {
        y.fill(0.0);
        return;
    }
    let n_out = w.len() / n_in;
    if n_out == 0 {
        return;
    }
    // `.max(1)`: the block sizes are positive (no chunks(0) panic is compiled).
    let (x_block, y_block) = (
        ROW_BLOCK.saturating_mul(n_in).max(1),
        ROW_BLOCK.saturating_mul(n_out).max(1),
    );
    for (xb, yb) in x.chunks(x_block).zip(y.chunks_mut(y_block)) {
        let rows = (xb.len() / n_in).min(yb.len() / n_out);
        // Two rows per weight-row pass: the accumulators of more rows would grow the stack frame
        // (a firmware task's budget) for little gain on a scalar core.
        let pairs = rows / PAIR * PAIR;
        for (o, w_row) in w.chunks_exact(n_in).enumerate() {
            for r in (0..pairs).step_by(PAIR) {
                let row = |i: usize| xb.get((r + i) * n_in..(r + i + 1) * n_in).unwrap_or(&[]);
                let v = dot_rows([row(0), row(1)], w_row);
                for (i, &vi) in v.iter().enumerate() {
                    if let Some(yo) = yb.get_mut((r + i) * n_out + o) {
                        *yo = vi;
                    }
                }
            }
            for r in pairs..rows {
                let x_row = xb.get(r * n_in..(r + 1) * n_in).unwrap_or(&[]);
                if let Some(yo) = yb.get_mut(r * n_out + o) {
                    *yo = dot(x_row, w_row);
                }
            }
        }
    }
}
