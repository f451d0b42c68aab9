//! The shape of an attention problem and its validation.

use crate::check::product;
use crate::sqrt::sqrt_f32;
use crate::{Error, Result};

pub use crate::limits::MAX_TILE;

/// How the rows of the queries and the output are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[batch, heads, q_len, head_dim]`: each head's rows one after another.
    #[default]
    HeadMajor,
    /// `[batch, q_len, heads, head_dim]`: each token's heads one after another (the layout a
    /// projection `x·Wqᵀ` produces), read and written through a row stride of `heads·head_dim`.
    TokenMajor,
    /// `[q_len, batch, heads, head_dim]`: the sequence outermost, read and written through a row
    /// stride of `batch·heads·head_dim`. Temporal attention in a video model: its activations are
    /// `[frames, pixels, channels]`, its sequence is a pixel's frames and its batch every pixel,
    /// so the projections `x·Wqᵀ` are read in place with `batch = pixels`, `q_len = frames`.
    FrameMajor,
}

/// The shape of one attention call.
///
/// Tensors are row-major: queries and output `[batch, heads, q_len, head_dim]` (or, with
/// [`Layout::TokenMajor`], `[batch, q_len, heads, head_dim]`), keys and values
/// `[batch, kv_heads, kv_capacity, head_dim]` of which the first `kv_len` rows of each head are
/// used (a KV cache may be allocated at full capacity and filled as decoding goes). Query head `h`
/// reads key/value head `h / (heads / kv_heads)`: `kv_heads == heads` is multi-head attention,
/// `kv_heads == 1` multi-query, anything between grouped-query.
///
/// With `causal`, query row `i` sees keys `0 ..= i + kv_len - q_len` (the queries are the last
/// `q_len` positions of the sequence, as in decoding with a KV cache). A query row that sees no key
/// gets zeros.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    /// Independent sequences.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads`.
    pub kv_heads: usize,
    /// Query rows per head.
    pub q_len: usize,
    /// Key/value rows in use per head.
    pub kv_len: usize,
    /// Allocated key/value rows per head (row stride of the K/V tensors); at least `kv_len`.
    pub kv_capacity: usize,
    /// Features per head.
    pub head_dim: usize,
    /// Whether query row `i` is masked from keys after its own position.
    pub causal: bool,
    /// Multiplier of the logits, usually `1/sqrt(head_dim)`; finite and positive.
    pub scale: f32,
    /// Layout of the queries and the output (keys and values are always head-major: a cache).
    pub layout: Layout,
}

impl AttentionShape {
    /// Multi-head attention, non-causal, `scale = 1/sqrt(head_dim)`, `kv_capacity = kv_len`.
    /// A `const fn`, like the other constructors and the `*_scratch_len` functions, so a
    /// firmware can size a `static` buffer from a `const` shape.
    pub const fn new(
        batch: usize,
        heads: usize,
        q_len: usize,
        kv_len: usize,
        head_dim: usize,
    ) -> Self {
        AttentionShape {
            batch,
            heads,
            kv_heads: heads,
            q_len,
            kv_len,
            kv_capacity: kv_len,
            head_dim,
            causal: false,
            scale: 1.0 / sqrt_f32(head_dim as f32),
            layout: Layout::HeadMajor,
        }
    }

    /// Sets the layout of the queries and the output.
    pub const fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets the number of key/value heads (grouped-query or multi-query attention).
    pub const fn with_kv_heads(mut self, kv_heads: usize) -> Self {
        self.kv_heads = kv_heads;
        self
    }

    /// Sets the causal mask.
    pub const fn with_causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Sets the logit scale.
    pub const fn with_scale(mut self, scale: f32) -> Self {
        self.scale = scale;
        self
    }

    /// Sets the allocated rows per key/value head (the KV cache's capacity).
    pub const fn with_kv_capacity(mut self, kv_capacity: usize) -> Self {
        self.kv_capacity = kv_capacity;
        self
    }

