//! Flash's probabilities as bf16 pairs, made in the exponential's pass: on a token whose
//! `P·V` multiplies bf16 pairs (`avx512bf16`'s `vdpbf16ps`, `simd/x86/bf16_pv.rs`), a row's
//! exponentials are rounded to bf16 (`Lanes::bf16_store_pairs`) and packed in place over the
//! row's own score slots while they are still in registers, instead of being stored as `f32`
//! and read back by a packing pass of `P·V` (about 4% of a bf16 prefill on Zen 4).
//!
//! A packed row of `count` probabilities holds, from its first slot, `⌈count/32⌉` lines of 16
//! words; word `m` is `(p̂[2m], p̂[2m+1])` (low half, high half), zero past the count up to the
//! line's end: exactly what `P·V`'s own packing writes, from the same `f32` exponentials by the
//! same instruction, so the bits of the output do not change. Line `j` is written after the
//! scores `32j .. 32j + 32` it comes from were read, and lies below the scores not yet read
//! (`16j + 16 <= 32j` from `j = 1`), so the packing never overwrites a score it still needs.

use super::exp_pass::exp_pass;
use crate::simd::lanes::{bf16_packed_len as packed_len, Lanes, LANES};

/// Whether flash packs a tile's probabilities in pairs as it makes them: on a token with bf16
/// pair products for bf16 elements (`bf16_pairs`), with rows of at least 16 slots (so a row's
/// lines, `16⌈count/32⌉` words for `count <= ld`, fit in its slots) and all `rows` rows of
/// `ld` slots in the buffer of `len`. The softmax step and `P·V` decide by this one rule.
#[inline(always)]
pub(crate) fn packs(bf16_pairs: bool, ld: usize, rows: usize, len: usize) -> bool {
    bf16_pairs && ld >= LANES && rows.checked_mul(ld).is_some_and(|n| n <= len)
}

/// `exp(s[j] − m)` for the row's first `count` scores, summed exactly as `lanes::exp_sum` sums
/// them (the same pass, [`exp_pass`]), and stored as packed bf16 pairs over the row's first
/// slots. `None` (nothing written) if `row` is shorter than `count` or than the packed lines.
#[inline(always)]
pub(crate) fn exp_sum_packed<L: Lanes>(l: L, row: &mut [f32], count: usize, m: f32) -> Option<f32> {
    if row.len() < count.max(packed_len(count)) {
        return None;
    }
    Some(exp_pass::<L, false, true>(l, row, count, m))
}

/// Line `j` of a packed row: `lo` and `hi` (probabilities `32j ..`) rounded in pairs.
#[inline(always)]
pub(super) fn store_line<L: Lanes>(l: L, row: &mut [f32], j: usize, lo: L::F, hi: L::F) {
    if let Some(out) = row
        .get_mut(LANES * j..)
        .and_then(|x| x.first_chunk_mut::<LANES>())
    {
        l.bf16_store_pairs(lo, hi, out);
    }
}

/// Packs a row's first `count` probabilities (`f32`, as `max_exp_sum` left them) in place, as
/// [`exp_sum_packed`] leaves them; nothing if `row` is too short for the lines.
#[inline(always)]
pub(crate) fn pack_row<L: Lanes>(l: L, row: &mut [f32], count: usize) {
    if row.len() < count.max(packed_len(count)) {
        return;
    }
    for j in 0..count.div_ceil(2 * LANES) {
        let at = 2 * LANES * j;
        let part = |from: usize| l.load_partial(row.get(from..count).unwrap_or(&[]));
        let (lo, hi) = (part(at), part(at + LANES));
        store_line(l, row, j, lo, hi);
    }
}

/// Turns each of a tile's `rows` packed rows (`ld` slots apart, row `r` with `count(r)`
/// probabilities) back into `f32` in place: each probability is its bf16 value exactly.
pub(crate) fn unpack_rows(p: &mut [f32], ld: usize, rows: usize, count: impl Fn(usize) -> usize) {
    for r in 0..rows {
        let c = count(r);
        let Some(row) = p.get_mut(r * ld..r * ld + c.max(packed_len(c))) else {
            continue;
        };
        // From the last pair down: pair `m` goes to slots `2m, 2m + 1`, at or above every word
        // still to be read.
        for m in (0..c.div_ceil(2)).rev() {
            let w = row.get(m).map_or(0, |x| x.to_bits());
            if let Some(x) = row.get_mut(2 * m) {
                *x = f32::from_bits(w << 16);
            }
            if 2 * m + 1 < c {
                if let Some(x) = row.get_mut(2 * m + 1) {
                    *x = f32::from_bits(w & 0xFFFF_0000);
                }
            }
        }
    }
}
