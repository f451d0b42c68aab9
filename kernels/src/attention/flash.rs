//! Flash attention: tiles of `block_q` query rows by `block_k` keys with an online softmax.

use super::heads::{
    all_finite, check_values, clamp_to_values, fix_overflowed_scores, kv_head, nan_if_infinite,
};
use crate::attention::{AttentionShape, FlashTiles};
use crate::check::{add, product, split, try_const};
use crate::rows::softmax::{row_slots, softmax_rows, update_state, RowSteps};
use crate::rows::tile::tile_work_len;
use crate::rows::{self, Counts, Job, QTile, RowOps, SoftmaxStop, SoftmaxTile};
use crate::simd::Backend;
use crate::{Accumulator, Element, Error, Result};
use core::num::NonZeroUsize;
use core::ops::Range;

/// Attention by the tiled online-softmax algorithm (FlashAttention-2's forward), on the best
/// available backend.
///
/// For each tile of `block_q` query rows, key tiles of `block_k` are visited in order. Each row
/// keeps a running max `m`, a running sum `l` and an unnormalised output `o`; a key tile with a new
/// max rescales them by `exp(m_old - m_new)`, and the output is divided by `l` once at the end.
/// The tile's probabilities `P` are rounded to the element format before `P·V` (the sum `l` is
/// taken before that rounding): with `bf16` tensors and the `f32` accumulator this is
/// FlashAttention-2's precision as shipped (`S`, `m`, `l`, `O` in `f32`, `P` and the output in
/// `bf16`), the deviation study's `fa2` model. On `avx512bf16`, bf16 `Q·Kᵀ` and `P·V` run by
/// `vdpbf16ps` (pairs of keys or elements per product step; docs/numerics.md).
/// `block_k` sets the number of rescalings (about `ceil(kv_len / block_k) - 1` per row) and so
/// the numerics; `block_q` only sets how many rows share a loaded key tile. If the unnormalised
/// output of a row overflows (values near the format's limit), that row is recomputed with the
/// normalised two-pass update, so finite inputs give finite outputs.
///
/// `scratch` holds at least [`flash_scratch_len`] accumulators. See [`AttentionShape`].
pub fn flash_attention<E: Element, A: Accumulator>(
    shape: &AttentionShape,
    tiles: FlashTiles,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
    scratch: &mut [A],
) -> Result<()> {
    flash_attention_with(Backend::Auto, shape, tiles, q, k, v, out, scratch)
}

/// [`flash_attention`] on a chosen backend; `Err(BackendUnavailable)` if it cannot run here.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_with<E: Element, A: Accumulator>(
    backend: Backend,
    shape: &AttentionShape,
    tiles: FlashTiles,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
    scratch: &mut [A],
) -> Result<()> {
    shape.check_tensors(q, k, v, out)?;
    check_values::<E, A>(v)?;
    let needed = flash_scratch_len(shape, tiles)?;
    if scratch.len() < needed {
        return Err(Error::ScratchTooSmall {
            needed,
            actual: scratch.len(),
        });
    }
    let items = 0..flash_items(shape, tiles)?;
    rows::run(
        backend,
        Flash {
            shape,
            tiles,
            items,
            q,
            k,
            v,
            out,
            out_base: None,
            scratch,
        },
    )?
}

/// The work items of [`flash_attention`] with `tiles`: one per query tile of each (batch, head),
/// `batch·heads·ceil(q_len / block_q)` in all (`block_q` at most `q_len`), numbered head by head
/// and, within a head, tile by tile. Item `i` is query tile `i % per_head` of head `i / per_head`.
/// Items are independent: [`flash_attention_part`](super::flash_attention_part) runs any range
/// of them, so threads can share a run.
pub const fn flash_items(shape: &AttentionShape, tiles: FlashTiles) -> Result<usize> {
    try_const!(shape.validate());
    try_const!(tiles.validate());
    if shape.q_len == 0 {
        return Ok(0);
    }
    let block_q = if tiles.block_q < shape.q_len {
        tiles.block_q
    } else {
        shape.q_len
    };
    let Some(per_head) = tiles_per_head(shape.q_len, block_q) else {
        return Err(Error::Overflow);
    };
    product(&[shape.batch, shape.heads, per_head])
}