    /// Checks the shape and returns the element counts `(q_and_out_len, kv_len)` of the tensors.
    pub const fn validate(&self) -> Result<(usize, usize)> {
        let dims = [
            (self.batch, "batch"),
            (self.heads, "heads"),
            (self.kv_heads, "kv_heads"),
            (self.head_dim, "head_dim"),
        ];
        let mut i = 0;
        while i < dims.len() {
            if dims[i].0 == 0 {
                return Err(Error::ZeroDimension(dims[i].1));
            }
            i += 1;
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::HeadsNotDivisible {
                heads: self.heads,
                kv_heads: self.kv_heads,
            });
        }
        if self.kv_capacity < self.kv_len {
            return Err(Error::LengthMismatch {
                what: "kv_capacity",
                expected: self.kv_len,
                actual: self.kv_capacity,
            });
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::BadScale);
        }
        let q = match product(&[self.batch, self.heads, self.q_len, self.head_dim]) {
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        match product(&[self.batch, self.kv_heads, self.kv_capacity, self.head_dim]) {
            Ok(kv) => Ok((q, kv)),
            Err(e) => Err(e),
        }
    }

    /// Checks the shape against the tensors' lengths.
    pub(crate) fn check_tensors<E>(&self, q: &[E], k: &[E], v: &[E], out: &[E]) -> Result<()> {
        let (q_len, kv_len) = self.validate()?;
        for (slice_len, expected, what) in [
            (q.len(), q_len, "q"),
            (k.len(), kv_len, "k"),
            (v.len(), kv_len, "v"),
            (out.len(), q_len, "out"),
        ] {
            if slice_len != expected {
                return Err(Error::LengthMismatch {
                    what,
                    expected,
                    actual: slice_len,
                });
            }
        }
        Ok(())
    }

    /// Where row `0` of query head `bh = b * heads + h` starts in the queries and the output,
    /// and the distance between consecutive rows of that head. The shape must be valid.
    #[inline]
    pub(crate) fn q_rows(&self, bh: usize) -> (usize, usize) {
        let d = self.head_dim;
        match self.layout {
            Layout::HeadMajor => (bh * self.q_len * d, d),
            Layout::TokenMajor => {
                // `heads > 0` in a valid shape; checked, so no division panic is compiled.
                let b = bh.checked_div(self.heads).unwrap_or(0);
                let h = bh.checked_rem(self.heads).unwrap_or(0);
                ((b * self.q_len * self.heads + h) * d, self.heads * d)
            }
            Layout::FrameMajor => (bh * d, self.batch * self.heads * d),
        }
    }

    /// Keys visible to query row `row`: `0..visible_keys(row)` (`kv_len` for a row past the
    /// last query). Never overflows.
    #[inline]
    pub const fn visible_keys(&self, row: usize) -> usize {
        if !self.causal || row >= self.q_len {
            return self.kv_len;
        }
        // Row `row` is sequence position `kv_len - q_len + row`; it sees keys up to that position,
        // `q_len - 1 - row` fewer than the last query row.
        self.kv_len.saturating_sub(self.q_len - 1 - row)
    }
}

/// Tile sizes of the flash algorithm: `block_q` query rows (Br) by `block_k` keys (Bc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashTiles {
    /// Query rows per tile (Br).
    pub block_q: usize,
    /// Keys per tile (Bc).
    pub block_k: usize,
}

impl Default for FlashTiles {
    fn default() -> Self {
        FlashTiles {
            block_q: 32,
            block_k: 64,
        }
    }
}

impl FlashTiles {
    /// Tiles of `block_q` query rows by `block_k` keys.
    pub const fn new(block_q: usize, block_k: usize) -> Self {
        FlashTiles { block_q, block_k }
    }

