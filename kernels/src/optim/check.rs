//! Argument checks shared by every optimizer step: slice lengths, finiteness, hyperparameter ranges.

use crate::{Error, Result};

/// `Err(LengthMismatch)` unless `actual == expected`.
#[inline]
pub(crate) fn same_len(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            actual,
        })
    }
}

/// `Err(NonFinite(what))` when any value is NaN or infinite.
///
/// Integer max over the magnitude bits: associative, so the loop vectorises, and there is no
/// early exit to defeat it. A value is non-finite exactly when its exponent bits are all ones.
#[inline]
pub(crate) fn all_finite(what: &'static str, values: &[f32]) -> Result<()> {
    const LANES: usize = 16;
    let mut acc = [0u32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a = (*a).max(x.to_bits() & 0x7fff_ffff);
        }
    }
    let mut max = acc.iter().copied().fold(0, u32::max);
    for x in chunks.remainder() {
        max = max.max(x.to_bits() & 0x7fff_ffff);
    }
    if max >= 0x7f80_0000 {
        Err(Error::NonFinite(what))
    } else {
        Ok(())
    }
}

/// `Err(BadHyperparameter(what))` unless `ok`.
#[inline]
pub(crate) fn require(ok: bool, what: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::BadHyperparameter(what))
    }
}