/// `ceil(q_len / block_q)` (`None` for `block_q = 0`), by checked operations: no division panic
/// is compiled (the firmware's link-time proof).
pub(super) const fn tiles_per_head(q_len: usize, block_q: usize) -> Option<usize> {
    match q_len.checked_rem(block_q) {
        Some(0) => q_len.checked_div(block_q),
        Some(_) => match q_len.checked_div(block_q) {
            Some(n) => Some(n + 1),
            None => None,
        },
        None => None,
    }
}

/// Accumulators [`flash_attention`](flash_attention) needs: for each of the `block_q` rows
/// of a query tile an output row (`head_dim`) and its running max and sum, plus one tile of
/// `block_k` scores.
///
/// A `const fn`: `static SCRATCH: [f32; N]` can be sized by it.
///
/// ```
/// use tessera_kernels::attention::{flash_attention, flash_scratch_len, AttentionShape, FlashTiles};
/// const SHAPE: AttentionShape = AttentionShape::new(1, 2, 8, 8, 4).with_causal(true);
/// const TILES: FlashTiles = FlashTiles::new(4, 4);
/// const SCRATCH_LEN: usize = match flash_scratch_len(&SHAPE, TILES) {
///     Ok(n) => n,
///     Err(_) => panic!("bad attention shape"), // a compile-time error, never a run-time panic
/// };
/// static SCRATCH: std::sync::Mutex<[f32; SCRATCH_LEN]> = std::sync::Mutex::new([0.0; SCRATCH_LEN]);
///
/// let (q, kv) = ([0.5f32; 2 * 8 * 4], [0.25f32; 2 * 8 * 4]);
/// let mut out = [0.0f32; 2 * 8 * 4];
/// let mut scratch = SCRATCH.lock().unwrap();
/// flash_attention(&SHAPE, TILES, &q, &kv, &kv, &mut out, &mut scratch[..])?;
/// assert!(out.iter().all(|&x| x == 0.25));
/// # Ok::<(), tessera_kernels::Error>(())
/// ```
pub const fn flash_scratch_len(shape: &AttentionShape, tiles: FlashTiles) -> Result<usize> {
    try_const!(shape.validate());
    try_const!(tiles.validate());
    let q_rows = if shape.q_len == 0 { 1 } else { shape.q_len };
    let rows = if tiles.block_q < q_rows {
        tiles.block_q
    } else {
        q_rows
    };
    let per_row = try_const!(add(shape.head_dim, 2));
    let states = try_const!(product(&[rows, per_row]));
    let scores = try_const!(product(&[rows, tiles.block_k, 1]));
    let Some(scores) = whole_lines(scores) else {
        return Err(Error::Overflow);
    };
    let Some(work) = tile_work_len(rows, tiles.block_k, shape.head_dim) else {
        return Err(Error::Overflow);
    };
    add(
        try_const!(add(states, ALIGN_SLACK)),
        try_const!(add(scores, work)),
    )
}

/// Accumulators of slack in the scratch, so that the score tile and the packing space start on a
/// 64-byte boundary whatever the caller's alignment (16 `f32`).
const ALIGN_SLACK: usize = 16;

/// `n` rounded up to whole 64-byte lines of `f32` (so the packing space after the score tile
/// stays aligned).
const fn whole_lines(n: usize) -> Option<usize> {
    match n.checked_add(ALIGN_SLACK - 1) {
        Some(x) => Some(x / ALIGN_SLACK * ALIGN_SLACK),
        None => None,
    }
}

