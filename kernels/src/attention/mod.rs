//! Attention: baseline (materialised scores) and flash (tiled online softmax), over any storage
//! element and accumulator, on any backend.
//!
//! Both algorithms handle prefill (`q_len == kv_len`), decode with a KV cache (`q_len < kv_len`,
//! including `q_len == 1`; with `causal` the queries are the last positions) and grouped-query
//! attention. Semantics shared by both:
//! - a NaN anywhere a row reads makes that output row NaN (never silently zero);
//! - a query row that sees no key (kv_len = 0, or causal with q_len > kv_len) gets zeros;
//! - a logit that overflows the accumulator (inputs near the format's limits) is recomputed in
//!   `f64` and saturated to the accumulator's largest finite value, so finite inputs give finite
//!   outputs.

mod baseline;
mod flash;
mod flash_part;
mod heads;
#[cfg(feature = "cuda")]
mod row;
pub(crate) mod shape;

pub use baseline::{baseline_attention, baseline_attention_with, baseline_scratch_len};
pub use flash::{flash_attention, flash_attention_with, flash_items, flash_scratch_len};
pub use flash_part::{flash_attention_part, flash_item_row};
#[cfg(feature = "cuda")]
pub use row::{flash_attention_row, flash_row_scratch_len, query_row_start};
pub use shape::{AttentionShape, FlashTiles, Layout, MAX_TILE};
