//! The row primitives attention and the dense layer are written in, and the job a kernel hands to
//! the dispatch. The traits carry no bounds, so nothing here depends on the element or
//! accumulator modules (which route jobs through [`Routed`]).

use crate::error::Result;

/// The primitives attention is written in. `d` is the head dimension (`q.len()` or `acc.len()`).
///
/// Every SIMD implementation must agree with every other one bit for bit on the same inputs
/// (they use one canonical 16-lane summation order and one exp polynomial); the generic
/// implementation rounds each operation separately and agrees within the documented bound.
pub trait RowOps<E, A>: Copy {
    /// `out[j] = dot(q, keys[j*d .. (j+1)*d]) * scale` for every `j < out.len()`.
    fn scores(self, q: &[E], keys: &[E], scale: A, out: &mut [A]);
    /// The largest value of `s` (NaN ignored), or `NEG_INFINITY` for an empty or all-NaN slice.
    fn max(self, s: &[A]) -> A;
    /// The running max `m' = max(m, max(s))` (NaN ignored, as `f32::max`), then
    /// `s[j] = exp(s[j] - m')` in place; returns `(m', Σ s[j])`. One call for flash's per-tile
    /// softmax step (the same operations as `max` then `exp_sum`).
    fn max_exp_sum(self, s: &mut [A], m: A) -> (A, A);
    /// [`RowOps::max_exp_sum`] if every value of `s` is finite; otherwise `None`, with `s`
    /// untouched (flash then recomputes the overflowed scores first). The check rides on the max
    /// pass, where a separate scan of every tile row cost flash about 5%.
    fn finite_max_exp_sum(self, s: &mut [A], m: A) -> Option<(A, A)>;
    /// Flash's online-softmax step for rows `from ..` of a tile, as `rows::softmax`'s
    /// `softmax_rows` runs it on this backend's primitives; `None` (the default): not provided
    /// here, the caller runs `softmax_rows` itself. A backend provides it to run the whole tile
    /// in one go (the lane backends: one entry into their features, not one per row). The
    /// probabilities it leaves are in the form [`RowOps::tile_accumulate`] takes: the
    /// exponentials, or, where [`RowOps::finish_probabilities`] packs them, already packed.
    #[inline(always)]
    fn tile_softmax(
        self,
        tile: SoftmaxTile<'_, A>,
        from: usize,
    ) -> Option<core::result::Result<(), SoftmaxStop>> {
        let _ = (tile, from);
        None
    }
    /// Puts one tile row's probabilities, its first `count` slots as
    /// [`RowOps::max_exp_sum`] left them (`row`: its whole `ld` slots), in the form
    /// [`RowOps::tile_softmax`] leaves a row in, for flash's recompute of an overflowed row.
    /// The default leaves them (the identity); the lane backends' bf16 pair instruction
    /// (`avx512bf16`) packs them to bf16 pairs in place, as its `tile_softmax` does in the
    /// exponential's pass, where `row` has at least 16 slots.
    #[inline(always)]
    fn finish_probabilities(self, row: &mut [A], count: usize) {
        let _ = (row, count);
    }
    /// `s[j] = exp(s[j] - m)` in place; returns the sum of the new values.
    fn exp_sum(self, s: &mut [A], m: A) -> A;
    /// `s[j] = s[j] / l` in place.
    fn normalize(self, s: &mut [A], l: A);
    /// `acc[i] = acc[i] * alpha` in place.
    fn scale(self, acc: &mut [A], alpha: A);
    /// `acc[i] += sum_j p[j] * values[j*d + i]`, accumulated in order of `j`.
    fn accumulate(self, acc: &mut [A], p: &[A], values: &[E]);
    /// `out[i] = round(acc[i] / denom)` into the storage format.
    fn store(self, out: &mut [E], acc: &[A], denom: A);
    /// Dense layer `y = x·Wᵀ` in `f32`: `y[r·n + o] = Σ_i x[r·k + i]·w[o·k + i]` for
    /// `k = in_dim`, `n = w.len() / k` outputs and `y.len() / n` rows. Each output is computed by
    /// the same operations in the same order however many rows share the call.
    fn linear(self, in_dim: usize, x: &[f32], w: &[E], y: &mut [f32]);