/// `x` from its first element on a 64-byte boundary, at most [`ALIGN_SLACK`] elements in (or
/// from its start, where no such element is that close: accumulators of other sizes, Miri).
fn aligned<A>(x: &mut [A]) -> Result<&mut [A]> {
    let off = x.as_ptr().align_offset(64);
    let off = if off < ALIGN_SLACK { off } else { 0 };
    Ok(split(x, off)?.1)
}

/// One flash run: the work items `items` (see [`flash_items`]) of `shape`.
pub(super) struct Flash<'a, E, A> {
    pub(super) shape: &'a AttentionShape,
    pub(super) tiles: FlashTiles,
    pub(super) items: Range<usize>,
    pub(super) q: &'a [E],
    pub(super) k: &'a [E],
    pub(super) v: &'a [E],
    pub(super) out: &'a mut [E],
    /// `None`: `out` is the whole output, in the shape's layout. `Some(base)`: `out` holds the
    /// items' rows only, head-major (`(bh·q_len + row − base)·d`).
    pub(super) out_base: Option<usize>,
    pub(super) scratch: &'a mut [A],
}

/// What one query row reads: its query, the visible keys and values, and the logit scale.
struct RowInput<'a, E, A> {
    q: &'a [E],
    d: NonZeroUsize,
    keys: &'a [E],
    values: &'a [E],
    scale: A,
    scale_f32: f32,
    block_k: usize,
}

impl<'a, E: Element, A: Accumulator> Job<E, A> for Flash<'a, E, A> {
    type Output = Result<()>;

