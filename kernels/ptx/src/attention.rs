//! Flash attention forward and decode attention: one thread per query row, computed by the CPU
//! build's `flash_attention_row` (the key-tile loop of `attention/flash.rs` over the generic row
//! primitives, with the accumulator of the entry point).

use crate::thread::{indices, refuse};
use core::slice;
use tessera_kernels::attention::{
    flash_attention_row, flash_row_scratch_len, query_row_start, AttentionShape, FlashTiles, Layout,
};
use tessera_kernels::{bf16, Accumulator, Bf16Mma, Element, Result};

/// The launch's shape: every kernel of this file takes these scalars first, in this order (flat
/// scalars, not a struct: the simplest parameter list for a launcher to match).
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub batch: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub q_len: u32,
    pub kv_len: u32,
    pub kv_capacity: u32,
    pub head_dim: u32,
    /// Bit 0: causal; bit 1: token-major queries and output.
    pub flags: u32,
    pub scale: f32,
    pub block_k: u32,
}

impl Dims {
    fn shape(&self) -> AttentionShape {
        let layout = if self.flags & 2 != 0 {
            Layout::TokenMajor
        } else {
            Layout::HeadMajor
        };
        AttentionShape::new(
            self.batch as usize,
            self.heads as usize,
            self.q_len as usize,
            self.kv_len as usize,
            self.head_dim as usize,
        )
        .with_kv_heads(self.kv_heads as usize)
        .with_kv_capacity(self.kv_capacity as usize)
        .with_causal(self.flags & 1 != 0)
        .with_scale(self.scale)
        .with_layout(layout)
    }
}

/// Device buffers of one launch (lengths follow from [`Dims`]: `q`, `out` of
/// `batch·heads·q_len·head_dim`, `k`, `v` of `batch·kv_heads·kv_capacity·head_dim` elements,
/// `scratch` of `batch·heads·q_len·flash_row_scratch_len` accumulators).
pub(crate) struct Buffers<E, A> {
    pub q: *const E,
    pub k: *const E,
    pub v: *const E,
    pub out: *mut E,
    pub scratch: *mut A,
}

/// Row `row` of query head `bh`: the thread's whole job.
///
/// # Safety
/// The pointers of `b` are device buffers of the lengths [`Buffers`] names for `dims`; no
/// other thread of the launch computes the same `(bh, row)` (so its output row and its share of
/// the scratch are its own), and nothing writes `q`, `k`, `v` during the launch.
unsafe fn one_row<E: Element, A: Accumulator>(
    dims: &Dims,
    bh: usize,
    row: usize,
    b: &Buffers<E, A>,
) -> Result<()> {
    let shape = dims.shape();
    let tiles = FlashTiles::new(1, dims.block_k as usize);
    let (q_total, kv_total) = shape.validate()?;
    let per_row = flash_row_scratch_len(&shape, tiles)?;
    let d = shape.head_dim;
    let at = query_row_start(&shape, bh, row)?;
    let slot = (bh * shape.q_len + row) * per_row;
    // SAFETY: the caller's contract: `q`, `k`, `v` hold `q_total` and `kv_total` elements that
    // nothing writes during the launch, so shared slices over them are sound in every thread.
    let (q, k, v) = unsafe {
        (
            slice::from_raw_parts(b.q, q_total),
            slice::from_raw_parts(b.k, kv_total),
            slice::from_raw_parts(b.v, kv_total),
        )
    };
    // SAFETY: `at + d <= q_total` (`query_row_start` of a validated row) and `slot + per_row`
    // is within the scratch of `batch·heads·q_len` rows; both ranges belong to this thread's
    // `(bh, row)` alone (the caller's contract), so no other reference aliases them.
    let (out_row, scratch) = unsafe {
        (
            slice::from_raw_parts_mut(b.out.add(at), d),
            slice::from_raw_parts_mut(b.scratch.add(slot), per_row),
        )
    };
    flash_attention_row(&shape, tiles, bh, row, q, k, v, out_row, scratch)
}

/// Writes the kernel entry points of one element/accumulator pair: `$flash` (grid: query tiles ×
/// `batch·heads`, a block of `block_q` threads, one per row of the tile) and `$decode` (grid:
/// `batch`, a block of `heads` threads, each its head's one query row: `q_len` must be 1).
macro_rules! attention_kernels {
    ($flash:ident, $decode:ident, $e:ty, $a:ty) => {
        /// Flash attention forward (see the crate table).
        ///
        /// # Safety
        /// Launched as the crate table says, with buffers as [`Buffers`] describes and `status` a
        /// device `u32`.
        #[no_mangle]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "gpu-kernel" fn $flash(
            batch: u32,
            heads: u32,
            kv_heads: u32,
            q_len: u32,
            kv_len: u32,
            kv_capacity: u32,
            head_dim: u32,
            flags: u32,
            scale: f32,
            block_k: u32,
            q: *const $e,
            k: *const $e,
            v: *const $e,
            out: *mut $e,
            scratch: *mut $a,
            status: *mut u32,
        ) {
            let dims = Dims {
                batch,
                heads,
                kv_heads,
                q_len,
                kv_len,
                kv_capacity,
                head_dim,
                flags,
                scale,
                block_k,
            };
            let (tile, bh, t, block_q, _) = indices();
            let row = tile * block_q + t;
            if row >= dims.q_len as usize {
                return;
            }
            let b = Buffers { q, k, v, out, scratch };
            // SAFETY: each thread has its own `(bh, row)` by the grid above; the launcher's
            // buffers are as `Buffers` says.
            if unsafe { one_row::<$e, $a>(&dims, bh, row, &b) }.is_err() {
                // SAFETY: `status` is the launcher's device flag.
                unsafe { refuse(status) };
            }
        }

        /// Decode attention over a KV cache (see the crate table).
        ///
        /// # Safety
        /// As for the flash entry point, with `q_len == 1`.
        #[no_mangle]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "gpu-kernel" fn $decode(
            batch: u32,
            heads: u32,
            kv_heads: u32,
            q_len: u32,
            kv_len: u32,
            kv_capacity: u32,
            head_dim: u32,
            flags: u32,
            scale: f32,
            block_k: u32,
            q: *const $e,
            k: *const $e,
            v: *const $e,
            out: *mut $e,
            scratch: *mut $a,
            status: *mut u32,
        ) {
            let dims = Dims {
                batch,
                heads,
                kv_heads,
                q_len,
                kv_len,
                kv_capacity,
                head_dim,
                flags,
                scale,
                block_k,
            };
            let (b_idx, _, h, _, _) = indices();
            if h >= dims.heads as usize || dims.q_len != 1 {
                if h == 0 && dims.q_len != 1 {
                    // SAFETY: `status` is the launcher's device flag.
                    unsafe { refuse(status) };
                }
                return;
            }
            let bh = b_idx * dims.heads as usize + h;
            let b = Buffers { q, k, v, out, scratch };
            // SAFETY: each thread has its own `bh` (block `b`, thread `h`) and row 0.
            if unsafe { one_row::<$e, $a>(&dims, bh, 0, &b) }.is_err() {
                // SAFETY: as above.
                unsafe { refuse(status) };
            }
        }
    };
}

attention_kernels!(flash_f32, decode_f32, f32, f32);
attention_kernels!(flash_bf16, decode_bf16, bf16, f32);
attention_kernels!(flash_bf16_mma, decode_bf16_mma, bf16, Bf16Mma);
