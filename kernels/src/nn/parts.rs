//! Splitting one caller slice into consecutive parts of known lengths, all borrowed at once
//! (a layer's weight gradients, a layer's saved activations).

use crate::check::length;
use crate::{Error, Result};

/// The sum of `lens`, or `Err(Overflow)`.
pub(crate) fn total(lens: &[usize]) -> Result<usize> {
    lens.iter()
        .try_fold(0usize, |acc, &n| acc.checked_add(n).ok_or(Error::Overflow))
}

/// `buf`, which must hold exactly `lens` summed, split into parts of those lengths.
pub(crate) fn split_parts_mut<'a, T, const N: usize>(
    what: &'static str,
    buf: &'a mut [T],
    lens: [usize; N],
) -> Result<[&'a mut [T]; N]> {
    length(what, buf.len(), total(&lens)?)?;
    let mut rest = buf;
    Ok(lens.map(|len| {
        let taken = core::mem::take(&mut rest);
        let at = len.min(taken.len());
        let (part, tail) = taken.split_at_mut(at);
        rest = tail;
        part
    }))
}

/// `buf`, which must hold exactly `lens` summed, split into parts of those lengths.
pub(crate) fn split_parts<'a, T, const N: usize>(
    what: &'static str,
    buf: &'a [T],
    lens: [usize; N],
) -> Result<[&'a [T]; N]> {
    length(what, buf.len(), total(&lens)?)?;
    let mut rest = buf;
    Ok(lens.map(|len| {
        let (part, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        part
    }))
}