    #[inline(always)]
    fn run<O: RowOps<E, A>>(self, ops: O) -> Result<()> {
        let Flash {
            shape,
            tiles,
            items,
            q,
            k,
            v,
            out,
            out_base,
            scratch,
        } = self;
        let Some(d) = NonZeroUsize::new(shape.head_dim) else {
            return Ok(());
        };
        if shape.q_len == 0 {
            return Ok(());
        }
        let block_q = tiles.block_q.min(shape.q_len).max(1);
        let block_k = tiles.block_k.max(1);
        let scale = A::from_f32(shape.scale);
        let (acc_all, rest) = split(scratch, block_q * d.get())?;
        let (max_all, rest) = split(rest, block_q)?;
        let (sum_all, rest) = split(rest, block_q)?;
        let rest = aligned(rest)?;
        // The score tile: row `r` of a query tile at `r·ld`.
        let ld = block_k;
        let tile_len = whole_lines(block_q * ld).ok_or(Error::Overflow)?;
        let (scores, work) = split(rest, tile_len)?;
        // Every slice below is taken with `get`: the shape was validated against the tensors, so
        // none fails, and no panic path is compiled (the firmware's link-time proof).
        let keys_of = |x: &'a [E], j0: usize, j1: usize| x.get(j0 * d.get()..j1 * d.get());
        let (q_len, kv_len) = (shape.q_len as isize, shape.kv_len as isize);

        let per_head = tiles_per_head(shape.q_len, block_q).ok_or(Error::Overflow)?;
        for item in items {
            let bh = item.checked_div(per_head).ok_or(Error::Overflow)?;
            let first_row = item.checked_rem(per_head).ok_or(Error::Overflow)? * block_q;
            let (k_head, v_head) = kv_head(shape, bh, k, v)?;
            let (start, stride) = shape.q_rows(bh);
            let row = |r: usize| start + r * stride..start + r * stride + d.get();
            let out_row = |r: usize| match out_base {
                None => Some(row(r)),
                Some(base) => {
                    let at = (bh * shape.q_len + r).checked_sub(base)? * d.get();
                    Some(at..at + d.get())
                }
            };
            {
                let rows = block_q.min(shape.q_len.saturating_sub(first_row));
                if rows == 0 {
                    continue;
                }
                let acc_tile = acc_all.get_mut(..rows * d.get()).ok_or(Error::Overflow)?;
                let max_tile = max_all.get_mut(..rows).ok_or(Error::Overflow)?;
                let sum_tile = sum_all.get_mut(..rows).ok_or(Error::Overflow)?;
                acc_tile.fill(A::ZERO);
                max_tile.fill(A::NEG_INFINITY);
                sum_tile.fill(A::ZERO);
                let q_tile = QTile {
                    q,
                    start: start + first_row * stride,
                    stride,
                    rows,
                    d: d.get(),
                };
                // Causal visibility grows with the row, so the last row bounds the tile.
                let tile_keys = shape.visible_keys(first_row + rows - 1);
                // Row `first_row`'s visible keys, before clamping at 0 (`visible_keys`).
                let first_visible = if shape.causal {
                    kv_len - (q_len - 1 - first_row as isize)
                } else {
                    kv_len
                };
                let mut j0 = 0;
                while j0 < tile_keys {
                    let n = block_k.min(tile_keys - j0);
                    let counts = Counts {
                        at0: first_visible - j0 as isize,
                        step: isize::from(shape.causal),
                        n,
                    };
                    let keys = keys_of(k_head, j0, j0 + n).ok_or(Error::Overflow)?;
                    let values = keys_of(v_head, j0, j0 + n).ok_or(Error::Overflow)?;
                    ops.tile_scores(q_tile, keys, scale, counts, scores, ld, work);
                    let tile = SoftmaxTile {
                        scores: &mut *scores,
                        ld,
                        counts,
                        acc: &mut *acc_tile,
                        d: d.get(),
                        max: &mut *max_tile,
                        sum: &mut *sum_tile,
                    };
                    softmax_step(ops, tile, q_tile, keys, shape.scale)?;
                    // `P` is rounded to the element format inside (FlashAttention-2's rule, as
                    // `store_probabilities`; `l` above took the unrounded values).
                    ops.tile_accumulate(acc_tile, d.get(), scores, ld, counts, values, work);
                    j0 += block_k;
                }
                let finals = acc_tile.chunks_exact_mut(d.get()).zip(sum_tile.iter());
                for (r, (acc, &l)) in finals.enumerate() {
                    let visible = shape.visible_keys(first_row + r);
                    let at = out_row(first_row + r).ok_or(Error::Overflow)?;
                    let out_row = out.get_mut(at).ok_or(Error::Overflow)?;
                    if visible == 0 {
                        out_row.fill(E::from_f32(0.0));
                        continue;
                    }
                    ops.store(out_row, acc, l);
                    if !all_finite(out_row) {
                        let input = RowInput {
                            q: q.get(row(first_row + r)).ok_or(Error::Overflow)?,
                            keys: keys_of(k_head, 0, visible).ok_or(Error::Overflow)?,
                            values: keys_of(v_head, 0, visible).ok_or(Error::Overflow)?,
                            d,
                            scale,
                            scale_f32: shape.scale,
                            block_k,
                        };
                        normalized_row(ops, &input, scores, acc, out_row)?;
                        nan_if_infinite(out_row);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The online-softmax step of a tile's rows (`rows::softmax`), on the backend's own tile step if
/// it has one; a row whose scores overflowed is recomputed ([`fix_overflowed_scores`]) and the
/// step goes on after it.
#[inline(always)]
fn softmax_step<E: Element, A: Accumulator, O: RowOps<E, A>>(
    ops: O,
    mut tile: SoftmaxTile<'_, A>,
    q_tile: QTile<'_, E>,
    keys: &[E],
    scale: f32,
) -> Result<()> {
    let mut from = 0;
    loop {
        let stop = match ops.tile_softmax(tile.reborrow(), from) {
            Some(stop) => stop,
            None => softmax_rows(RowSteps::new(ops), tile.reborrow(), from),
        };
        let r = match stop {
            Ok(()) => return Ok(()),
            Err(SoftmaxStop::Bounds) => return Err(Error::Overflow),
            Err(SoftmaxStop::NonFinite(r)) => r,
        };
        let (count, d, ld) = (tile.counts.of(r), tile.d, tile.ld);
        // The row's query and keys only for this rare recompute.
        let q_row = q_tile.row(r).ok_or(Error::Overflow)?;
        let row_keys = keys.get(..count * d).ok_or(Error::Overflow)?;
        let row = row_slots(tile.scores, r, ld, count).ok_or(Error::Overflow)?;
        let s = row.get_mut(..count).ok_or(Error::Overflow)?;
        fix_overflowed_scores(q_row, row_keys, scale, s);
        let (m, l) = (tile.max.get_mut(r), tile.sum.get_mut(r));
        let (Some(m), Some(l)) = (m, l) else {
            return Err(Error::Overflow);
        };
        let (m_new, p_sum) = ops.max_exp_sum(s, *m);
        // In the form the rest of the tile's rows are in (bf16 pairs on `avx512bf16`).
        ops.finish_probabilities(row, count);
        let acc = tile
            .acc
            .get_mut(r * d..(r + 1) * d)
            .ok_or(Error::Overflow)?;
        update_state(RowSteps::new(ops), acc, m, l, m_new, p_sum);
        from = r + 1;
    }
}

/// Rounds a row's probabilities to the element format before `P·V`, as FlashAttention-2 does
/// (`flash_fwd_kernel.h` converts `P` to the element type for the second matmul, while the row
/// sum `l` is taken from the unrounded values). The identity unless the element is narrower than
/// the accumulator: `bf16` tensors with the `f32` accumulator, which is the `fa2` precision model.
/// The overflow fallback's rounding; the tiles round by the same rule inside
/// [`RowOps::tile_accumulate`] (`RowOps::round_probabilities`).
#[inline(always)]
fn store_probabilities<E: Element, A: Accumulator>(p: &mut [A]) {
    for x in p.iter_mut() {
        *x = x.round_to::<E>();
    }
}

/// The overflow fallback: the same tiles, in two passes. The first finds the row's max and sum;
/// the second accumulates `exp(s - m) / l · V`, a convex combination of value rows that cannot
/// exceed the largest value.
#[inline(always)]
fn normalized_row<E: Element, A: Accumulator, O: RowOps<E, A>>(
    ops: O,
    row: &RowInput<'_, E, A>,
    scores: &mut [A],
    acc: &mut [A],
    out: &mut [E],
) -> Result<()> {
    let d = row.d;
    let tile = row.block_k.saturating_mul(d.get()).max(1);
    let (mut m, mut l) = (A::NEG_INFINITY, A::ZERO);
    for keys in row.keys.chunks(tile) {
        let s = scores.get_mut(..keys.len() / d).ok_or(Error::Overflow)?;
        ops.scores(row.q, keys, row.scale, s);
        fix_overflowed_scores(row.q, keys, row.scale_f32, s);
        let (m_new, p_sum) = ops.max_exp_sum(s, m);
        l = l.mul(m.sub(m_new).exp()).add(p_sum);
        m = m_new;
    }
    acc.fill(A::ZERO);
    for (t, keys) in row.keys.chunks(tile).enumerate() {
        // Indexed, not zipped: `Zip::new` of two `Chunks` is compiled out of line with a
        // division by the chunk size that could panic.
        let at = t * tile;
        let values = row.values.get(at..at + keys.len()).ok_or(Error::Overflow)?;
        let s = scores.get_mut(..keys.len() / d).ok_or(Error::Overflow)?;
        ops.scores(row.q, keys, row.scale, s);
        fix_overflowed_scores(row.q, keys, row.scale_f32, s);
        ops.exp_sum(s, m);
        ops.normalize(s, l);
        store_probabilities::<E, A>(s);
        ops.accumulate(acc, s, values);
    }
    clamp_to_values(acc, row.values);
    ops.store(out, acc, A::ONE);
    Ok(())
}
