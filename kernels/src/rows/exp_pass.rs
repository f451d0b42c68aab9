//! The softmax's exponential pass over one row, written once for both places its results go:
//! back over the scores as `f32` (`rows::lanes::exp_sum`), or rounded to bf16 pairs and packed
//! over the row's first slots (`rows::pairs::exp_sum_packed`, for `P·V` by `vdpbf16ps`).

use super::pairs::store_line;
use crate::simd::exp_clamped;
use crate::simd::{Lanes, LANES};

/// `exp(s[j] − m)` for the row's first `count` scores (`count <= row.len()`); returns their
/// sum. Two chunks a step (their exponentials are independent chains the core can overlap),
/// then the rest: a chunk or less, then less, the tail padded with `−inf`; the sum takes them in
/// that order. `PACK = false`: each exponential replaces its score. `PACK = true`: the two
/// chunks of step `j` become line `j` of the packed row (`rows::pairs`; the caller checked
/// that `row` holds the lines). Without `HIGH_CLAMP` only for `m` at least every score (after
/// the max pass), where `exp`'s upper clamp changes no lane: the same bits, one operation less.
#[inline(always)]
pub(crate) fn exp_pass<L: Lanes, const HIGH_CLAMP: bool, const PACK: bool>(
    l: L,
    row: &mut [f32],
    count: usize,
    m: f32,
) -> f32 {
    let mv = l.splat(m);
    let mut sum = l.splat(0.0);
    let whole = count / (2 * LANES);
    for j in 0..whole {
        let Some(x) = row
            .get_mut(2 * LANES * j..)
            .and_then(|x| x.first_chunk_mut::<{ 2 * LANES }>())
        else {
            break;
        };
        let (c0, c1) = x.split_at_mut(LANES);
        let (Some(c0), Some(c1)) = (c0.first_chunk_mut(), c1.first_chunk_mut()) else {
            break;
        };
        let e0 = exp_clamped::<L, HIGH_CLAMP>(l, l.sub(l.load(c0), mv));
        let e1 = exp_clamped::<L, HIGH_CLAMP>(l, l.sub(l.load(c1), mv));
        sum = l.add(l.add(sum, e0), e1);
        if PACK {
            store_line(l, row, j, e0, e1);
        } else {
            l.store(e0, c0);
            l.store(e1, c1);
        }
    }
    let at = whole * 2 * LANES;
    if at < count {
        let e0 = exp_clamped::<L, HIGH_CLAMP>(l, shifted(l, row, at, count, m));
        sum = l.add(sum, e0);
        let e1 = if at + LANES < count {
            let e1 = exp_clamped::<L, HIGH_CLAMP>(l, shifted(l, row, at + LANES, count, m));
            sum = l.add(sum, e1);
            e1
        } else {
            l.splat(0.0)
        };
        if PACK {
            store_line(l, row, whole, e0, e1);
        } else {
            store_upto(l, row, at, count, e0);
            store_upto(l, row, at + LANES, count, e1);
        }
    }
    l.reduce_add(sum)
}

/// `row[from .. count]`'s first 16 scores minus `m`: a whole chunk by one vector subtraction, a
/// tail by scalar ones, padded with `−inf` (whose exponential is `0`).
#[inline(always)]
fn shifted<L: Lanes>(l: L, row: &[f32], from: usize, count: usize, m: f32) -> L::F {
    let s = row.get(from..count).unwrap_or(&[]);
    if let Some(c) = s.first_chunk::<LANES>() {
        return l.sub(l.load(c), l.splat(m));
    }
    let mut x = [f32::NEG_INFINITY; LANES];
    for (x, &s) in x.iter_mut().zip(s) {
        *x = s - m;
    }
    l.load(&x)
}

/// `v`'s lanes into `row[from .. count]`, at most 16 of them (none if `from >= count`).
#[inline(always)]
fn store_upto<L: Lanes>(l: L, row: &mut [f32], from: usize, count: usize, v: L::F) {
    let Some(out) = row.get_mut(from..count) else {
        return;
    };
    match out.first_chunk_mut::<LANES>() {
        Some(c) => l.store(v, c),
        None => l.store_partial(v, out),
    }
}
