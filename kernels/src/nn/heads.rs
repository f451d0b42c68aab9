//! Transposes between token-major `[tokens, heads, head_dim]` rows (what projections read and
//! write) and head-major `[heads, tokens, head_dim]` blocks (what attention reads and writes).

use crate::check::{length, product};
use crate::Result;

fn check(src: usize, dst: usize, tokens: usize, heads: usize, head_dim: usize) -> Result<()> {
    let len = product(&[tokens, heads, head_dim])?;
    length("transpose source", src, len)?;
    length("transpose destination", dst, len)
}

/// `[tokens, heads, head_dim]` → `[heads, tokens, head_dim]`.
pub(crate) fn to_head_major(
    src: &[f32],
    dst: &mut [f32],
    tokens: usize,
    heads: usize,
    head_dim: usize,
) -> Result<()> {
    check(src.len(), dst.len(), tokens, heads, head_dim)?;
    if heads == 0 || head_dim == 0 {
        return Ok(());
    }
    for (t, row) in src.chunks_exact(heads * head_dim).enumerate() {
        for (h, feat) in row.chunks_exact(head_dim).enumerate() {
            let at = (h * tokens + t) * head_dim;
            if let Some(d) = dst.get_mut(at..at + head_dim) {
                d.copy_from_slice(feat);
            }
        }
    }
    Ok(())
}

/// `[heads, tokens, head_dim]` → `[tokens, heads, head_dim]`.
pub(crate) fn to_token_major(
    src: &[f32],
    dst: &mut [f32],
    tokens: usize,
    heads: usize,
    head_dim: usize,
) -> Result<()> {
    check(src.len(), dst.len(), tokens, heads, head_dim)?;
    if heads == 0 || head_dim == 0 {
        return Ok(());
    }
    for (t, row) in dst.chunks_exact_mut(heads * head_dim).enumerate() {
        for (h, feat) in row.chunks_exact_mut(head_dim).enumerate() {
            let at = (h * tokens + t) * head_dim;
            if let Some(s) = src.get(at..at + head_dim) {
                feat.copy_from_slice(s);
            }
        }
    }
    Ok(())
}
