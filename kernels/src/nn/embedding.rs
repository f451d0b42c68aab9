//! Token embedding: a lookup of rows of a `[vocab, dim]` table.

use crate::check::{length, mul};
use crate::{Element, Error, Result};

/// `hidden[i] = table[tokens[i]]` for a `[vocab, dim]` table; `hidden` is `[tokens.len(), dim]`.
/// A token `>= vocab` is `Err(TokenOutOfRange)`.
pub fn embedding_forward<W: Element>(
    vocab: usize,
    dim: usize,
    table: &[W],
    tokens: &[u32],
    hidden: &mut [f32],
) -> Result<()> {
    length("embedding table", table.len(), mul(vocab, dim)?)?;
    length("hidden", hidden.len(), mul(tokens.len(), dim)?)?;
    check_tokens(tokens, vocab)?;
    if dim == 0 {
        return Ok(());
    }
    for (&t, row) in tokens.iter().zip(hidden.chunks_exact_mut(dim)) {
        let src = token_row(table, t, vocab, dim)?;
        for (h, &w) in row.iter_mut().zip(src) {
            *h = w.to_f32();
        }
    }
    Ok(())
}

/// Gradient of the lookup, *added* into `d_table` (`[vocab, dim]`): `d_table[tokens[i]] += d_hidden[i]`.
pub fn embedding_backward(
    vocab: usize,
    dim: usize,
    tokens: &[u32],
    d_hidden: &[f32],
    d_table: &mut [f32],
) -> Result<()> {
    length("d_table", d_table.len(), mul(vocab, dim)?)?;
    length("d_hidden", d_hidden.len(), mul(tokens.len(), dim)?)?;
    check_tokens(tokens, vocab)?;
    if dim == 0 {
        return Ok(());
    }
    for (&t, row) in tokens.iter().zip(d_hidden.chunks_exact(dim)) {
        let start = token_start(t, vocab, dim)?;
        let dst = d_table
            .get_mut(start..start + dim)
            .ok_or(Error::TokenOutOfRange {
                token: t as usize,
                vocab,
            })?;
        for (d, &g) in dst.iter_mut().zip(row) {
            *d += g;
        }
    }
    Ok(())
}

/// Every token before any row is written, so that an `Err` leaves the output untouched.
fn check_tokens(tokens: &[u32], vocab: usize) -> Result<()> {
    match tokens.iter().find(|&&t| t as usize >= vocab) {
        Some(&t) => Err(Error::TokenOutOfRange {
            token: t as usize,
            vocab,
        }),
        None => Ok(()),
    }
}

fn token_start(t: u32, vocab: usize, dim: usize) -> Result<usize> {
    let t = t as usize;
    if t >= vocab {
        return Err(Error::TokenOutOfRange { token: t, vocab });
    }
    mul(t, dim)
}

fn token_row<W>(table: &[W], t: u32, vocab: usize, dim: usize) -> Result<&[W]> {
    let start = token_start(t, vocab, dim)?;
    table.get(start..start + dim).ok_or(Error::TokenOutOfRange {
        token: t as usize,
        vocab,
    })
}
