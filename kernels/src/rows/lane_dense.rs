//! Dense layers `y = x·Wᵀ` on the 16 lanes: each output is one fused multiply-add chain over its
//! weight row (element `i` in lane `i % 16`, the tail as one zero-padded chunk), then the lane
//! tree. Up to four input rows go through each weight row together, so a verification or
//! prefill batch reads every weight chunk once for all of them (decoding is bound by reading
//! the weights); the grouping never changes an output's operations, so a row gives the same bits
//! alone or in a batch, on every SIMD backend.

use crate::simd::lanes::{reduce_group, Columns};
use crate::simd::{LaneElement, Lanes, LANES};

/// `y[r·n + o] = Σ_i x[r·k + i]·w[o·k + i]` for `k = in_dim`, `n = w.len() / k` outputs and
/// `min(x.len() / k, y.len() / n)` rows.
#[inline(always)]
pub(crate) fn linear<L: Lanes, W: LaneElement>(
    l: L,
    in_dim: usize,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) {
    let k = in_dim;
    if k == 0 {
        y.fill(0.0);
        return;
    }
    let n = w.len() / k;
    if n == 0 {
        return;
    }
    let rows = (x.len() / k).min(y.len() / n);
    let (x, y) = (
        x.get(..rows * k).unwrap_or(&[]),
        y.get_mut(..rows * n).unwrap_or(&mut []),
    );
    for (xg, yg) in x.chunks(4 * k).zip(y.chunks_mut(4 * n)) {
        match xg.len() / k {
            4 => rows_by::<L, W, 4>(l, k, xg, w, yg),
            3 => rows_by::<L, W, 3>(l, k, xg, w, yg),
            2 => rows_by::<L, W, 2>(l, k, xg, w, yg),
            _ => rows_by::<L, W, 1>(l, k, xg, w, yg),
        }
    }
}

/// [`linear`] of exactly `R` rows (`x` is `[R, k]`, `y` is `[R, n]`), one weight row at a time.
#[inline(always)]
fn rows_by<L: Lanes, W: LaneElement, const R: usize>(
    l: L,
    k: usize,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) {
    let n = w.len() / k;
    let xs: [&[f32]; R] = core::array::from_fn(|r| x.get(r * k..(r + 1) * k).unwrap_or(&[]));
    // The rows' whole chunks, checked once for every weight row.
    let Some(columns) = Columns::new(xs, k / LANES) else {
        return; // never happens: `linear` hands out rows of `k` elements
    };
    for (o, w_row) in w.chunks_exact(k).enumerate() {
        let sums = reduce_group(l, dots::<L, W, R>(l, columns, xs, w_row));
        for (r, s) in sums.into_iter().enumerate() {
            if let Some(yo) = y.get_mut(r * n + o) {
                *yo = s;
            }
        }
    }
}

/// The 16 lane sums of `x[r] · w` for `R` input rows of the length of `w` (`columns`: their whole
/// chunks), every chain in chunk order, each weight chunk loaded once for the `R` rows.
#[inline(always)]
fn dots<L: Lanes, W: LaneElement, const R: usize>(
    l: L,
    columns: Columns<'_, f32, R>,
    x: [&[f32]; R],
    w: &[W],
) -> [L::F; R] {
    let k = w.len();
    let mut acc = [l.splat(0.0); R];
    let (w_chunks, w_tail) = w.as_chunks::<LANES>();
    columns.zip_for_each(w_chunks, |wc, xs| {
        let wv = W::load(l, wc);
        for (a, xk) in acc.iter_mut().zip(xs) {
            *a = l.mul_add(l.load(xk), wv, *a);
        }
    });
    if !w_tail.is_empty() {
        let wv = W::load_partial(l, w_tail);
        let tail = k - w_tail.len();
        for (a, x_r) in acc.iter_mut().zip(x) {
            let xv = l.load_partial(x_r.get(tail..k).unwrap_or(&[]));
            *a = l.mul_add(xv, wv, *a);
        }
    }
    acc
}
