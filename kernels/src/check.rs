//! The argument checks every kernel shares, with one argument order: what is checked, the value
//! the caller gave, then the value the kernel needs.

use crate::{Error, Result};

/// `Err(LengthMismatch)` unless `actual == expected`.
#[inline]
pub(crate) fn length(what: &'static str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            actual,
        })
    }
}

/// `a * b`, or `Err(Overflow)`.
#[inline]
pub(crate) fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::Overflow)
}

/// The product of `factors`, or `Err(Overflow)`.
#[inline]
pub(crate) fn product(factors: &[usize]) -> Result<usize> {
    factors.iter().try_fold(1usize, |acc, &f| mul(acc, f))
}

/// Splits off the first `len` elements of a scratch slice, or reports it too small.
#[inline]
pub(crate) fn split<T>(scratch: &mut [T], len: usize) -> Result<(&mut [T], &mut [T])> {
    let actual = scratch.len();
    scratch
        .split_at_mut_checked(len)
        .ok_or(Error::ScratchTooSmall {
            needed: len,
            actual,
        })
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
