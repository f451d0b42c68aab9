//! Dense layers `y = x·Wᵀ` on the 16 lanes: each output is one fused multiply-add chain over its
//! weight row (element `i` in lane `i % 16`, the tail as one zero-padded chunk), then the lane
//! tree. The work goes in register blocks, as flash's micro-kernels do: a few input rows times a
//! few weight rows, every chain of the block in a register, so each loaded input chunk serves
//! every output of the block and each loaded weight chunk every row of it (decoding is bound by
//! reading the weights; a verification or prefill batch reads them once per row group). The
//! blocking never changes an output's operations, only which chains run side by side and which
//! lane trees share their shuffles, so a row gives the same bits alone or in a batch, on every
//! SIMD backend.

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
    // Groups of up to 4 rows, in blocks of `R` rows by `O` outputs (`B = R·O` accumulators)
    // beside `R` input chunks and a weight chunk. AVX-512's 32 registers hold 16 accumulators;
    // where a vector of 16 lanes takes two registers or more (AVX2, NEON) 4 accumulators are the
    // most that fit (4 rows by 1 output measured faster on AVX2 than two passes of 2 by 2). One
    // row takes 4 outputs on both: every FMA then loads a weight chunk, 4 chains are enough, and
    // 8 weight rows 4 KiB apart (f32, `k` a multiple of 1024) would share one 8-way L1 set with
    // the input and evict one another (1 x 8 measured 3-8% slower than one row at a time there);
    // for the same reason 2 rows take 6 outputs (2 x 8: 12-15% slower at such `k` in f32).
    let wide = L::WIDE_KEY_GROUPS;
    for (xg, yg) in x.chunks(4 * k).zip(y.chunks_mut(4 * n)) {
        match (xg.len() / k, wide) {
            (4, true) => rows_by::<L, W, 4, 4, 16>(l, k, xg, w, yg),
            (3, true) => rows_by::<L, W, 3, 4, 12>(l, k, xg, w, yg),
            (2, true) => rows_by::<L, W, 2, 6, 12>(l, k, xg, w, yg),
            (_, true) => rows_by::<L, W, 1, 4, 4>(l, k, xg, w, yg),
            (4, false) => rows_by::<L, W, 4, 1, 4>(l, k, xg, w, yg),
            (3, false) => rows_by::<L, W, 3, 1, 3>(l, k, xg, w, yg),
            (2, false) => rows_by::<L, W, 2, 2, 4>(l, k, xg, w, yg),
            (_, false) => rows_by::<L, W, 1, 4, 4>(l, k, xg, w, yg),
        }
    }
}

/// [`linear`] of exactly `R` rows (`x` is `[R, k]`, `y` is `[R, n]`), `O` weight rows at a time
/// (`B = R·O`), the outputs left over one at a time.
#[inline(always)]
fn rows_by<L: Lanes, W: LaneElement, const R: usize, const O: usize, const B: usize>(
    l: L,
    k: usize,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
) {
    let n = w.len() / k;
    let xs: [&[f32]; R] = core::array::from_fn(|r| x.get(r * k..(r + 1) * k).unwrap_or(&[]));
    // The rows' whole chunks, checked once for every block of weight rows.
    let Some(x_columns) = Columns::new(xs, k / LANES) else {
        return; // never happens: `linear` hands out rows of `k` elements
    };
    let mut blocks = w.chunks_exact(O * k);
    for (b, block) in (&mut blocks).enumerate() {
        block_by::<L, W, R, O, B>(l, x_columns, xs, k, block, y, b * O);
    }
    let done = n - n % O;
    for (o, w_row) in blocks.remainder().chunks_exact(k).enumerate() {
        block_by::<L, W, R, 1, R>(l, x_columns, xs, k, w_row, y, done + o);
    }
}

/// Outputs `first..first + O` of the `R` rows (`w` holds their `O` weight rows) into `y`
/// (`[R, n]`).
#[inline(always)]
fn block_by<L: Lanes, W: LaneElement, const R: usize, const O: usize, const B: usize>(
    l: L,
    x_columns: Columns<'_, f32, R>,
    xs: [&[f32]; R],
    k: usize,
    w: &[W],
    y: &mut [f32],
    first: usize,
) {
    const { assert!(B == R * O, "a block holds R·O accumulators") };
    let ws: [&[W]; O] = core::array::from_fn(|o| w.get(o * k..(o + 1) * k).unwrap_or(&[]));
    let Some(w_columns) = Columns::new(ws, k / LANES) else {
        return; // never happens: `w` holds `O` rows of `k` elements
    };
    let n = y.len() / R;
    // The lane trees four at a time, in the block's row-major order (each is the canonical
    // tree, whichever vectors share the shuffles).
    let sums = reduce_group(l, dots::<L, W, R, O, B>(l, x_columns, xs, w_columns, ws));
    for (r, sums_r) in sums.chunks_exact(O).enumerate() {
        let start = r * n + first;
        if let Some(y_r) = y.get_mut(start..start + O) {
            for (yo, &s) in y_r.iter_mut().zip(sums_r) {
                *yo = s;
            }
        }
    }
}

/// The 16 lane sums of `x[r] · w[o]` at `r·O + o` for `R` input rows and `O` weight rows of
/// length `k` (`x_columns`, `w_columns`: their whole chunks; `B = R·O`), every chain in chunk
/// order, each input chunk loaded once for the `O` outputs and each weight chunk once for the
/// `R` rows.
///
/// Plain loops, no closures: a closure is a function of its own, compiled without the target
/// features of the wrapper this body is inlined into, so every intrinsic in one that LLVM does
/// not inline becomes a call (AVX2 bf16 at four rows ran at 1 GFLOP/s that way).
#[inline(always)]
fn dots<L: Lanes, W: LaneElement, const R: usize, const O: usize, const B: usize>(
    l: L,
    x_columns: Columns<'_, f32, R>,
    x: [&[f32]; R],
    w_columns: Columns<'_, W, O>,
    w: [&[W]; O],
) -> [L::F; B] {
    let zero = l.splat(0.0);
    let mut acc = [zero; B];
    let mut xv = [zero; R];
    for (xcs, wcs) in x_columns.zip(w_columns) {
        for (v, xc) in xv.iter_mut().zip(xcs) {
            *v = l.load(xc);
        }
        for (o, wc) in wcs.into_iter().enumerate() {
            let wv = W::load(l, wc);
            for (r, &xr) in xv.iter().enumerate() {
                if let Some(a) = acc.get_mut(r * O + o) {
                    *a = l.mul_add(xr, wv, *a);
                }
            }
        }
    }
    let k = x.first().map_or(0, |r| r.len());
    let tail = k - k % LANES;
    if tail < k {
        for (v, x_r) in xv.iter_mut().zip(x) {
            *v = l.load_partial(x_r.get(tail..k).unwrap_or(&[]));
        }
        for (o, w_o) in w.into_iter().enumerate() {
            let wv = W::load_partial(l, w_o.get(tail..k).unwrap_or(&[]));
            for (r, &xr) in xv.iter().enumerate() {
                if let Some(a) = acc.get_mut(r * O + o) {
                    *a = l.mul_add(xr, wv, *a);
                }
            }
        }
    }
    acc
}
