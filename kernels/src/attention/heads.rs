//! Pieces both attention algorithms share: per-head slicing and the overflow fix-up of logits.

use crate::attention::AttentionShape;
use crate::{Accumulator, Element, Error, Result};

/// The key and value rows of the KV head that query head `(b, h)` reads, given the flat index
/// `bh = b * heads + h`.
#[inline]
pub(crate) fn kv_head<'a, E>(
    shape: &AttentionShape,
    bh: usize,
    k: &'a [E],
    v: &'a [E],
) -> Result<(&'a [E], &'a [E])> {
    let group = shape.heads / shape.kv_heads;
    let (b, h) = (bh / shape.heads, bh % shape.heads);
    let stride = shape.kv_capacity * shape.head_dim;
    let start = (b * shape.kv_heads + h / group) * stride;
    let used = shape.kv_len * shape.head_dim;
    let end = start + used;
    match (k.get(start..end), v.get(start..end)) {
        (Some(kh), Some(vh)) => Ok((kh, vh)),
        _ => Err(Error::LengthMismatch {
            what: "k/v",
            expected: end,
            actual: k.len().min(v.len()),
        }),
    }
}

/// Recomputes in `f64` every logit that came out infinite or NaN and saturates it into the
/// accumulator's range. A NaN input stays NaN; finite inputs never give a non-finite logit.
#[inline]
pub(crate) fn fix_overflowed_scores<E: Element, A: Accumulator>(
    q: &[E],
    keys: &[E],
    scale: f32,
    scores: &mut [A],
) {
    let d = q.len();
    if d == 0 || scores.iter().all(|s| s.is_finite()) {
        return;
    }
    for (key, s) in keys.chunks_exact(d).zip(scores.iter_mut()) {
        if !s.is_finite() {
            let dot: f64 = q
                .iter()
                .zip(key)
                .map(|(&a, &b)| a.to_f64() * b.to_f64())
                .sum();
            *s = A::saturating_from_f64(dot * scale as f64);
        }
    }
}