    /// The scores of a flash tile: for each query row `r < q.rows` and each of its visible keys
    /// `j < counts.of(r)`, `s[r·ld + j] = dot(q row r, key j) · scale` (keys of `q.d` elements
    /// one after another in `keys`). Entries past a row's count are left unspecified. `work` is
    /// the aligned packing space sized by `attention::flash`'s scratch rule.
    ///
    /// The default runs [`RowOps::scores`] row by row; the lane backends pack the query rows and
    /// the key tile and run a register-blocked micro-kernel (see `rows::tile`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn tile_scores(
        self,
        q: QTile<'_, E>,
        keys: &[E],
        scale: A,
        counts: Counts,
        s: &mut [A],
        ld: usize,
        work: &mut [A],
    ) where
        A: Copy,
    {
        let _ = work;
        per_row_scores(self, q, keys, scale, counts, s, ld)
    }

    /// `p[j] = round(p[j])` to the element format and back (nearest, ties to even), as
    /// FlashAttention-2 stores `P` before `P·V`; the identity where the element is not narrower
    /// than the accumulator.
    fn round_probabilities(self, p: &mut [A]);

    /// `acc row r += Σ_{j < counts.of(r)} p̂[r·ld + j] · values[j·d ..]` for each of the
    /// `acc.len() / d` rows, where `p̂` is `p` rounded to the element format
    /// ([`RowOps::round_probabilities`]: `p` arrives unrounded, in the form
    /// [`RowOps::tile_softmax`] and [`RowOps::finish_probabilities`] leave it, and may be left
    /// rounded or not). The default rounds each row's `p` in place and runs [`RowOps::accumulate`] row by
    /// row (every output element accumulated in order of `j`); a backend with a pair instruction
    /// may round and multiply in its own order (`avx512bf16` on `bf16`: see `rows::lanes`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn tile_accumulate(
        self,
        acc: &mut [A],
        d: usize,
        p: &mut [A],
        ld: usize,
        counts: Counts,
        values: &[E],
        work: &mut [A],
    ) {
        let _ = work;
        round_tile(self, acc.len().checked_div(d).unwrap_or(0), p, ld, counts);
        per_row_accumulate(self, acc, d, p, ld, counts, values)
    }
}

/// [`RowOps::round_probabilities`] of each of a tile's `rows` rows of probabilities (row `r`:
/// its `counts.of(r)` visible entries at `p[r·ld ..]`).
#[inline(always)]
pub(crate) fn round_tile<E, A, O: RowOps<E, A>>(
    ops: O,
    rows: usize,
    p: &mut [A],
    ld: usize,
    counts: Counts,
) {
    for r in 0..rows {
        let n = counts.of(r);
        if let Some(p_row) = p.get_mut(r * ld..r * ld + n) {
            ops.round_probabilities(p_row);
        }
    }
}

/// [`RowOps::tile_scores`] by [`RowOps::scores`], row by row.
#[inline(always)]
pub(crate) fn per_row_scores<E, A, O: RowOps<E, A>>(
    ops: O,
    q: QTile<'_, E>,
    keys: &[E],
    scale: A,
    counts: Counts,
    s: &mut [A],
    ld: usize,
) where
    A: Copy,
{
    for r in 0..q.rows {
        let n = counts.of(r);
        if n == 0 {
            continue;
        }
        let (Some(q_row), Some(k), Some(out)) =
            (q.row(r), keys.get(..n * q.d), s.get_mut(r * ld..r * ld + n))
        else {
            continue;
        };
        ops.scores(q_row, k, scale, out);
    }
}

