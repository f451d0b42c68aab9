//! Flash attention over a range of its work items, for callers that split one run between
//! threads (the kernel crate spawns none: each thread calls [`flash_attention_part`] on its own
//! items with its own scratch).

use super::flash::{flash_items, flash_scratch_len, tiles_per_head, Flash};
use super::heads::check_values;
use crate::attention::{AttentionShape, FlashTiles};
use crate::check::try_const;
use crate::rows;
use crate::simd::Backend;
use crate::{Accumulator, Element, Error, Result};
use core::ops::Range;

/// Where work item `item` of [`flash_items`] starts among the query rows of all heads taken
/// head-major (`bh·q_len + row`); `item = flash_items(..)` gives the total `batch·heads·q_len`.
/// So items `a..b` own rows `flash_item_row(a)..flash_item_row(b)`, and in a head-major output
/// the elements `d` times that.
pub const fn flash_item_row(
    shape: &AttentionShape,
    tiles: FlashTiles,
    item: usize,
) -> Result<usize> {
    let total = try_const!(flash_items(shape, tiles));
    if item > total {
        return Err(Error::LengthMismatch {
            what: "item",
            expected: total,
            actual: item,
        });
    }
    if total == 0 {
        return Ok(0);
    }
    let block_q = if tiles.block_q < shape.q_len {
        tiles.block_q
    } else {
        shape.q_len
    };
    let (Some(per_head), true) = (tiles_per_head(shape.q_len, block_q), block_q > 0) else {
        return Err(Error::Overflow);
    };
    match (item.checked_div(per_head), item.checked_rem(per_head)) {
        (Some(head), Some(tile)) => Ok(head * shape.q_len + tile * block_q),
        _ => Err(Error::Overflow),
    }
}

/// [`flash_attention_with`](super::flash_attention_with) for the work items `items` only (see
/// [`flash_items`]): the same operations on the same rows, so the rows come out with the same
/// bits as in a whole run. `q`, `k` and `v` are the whole tensors; `out_rows` holds just the
/// items' output rows, head-major (`flash_item_row(items.start)..flash_item_row(items.end)`,
/// `head_dim` elements each), which for [`Layout::HeadMajor`](super::Layout) is that range of
/// the whole output.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_part<E: Element, A: Accumulator>(
    backend: Backend,
    shape: &AttentionShape,
    tiles: FlashTiles,
    items: Range<usize>,
    q: &[E],
    k: &[E],
    v: &[E],
    out_rows: &mut [E],
    scratch: &mut [A],
) -> Result<()> {
    // The whole output has the queries' length: `q` stands in for it in the check.
    shape.check_tensors(q, k, v, q)?;
    check_values::<E, A>(v)?;
    let needed = flash_scratch_len(shape, tiles)?;
    if scratch.len() < needed {
        return Err(Error::ScratchTooSmall {
            needed,
            actual: scratch.len(),
        });
    }
    if items.start > items.end {
        return Err(Error::LengthMismatch {
            what: "items",
            expected: items.start,
            actual: items.end,
        });
    }
    let first = flash_item_row(shape, tiles, items.start)?;
    let end = flash_item_row(shape, tiles, items.end)?;
    let expected = (end - first) * shape.head_dim;
    if out_rows.len() != expected {
        return Err(Error::LengthMismatch {
            what: "out",
            expected,
            actual: out_rows.len(),
        });
    }
    rows::run(
        backend,
        Flash {
            shape,
            tiles,
            items,
            q,
            k,
            v,
            out: out_rows,
            out_base: Some(first),
            scratch,
        },
    )?
}
