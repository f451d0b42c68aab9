//! Exact attention: one row, chosen rows, or a whole problem with causal masking and GQA.

use crate::softmax::weighted_row;

/// One query row against `n` key/value rows, all visible: `softmax(scale · q·Kᵀ) · V`.
///
/// `keys` and `values` are `n × d` row-major with `d = q.len()`. Every logit is exact (exact dot
/// products times the scale, with no overflow however large), the softmax weights are `exp` at 256
/// bits after subtracting the exact maximum, the weighted sums are exact sums of those weights
/// times the values, and each output is rounded to `f64` once, from the exact quotient of those
/// sums. The result differs from the true real number only by the 2^-255 relative error of each
/// weight, amplified at worst by the cancellation in `Σ w·v` (see the crate docs).
///
/// `n == 0` gives zeros; any NaN or infinity among the inputs read (or a non-finite scale) gives
/// an all-NaN row.
///
/// # Panics
/// If `keys.len() != values.len()` or `keys.len()` is not a multiple of `q.len()`.
pub fn attention_row(q: &[f64], keys: &[f64], values: &[f64], scale: f64) -> Vec<f64> {
    weighted_row(q, keys, values, scale)
}

/// The shape of a whole attention problem, with the kernels' conventions.
///
/// Queries and output are `[batch, heads, q_len, head_dim]`, keys and values
/// `[batch, kv_heads, kv_len, head_dim]`, all row-major. Query head `h` reads key/value head
/// `h / (heads / kv_heads)`. With `causal`, query row `i` sees keys `0 ..= i + kv_len − q_len`
/// (the queries are the last `q_len` positions); a row that sees no key gets zeros.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReferenceShape {
    /// Independent sequences.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads`.
    pub kv_heads: usize,
    /// Query rows per head.
    pub q_len: usize,
    /// Key/value rows per head.
    pub kv_len: usize,
    /// Features per head.
    pub head_dim: usize,
    /// Whether query row `i` is masked from keys after its own position.
    pub causal: bool,
    /// Multiplier of the logits.
    pub scale: f64,
}

impl ReferenceShape {
    /// Multi-head, non-causal attention with `scale = 1/sqrt(head_dim)` (as an `f64`).
    pub fn new(batch: usize, heads: usize, q_len: usize, kv_len: usize, head_dim: usize) -> Self {
        ReferenceShape {
            batch,
            heads,
            kv_heads: heads,
            q_len,
            kv_len,
            head_dim,
            causal: false,
            scale: 1.0 / (head_dim as f64).sqrt(),
        }
    }

    /// Rows of queries (and of the output): `batch · heads · q_len`.
    pub fn rows(&self) -> usize {
        self.batch * self.heads * self.q_len
    }

    /// Keys visible to query row `i` of a head: `0..visible_keys(i)`.
    pub fn visible_keys(&self, i: usize) -> usize {
        if !self.causal {
            return self.kv_len;
        }
        (i + 1 + self.kv_len)
            .saturating_sub(self.q_len)
            .min(self.kv_len)
    }

    /// Panics unless the shape is usable and the tensors have its lengths.
    fn check(&self, q: &[f64], k: &[f64], v: &[f64]) {
        assert!(
            self.kv_heads > 0 && self.heads.is_multiple_of(self.kv_heads),
            "kv_heads ({}) must divide heads ({})",
            self.kv_heads,
            self.heads
        );
        let q_elements = self.rows() * self.head_dim;
        let kv_elements = self.batch * self.kv_heads * self.kv_len * self.head_dim;
        assert_eq!(q.len(), q_elements, "q length");
        assert_eq!(k.len(), kv_elements, "k length");
        assert_eq!(v.len(), kv_elements, "v length");
    }

    /// `(query, keys, values)` slices read by flat row `row` of `batch · heads · q_len`.
    fn row_slices<'a>(
        &self,
        q: &'a [f64],
        k: &'a [f64],
        v: &'a [f64],
        row: usize,
    ) -> (&'a [f64], &'a [f64], &'a [f64]) {
        let d = self.head_dim;
        let i = row % self.q_len;
        let head = (row / self.q_len) % self.heads;
        let b = row / (self.q_len * self.heads);
        let kv_head = head / (self.heads / self.kv_heads);
        let kv_base = (b * self.kv_heads + kv_head) * self.kv_len * d;
        let visible = self.visible_keys(i) * d;
        (
            &q[row * d..(row + 1) * d],
            &k[kv_base..kv_base + visible],
            &v[kv_base..kv_base + visible],
        )
    }
}

/// The whole attention output, `[batch, heads, q_len, head_dim]`, each row by [`attention_row`].
///
/// # Panics
/// If `kv_heads` does not divide `heads` or a tensor's length does not match the shape.
pub fn attention(shape: &ReferenceShape, q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
    let rows: Vec<usize> = (0..shape.rows()).collect();
    attention_rows(shape, q, k, v, &rows).concat()
}

/// Just the output rows asked for, by flat index into `batch · heads · q_len` (in the order
/// given); each has `head_dim` values. Rows are independent, so studies at long sequence lengths
/// sample a few exactly.
///
/// # Panics
/// As [`attention`], and if a row index is out of range.
pub fn attention_rows(
    shape: &ReferenceShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    rows: &[usize],
) -> Vec<Vec<f64>> {
    rows_with(shape, q, k, v, rows, attention_row)
}

/// An attention-row function: `(q, keys, values, scale) -> output row`.
pub(crate) type RowFunction = fn(&[f64], &[f64], &[f64], f64) -> Vec<f64>;

/// The rows asked for, each computed by `row` from its query, visible keys and values.
pub(crate) fn rows_with(
    shape: &ReferenceShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    rows: &[usize],
    row: RowFunction,
) -> Vec<Vec<f64>> {
    shape.check(q, k, v);
    rows.iter()
        .map(|&index| {
            assert!(index < shape.rows(), "row {index} out of range");
            let (q_row, keys, values) = shape.row_slices(q, k, v, index);
            row(q_row, keys, values, shape.scale)
        })
        .collect()
}
