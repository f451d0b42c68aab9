//! Scratch sizes: every kernel works in a caller-owned slice of accumulators this long.

use crate::check::product;
use crate::{AttentionShape, FlashTiles, Result};

/// Accumulators [`baseline_attention`](crate::baseline_attention) needs: one full row of scores
/// (`kv_len`) and one output row (`head_dim`).
pub fn baseline_scratch_len(shape: &AttentionShape) -> Result<usize> {
    shape.validate()?;
    shape
        .kv_len
        .checked_add(shape.head_dim)
        .ok_or(crate::Error::Overflow)
}

/// Accumulators [`flash_attention`](crate::flash_attention) needs: for each of the `block_q` rows
/// of a query tile an output row (`head_dim`) and its running max and sum, plus one tile of
/// `block_k` scores.
pub fn flash_scratch_len(shape: &AttentionShape, tiles: FlashTiles) -> Result<usize> {
    shape.validate()?;
    tiles.validate()?;
    let rows = tiles.block_q.min(shape.q_len.max(1));
    let per_row = shape
        .head_dim
        .checked_add(2)
        .ok_or(crate::Error::Overflow)?;
    product(&[rows, per_row])?
        .checked_add(tiles.block_k)
        .ok_or(crate::Error::Overflow)
}