    /// Checks that both sizes are in `1..=MAX_TILE`.
    pub const fn validate(&self) -> Result<()> {
        if self.block_q == 0 || self.block_q > MAX_TILE {
            return Err(Error::BadTile("block_q"));
        }
        if self.block_k == 0 || self.block_k > MAX_TILE {
            return Err(Error::BadTile("block_k"));
        }
        Ok(())
    }

    /// Tiles for `shape` on a CPU with the usual L2 ([`FlashTiles::L2_BYTES`]):
    /// [`FlashTiles::for_caches`].
    pub const fn for_shape(shape: &AttentionShape) -> Self {
        Self::for_caches(shape, Self::L2_BYTES)
    }

    /// A core's L2 cache as [`FlashTiles::for_shape`] assumes it (1 MiB: Zen 4).
    pub const L2_BYTES: usize = 1 << 20;

    /// Tiles from the head dimension and the cache sizes, by this rule (`d = head_dim`, sizes in
    /// bytes of the `f32` the SIMD backends pack every tile into, whatever the element):
    ///
    /// - **`block_k`**: the packed key tile (`block_k·d·4`, transposed, read again by every block
    ///   of query rows) and the packed value tile (the same size, read by every block in `P·V`)
    ///   together in half of L2: `block_k = l2 / (16·d)`, rounded down to a multiple of 16 and
    ///   clamped to `16..=1024` (d = 64: 1024 keys; d = 128: 512). Long key tiles amortise each
    ///   row's per-tile work (the packing of its query, its max and sum, the rescale of its
    ///   accumulators), and the micro-kernels stream the tiles from L2 at no visible cost.
    /// - **`block_q`**: at least as many rows as keys, and up to 1024 rows while the tile's
    ///   accumulators (`block_q·d·4`) fit in half of L2: `block_q = max(block_k, l2 / (8·d))`,
    ///   the second rounded down to a multiple of 16 and clamped to `16..=1024`; at most
    ///   `q_len` (d = 64: 1024 rows; d = 128: 1024). Each key tile is transposed (and each
    ///   value tile packed) once per query tile, a cost in proportion to `1 / block_q` of the
    ///   tile's work, and where a head's keys and values do not fit in L2 (d = 128, N = 4096:
    ///   4 MiB) every query tile reads them from L3 again. The score tile
    ///   (`block_q·block_k·4` bytes, 4 MiB at d = 64) is larger than L2; it is written and read
    ///   row block by row block, and measured no slower for it.
    ///
    /// Measured on Zen 4 (thread CPU time, 1x8x{1024,4096}x64 and 1x8x4096x128, f32 and bf16):
    /// 512-1024 x 512-1024 tiles ran 1.03-1.07x faster than 256 x 256 and within 2% of each
    /// other (docs/results/performance.md; `--bench flash_shapes tiles`); at d = 128, 1024 x 512
    /// ran 1.00-1.03x as fast as 512 x 512 (f32 and bf16, causal and not), while 2048 rows at
    /// d = 64 were no faster (causal: 0.89-0.97x).
    ///
    /// `block_k` sets the numerics (the number of rescalings); `block_q` only how many rows share
    /// a packed key tile, so the outputs do not depend on it. Any tiles may be passed instead
    /// ([`FlashTiles::new`]).
    pub const fn for_caches(shape: &AttentionShape, l2: usize) -> Self {
        let d = if shape.head_dim == 0 {
            1
        } else {
            shape.head_dim
        };
        let block_k = clamp16(l2 / 16 / d, 16, 1024);
        let rows = clamp16(l2 / 8 / d, 16, 1024);
        let mut block_q = if rows > block_k { rows } else { block_k };
        if shape.q_len < block_q {
            block_q = if shape.q_len == 0 { 1 } else { shape.q_len };
        }
        FlashTiles { block_q, block_k }
    }
}

/// `x` rounded down to a multiple of 16, then clamped to `lo..=hi`.
const fn clamp16(x: usize, lo: usize, hi: usize) -> usize {
    let x = x / 16 * 16;
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}
