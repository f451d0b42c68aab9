//! Flash attention: tiles of `block_q` query rows by `block_k` keys with an online softmax.

use super::heads::{fix_overflowed_scores, kv_head};
use crate::attention::{AttentionShape, FlashTiles};
use crate::check::{product, split};
use crate::rows::{self, Job, RowOps};
use crate::simd::Backend;
use crate::{Accumulator, Element, Error, Result};

/// Attention by the tiled online-softmax algorithm (FlashAttention-2's forward), on the best
/// available backend.
///
/// For each tile of `block_q` query rows, key tiles of `block_k` are visited in order. Each row
/// keeps a running max `m`, a running sum `l` and an unnormalised output `o`; a key tile with a new
/// max rescales them by `exp(m_old - m_new)`, and the output is divided by `l` once at the end.
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
pub fn flash_scratch_len(shape: &AttentionShape, tiles: FlashTiles) -> Result<usize> {
    shape.validate()?;
    tiles.validate()?;
    let rows = tiles.block_q.min(shape.q_len.max(1));
    let per_row = shape.head_dim.checked_add(2).ok_or(Error::Overflow)?;
    product(&[rows, per_row])?
        .checked_add(tiles.block_k)
        .ok_or(Error::Overflow)
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
    keys: &'a [E],
    values: &'a [E],
    scale: A,
    scale_f32: f32,
    block_k: usize,
}

impl<E: Element, A: Accumulator> Job<E, A> for Flash<'_, E, A> {
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
        let d = shape.head_dim;
        if shape.q_len == 0 {
            return Ok(());
        }
        let block_q = tiles.block_q.min(shape.q_len);
        let block_k = tiles.block_k;
        let scale = A::from_f32(shape.scale);
        let (acc_all, rest) = split(scratch, block_q * d)?;
        let (max_all, rest) = split(rest, block_q)?;
        let (sum_all, rest) = split(rest, block_q)?;
        let (scores, _) = split(rest, block_k)?;

        for bh in 0..shape.batch * shape.heads {
            let (k_head, v_head) = kv_head(shape, bh, k, v)?;
            let (start, stride) = shape.q_rows(bh);
            let row = |r: usize| start + r * stride..start + r * stride + d;
            for first_row in (0..shape.q_len).step_by(block_q) {
                let rows = block_q.min(shape.q_len - first_row);
                let acc_tile = &mut acc_all[..rows * d];
                acc_tile.fill(A::ZERO);
                max_all[..rows].fill(A::NEG_INFINITY);
                sum_all[..rows].fill(A::ZERO);
                // Causal visibility grows with the row, so the last row bounds the tile.
                let tile_keys = shape.visible_keys(first_row + rows - 1);
                for j0 in (0..tile_keys).step_by(block_k) {
                    let states = acc_tile
                        .chunks_exact_mut(d)
                        .zip(max_all.iter_mut().zip(sum_all.iter_mut()));
                    for (r, (acc, (m, l))) in states.enumerate() {
                        let visible = shape.visible_keys(first_row + r);
                        if visible <= j0 {
                            continue;
                        }
                        let q_row = q.get(row(first_row + r)).ok_or(Error::Overflow)?;
                        let j1 = (j0 + block_k).min(visible);
                        let s = &mut scores[..j1 - j0];
                        let keys = &k_head[j0 * d..j1 * d];
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
                        ops.accumulate(acc, s, &v_head[j0 * d..j1 * d]);
                        *m = m_new;
                    }
                }
                let finals = acc_tile.chunks_exact_mut(d).zip(sum_all.iter());
                for (r, (acc, &l)) in finals.enumerate() {
                    let visible = shape.visible_keys(first_row + r);
                    let out_row = out.get_mut(row(first_row + r)).ok_or(Error::Overflow)?;
                    if visible == 0 {
                        out_row.fill(E::from_f32(0.0));
                        continue;
                    }
                    ops.store(out_row, acc, l);
                    if out_row.iter().any(|x| !x.to_f32().is_finite()) {
                        let q_row = q.get(row(first_row + r)).ok_or(Error::Overflow)?;
                        let input = RowInput {
                            q: q_row,
                            keys: &k_head[..visible * d],
                            values: &v_head[..visible * d],
                            scale,
                            scale_f32: shape.scale,
                            block_k,
                        };
                        normalized_row(ops, &input, scores, acc, out_row);
                    }
                }
            }
        }
        Ok(())
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
) {
    let d = row.q.len();
    let tile = row.block_k * d;
    let (mut m, mut l) = (A::NEG_INFINITY, A::ZERO);
    for keys in row.keys.chunks(tile) {
        let s = &mut scores[..keys.len() / d];
        ops.scores(row.q, keys, row.scale, s);
        fix_overflowed_scores(row.q, keys, row.scale_f32, s);
        let (m_new, p_sum) = ops.max_exp_sum(s, m);
        l = l.mul(m.sub(m_new).exp()).add(p_sum);
        m = m_new;
    }
    acc.fill(A::ZERO);
    for (keys, values) in row.keys.chunks(tile).zip(row.values.chunks(tile)) {
        let s = &mut scores[..keys.len() / d];
        ops.scores(row.q, keys, row.scale, s);
        fix_overflowed_scores(row.q, keys, row.scale_f32, s);
        ops.exp_sum(s, m);
        ops.normalize(s, l);
        ops.accumulate(acc, s, values);
    }
    ops.store(out, acc, A::ONE);
}
