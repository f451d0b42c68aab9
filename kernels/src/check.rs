//! The argument checks every kernel shares, with one argument order: what is checked, the value
//! the caller gave, then the value the kernel needs.

use crate::{Error, Result};

/// `?` for `const fn`s (where the `?` operator is not allowed yet): the `Ok` value, or returns
/// the `Err`.
macro_rules! try_const {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(error) => return Err(error),
        }
    };
}
pub(crate) use try_const;

/// `Err(LengthMismatch)` unless `actual == expected`.
#[inline]
pub(crate) const fn length(what: &'static str, actual: usize, expected: usize) -> Result<()> {
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
pub(crate) const fn mul(a: usize, b: usize) -> Result<usize> {
    match a.checked_mul(b) {
        Some(p) => Ok(p),
        None => Err(Error::Overflow),
    }
}

/// `a + b`, or `Err(Overflow)`.
#[inline]
pub(crate) const fn add(a: usize, b: usize) -> Result<usize> {
    match a.checked_add(b) {
        Some(s) => Ok(s),
        None => Err(Error::Overflow),
    }
}

/// The sum of `terms`, or `Err(Overflow)`.
#[inline]
pub(crate) const fn sum(terms: &[usize]) -> Result<usize> {
    let (mut total, mut i) = (0usize, 0);
    while i < terms.len() {
        total = match total.checked_add(terms[i]) {
            Some(t) => t,
            None => return Err(Error::Overflow),
        };
        i += 1;
    }
    Ok(total)
}

/// The product of `factors`, or `Err(Overflow)`.
#[inline]
pub(crate) const fn product(factors: &[usize]) -> Result<usize> {
    let (mut total, mut i) = (1usize, 0);
    while i < factors.len() {
        total = match total.checked_mul(factors[i]) {
            Some(t) => t,
            None => return Err(Error::Overflow),
        };
        i += 1;
    }
    Ok(total)
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
pub(crate) const fn require(ok: bool, what: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::BadHyperparameter(what))
    }
}