/// [`RowOps::tile_accumulate`] by [`RowOps::accumulate`], row by row.
#[inline(always)]
pub(crate) fn per_row_accumulate<E, A, O: RowOps<E, A>>(
    ops: O,
    acc: &mut [A],
    d: usize,
    p: &[A],
    ld: usize,
    counts: Counts,
    values: &[E],
) {
    for (r, acc_row) in acc.chunks_exact_mut(d.max(1)).enumerate() {
        let n = counts.of(r);
        let (Some(p_row), Some(v)) = (p.get(r * ld..r * ld + n), values.get(..n * d)) else {
            continue;
        };
        ops.accumulate(acc_row, p_row, v);
    }
}

/// The query rows of a flash tile: row `r` is `q[start + r·stride ..][..d]`.
#[derive(Clone, Copy, Debug)]
pub struct QTile<'a, E> {
    /// The whole query tensor.
    pub(crate) q: &'a [E],
    /// Where row 0 starts.
    pub(crate) start: usize,
    /// Elements from one row to the next.
    pub(crate) stride: usize,
    /// Rows in the tile.
    pub(crate) rows: usize,
    /// The head dimension.
    pub(crate) d: usize,
}

impl<'a, E> QTile<'a, E> {
    /// Row `r` (`None` past the tensor).
    #[inline(always)]
    pub(crate) fn row(&self, r: usize) -> Option<&'a [E]> {
        let at = self.start + r * self.stride;
        self.q.get(at..at + self.d)
    }
}

/// How many keys of a tile each query row sees: `clamp(at0 + step·r, 0, n)` (causal rows see one
/// more key than the row before; `step = 0` without a mask).
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    /// Row 0's count before clamping (negative: row 0 sees none of the tile).
    pub(crate) at0: isize,
    /// 1 for causal tiles, 0 otherwise.
    pub(crate) step: isize,
    /// Keys in the tile.
    pub(crate) n: usize,
}

impl Counts {
    /// Row `r`'s count.
    #[inline(always)]
    pub(crate) fn of(&self, r: usize) -> usize {
        let c = self
            .at0
            .saturating_add(self.step.saturating_mul(r as isize));
        if c <= 0 {
            0
        } else {
            (c as usize).min(self.n)
        }
    }
}

/// A flash tile's scores (row `r` at `r·ld`, `counts.of(r)` of them) and its rows' running
/// state: accumulators (`d` each), maxima and sums.
pub struct SoftmaxTile<'a, A> {
    pub(crate) scores: &'a mut [A],
    pub(crate) ld: usize,
    pub(crate) counts: Counts,
    pub(crate) acc: &'a mut [A],
    pub(crate) d: usize,
    pub(crate) max: &'a mut [A],
    pub(crate) sum: &'a mut [A],
}

impl<A> SoftmaxTile<'_, A> {
    /// The same tile, borrowed again.
    #[inline(always)]
    pub(crate) fn reborrow(&mut self) -> SoftmaxTile<'_, A> {
        SoftmaxTile {
            scores: &mut *self.scores,
            ld: self.ld,
            counts: self.counts,
            acc: &mut *self.acc,
            d: self.d,
            max: &mut *self.max,
            sum: &mut *self.sum,
        }
    }
}

/// Why a tile's softmax step stopped before its last row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxStop {
    /// Row `r`'s scores are not all finite (rows from `r` on untouched).
    NonFinite(usize),
    /// A row's scores lie outside the score buffer.
    Bounds,
}

/// A kernel body, written once over [`RowOps`] and run with whichever backend is chosen.
pub trait Job<E, A> {
    /// What the kernel returns.
    type Output;
    /// Runs the kernel with `ops`. Implementations are `#[inline(always)]` (and so is everything
    /// they call with `ops`), so that the SIMD backends compile them with their features.
    fn run<O: RowOps<E, A>>(self, ops: O) -> Self::Output;
}

/// Where the element and accumulator types sent a job: run on a SIMD backend, or handed back for
/// the generic one.
pub enum Routed<J: Job<E, A>, E, A> {
    /// The job ran (or the backend was refused).
    Done(Result<J::Output>),
    /// The job runs on the generic backend (or, if one was forced, is refused there).
    Generic(J),
}
