//! Flash attention: tiles of `block_q` query rows by `block_k` keys with an online softmax.

use super::heads::{
    all_finite, check_values, clamp_to_values, fix_overflowed_scores, kv_head, nan_if_infinite,
};
use crate::attention::{AttentionShape, FlashTiles};
use crate::check::{add, product, split, try_const};
use crate::rows::{self, Job, RowOps};
use crate::simd::Backend;
use crate::{Accumulator, Element, Error, Result};
use core::num::NonZeroUsize;

/// Attention by the tiled online-softmax algorithm (FlashAttention-2's forward), on the best
/// available backend.
///
/// For each tile of `block_q` query rows, key tiles of `block_k` are visited in order. Each row
/// keeps a running max `m`, a running sum `l` and an unnormalised output `o`; a key tile with a new
/// max rescales them by `exp(m_old - m_new)`, and the output is divided by `l` once at the end.
/// The tile's probabilities `P` are rounded to the element format before `P·V` (the sum `l` is
/// taken before that rounding): with `bf16` tensors and the `f32` accumulator this is
/// FlashAttention-2's precision as shipped (`S`, `m`, `l`, `O` in `f32`, `P` and the output in
/// `bf16`), the deviation study's `fa2` model.
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
    rows::run(
        backend,
        Flash {
            shape,
            tiles,
            q,
            k,
            v,
            out,
            scratch,
        },
    )?
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
    add(try_const!(product(&[rows, per_row])), tiles.block_k)
}

struct Flash<'a, E, A> {
    shape: &'a AttentionShape,
    tiles: FlashTiles,
    q: &'a [E],
    k: &'a [E],
    v: &'a [E],
    out: &'a mut [E],
    scratch: &'a mut [A],
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
            q,
            k,
            v,
            out,
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
        let (scores, _) = split(rest, block_k)?;
        // Every slice below is taken with `get`: the shape was validated against the tensors, so
        // none fails, and no panic path is compiled (the firmware's link-time proof).
        let keys_of = |x: &'a [E], j0: usize, j1: usize| x.get(j0 * d.get()..j1 * d.get());

        for bh in 0..shape.batch * shape.heads {
            let (k_head, v_head) = kv_head(shape, bh, k, v)?;
            let (start, stride) = shape.q_rows(bh);
            let row = |r: usize| start + r * stride..start + r * stride + d.get();
            let mut first_row = 0;
            while first_row < shape.q_len {
                let rows = block_q.min(shape.q_len - first_row);
                let acc_tile = acc_all.get_mut(..rows * d.get()).ok_or(Error::Overflow)?;
                let max_tile = max_all.get_mut(..rows).ok_or(Error::Overflow)?;
                let sum_tile = sum_all.get_mut(..rows).ok_or(Error::Overflow)?;
                acc_tile.fill(A::ZERO);
                max_tile.fill(A::NEG_INFINITY);
                sum_tile.fill(A::ZERO);
                // Causal visibility grows with the row, so the last row bounds the tile.
                let tile_keys = shape.visible_keys(first_row + rows - 1);
                let mut j0 = 0;
                while j0 < tile_keys {
                    let states = acc_tile
                        .chunks_exact_mut(d.get())
                        .zip(max_tile.iter_mut().zip(sum_tile.iter_mut()));
                    for (r, (acc, (m, l))) in states.enumerate() {
                        let visible = shape.visible_keys(first_row + r);
                        if visible <= j0 {
                            continue;
                        }
                        let q_row = q.get(row(first_row + r)).ok_or(Error::Overflow)?;
                        let j1 = j0.saturating_add(block_k).min(visible);
                        let s = scores.get_mut(..j1 - j0).ok_or(Error::Overflow)?;
                        let keys = keys_of(k_head, j0, j1).ok_or(Error::Overflow)?;
                        let values = keys_of(v_head, j0, j1).ok_or(Error::Overflow)?;
                        ops.scores(q_row, keys, scale, s);
                        fix_overflowed_scores(q_row, keys, shape.scale, s);
                        let (m_new, p_sum) = ops.max_exp_sum(s, *m);
                        if *m == A::NEG_INFINITY {
                            // First tile: the state is still zero, nothing to rescale.
                            *l = p_sum;
                        } else {
                            let alpha = m.sub(m_new).exp();
                            if alpha != A::ONE {
                                ops.scale(acc, alpha);
                            }
                            *l = l.mul(alpha).add(p_sum);
                        }
                        store_probabilities::<E, A>(s);
                        ops.accumulate(acc, s, values);
                        *m = m_new;
                    }
                    j0 += block_k;
                }
                let finals = acc_tile.chunks_exact_mut(d.get()).zip(sum_tile.iter());
                for (r, (acc, &l)) in finals.enumerate() {
                    let visible = shape.visible_keys(first_row + r);
                    let out_row = out.get_mut(row(first_row + r)).ok_or(Error::Overflow)?;
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
                first_row += rows;
            }
        }
        Ok(())
    }
}

/// Rounds a tile's probabilities to the element format before `P·V`, as FlashAttention-2 does
/// (`flash_fwd_kernel.h` converts `P` to the element type for the second matmul, while the row
/// sum `l` is taken from the unrounded values). The identity unless the element is narrower than
/// the accumulator: `bf16` tensors with the `f32` accumulator, which is the `fa2` precision model.
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
