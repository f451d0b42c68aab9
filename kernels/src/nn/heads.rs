//! Transposes between token-major `[tokens, heads, head_dim]` rows (what projections read and
//! write) and head-major `[heads, tokens, head_dim]` blocks (what attention reads and writes).

use crate::check::{length, product};
use crate::Result;

/// Copies every `head_dim`-long feature vector of `src` to `dst`, from token-major to head-major
/// order when `to_head_major`, else back.
fn transpose(
    src: &[f32],
    dst: &mut [f32],
    tokens: usize,
    heads: usize,
    head_dim: usize,
    to_head_major: bool,
) -> Result<()> {
    let len = product(&[tokens, heads, head_dim])?;
    length("transpose source", src.len(), len)?;
    length("transpose destination", dst.len(), len)?;
    for t in 0..tokens {
        for h in 0..heads {
            let token_major = (t * heads + h) * head_dim;
            let head_major = (h * tokens + t) * head_dim;
            let (from, to) = if to_head_major {
                (token_major, head_major)
            } else {
                (head_major, token_major)
            };
            if let (Some(s), Some(d)) = (
                src.get(from..from + head_dim),
                dst.get_mut(to..to + head_dim),
            ) {
                d.copy_from_slice(s);
            }
        }
    }
    Ok(())
}

/// `[tokens, heads, head_dim]` → `[heads, tokens, head_dim]`.
pub(crate) fn to_head_major(
    src: &[f32],
    dst: &mut [f32],
    tokens: usize,
    heads: usize,
    head_dim: usize,
) -> Result<()> {
    transpose(src, dst, tokens, heads, head_dim, true)
}

/// `[heads, tokens, head_dim]` → `[tokens, heads, head_dim]`.
pub(crate) fn to_token_major(
    src: &[f32],
    dst: &mut [f32],
    tokens: usize,
    heads: usize,
    head_dim: usize,
) -> Result<()> {
    transpose(src, dst, tokens, heads, head_dim, false)
}
