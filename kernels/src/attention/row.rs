//! One query row of flash attention, on its own: the unit of work of a GPU thread (feature
//! `cuda`, see `docs/gpu.md`).
//!
//! A row of [`flash_attention`](super::flash_attention) depends on nothing but its query, the keys
//! and values it sees and the key tile `block_k`: the query tile only decides which rows share a
//! loaded key tile. So the row is computed by the same `flash_attention_with` over a
//! one-row problem (its visible keys, non-causal, the same scale and `block_k`), on the generic
//! backend: the same operations in the same order as the generic backend's full call, the same
//! bits (`kernels/tests/gpu_rows.rs` checks it on every layout, GQA, KV caches and causal masks).

use super::flash::{flash_attention_with, flash_scratch_len};
use super::heads::kv_head;
use crate::attention::{AttentionShape, FlashTiles};
use crate::check::{length, try_const};
use crate::simd::Backend;
use crate::{Accumulator, Element, Error, Result};

/// Accumulators [`flash_attention_row`] needs for one row of `shape` with key tiles of
/// `tiles.block_k`: what [`flash_scratch_len`] asks for the one-row problem the row runs as
/// (its output, running max and sum, a tile of scores and the tile work space).
/// A `const fn`, like every sizing function.
pub const fn flash_row_scratch_len(shape: &AttentionShape, tiles: FlashTiles) -> Result<usize> {
    try_const!(shape.validate());
    try_const!(tiles.validate());
    let one = AttentionShape::new(1, 1, 1, shape.kv_len, shape.head_dim);
    flash_scratch_len(&one, FlashTiles::new(1, tiles.block_k))
}

/// Where row `row` of query head `bh = b * heads + h` starts in the queries and the output of
/// `shape` (either layout): a GPU thread's own `head_dim` elements of the output.
pub fn query_row_start(shape: &AttentionShape, bh: usize, row: usize) -> Result<usize> {
    shape.validate()?;
    if bh >= shape.batch * shape.heads {
        return Err(Error::BadParameter("bh: beyond batch * heads"));
    }
    if row >= shape.q_len {
        return Err(Error::BadParameter("row: beyond q_len"));
    }
    let (start, stride) = shape.q_rows(bh);
    Ok(start + row * stride)
}

/// Row `row` of query head `bh = b * heads + h` of [`flash_attention`](super::flash_attention)
/// over the whole tensors `q`, `k`, `v` of `shape`, written into `out_row` (`head_dim`
/// elements), computed on the generic backend. `tiles.block_q` plays no part in a row's result.
///
/// The same bits as that row of `flash_attention_with(Backend::Generic, ..)`. Errors: an invalid
/// shape or tiles, `bh` or `row` out of range, tensors or `out_row` of the wrong length, or
/// scratch below [`flash_row_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_row<E: Element, A: Accumulator>(
    shape: &AttentionShape,
    tiles: FlashTiles,
    bh: usize,
    row: usize,
    q: &[E],
    k: &[E],
    v: &[E],
    out_row: &mut [E],
    scratch: &mut [A],
) -> Result<()> {
    let (q_total, kv_total) = shape.validate()?;
    tiles.validate()?;
    length("q", q.len(), q_total)?;
    length("k", k.len(), kv_total)?;
    length("v", v.len(), kv_total)?;
    let d = shape.head_dim;
    let at = query_row_start(shape, bh, row)?;
    let (k_head, v_head) = kv_head(shape, bh, k, v)?;
    let q_row = q.get(at..at + d).ok_or(Error::Overflow)?;
    let visible = shape.visible_keys(row);
    let keys = k_head.get(..visible * d).ok_or(Error::Overflow)?;
    let values = v_head.get(..visible * d).ok_or(Error::Overflow)?;
    let one = AttentionShape::new(1, 1, 1, visible, d).with_scale(shape.scale);
    let tiles = FlashTiles::new(1, tiles.block_k);
    flash_attention_with(
        Backend::Generic,
        &one,
        tiles,
        q_row,
        keys,
        values,
        out_row,
        scratch,
    )
}
