//! Flash's `O += P̂·V` on bf16 values by `vdpbf16ps` (AVX512_BF16): the
//! `Lanes::bf16_tile_accumulate` of `Avx512Bf16`.
//!
//! `vdpbf16ps` multiplies pairs of bf16: in 32-bit lane `i`, `acc[i] += a[2i+1]·b[2i+1]`, then
//! `acc[i] += a[2i]·b[2i]` (Intel's pseudocode; the odd element first), each product exact (two
//! 8-bit significands) and each sum rounded to nearest even, with subnormal inputs (the
//! accumulator's too) read as zero and subnormal results flushed to zero. So `P·V` runs over
//! the keys in pairs `(2m, 2m+1)`:
//!
//! - the value tile is packed pair-interleaved into the work space: for pair `m` and output
//!   element `i`, one 32-bit word holds `(V[2m][i], V[2m+1][i])` (low half, high half), so 16
//!   outputs' pairs are one operand; pairs are `16·⌈d/16⌉` words apart (zero-padded), and an odd
//!   last key is paired with a zero key;
//! - each row's probabilities are rounded to bf16 by `vcvtne2ps2bf16` (nearest, ties to even:
//!   FlashAttention-2's rounding of `P`), zero past the row's count; the bf16 sequence
//!   `p̂[0], p̂[1], …` is the row's pairs in order. Flash hands them over already packed so
//!   (`Probabilities::Packed`: its exponential pass rounds them in registers, `rows::pairs`);
//!   other callers hand over `f32`, packed here. That instruction reads a subnormal `f32` as
//!   zero, so a probability below `2^-126` contributes nothing (as a bf16 subnormal would not
//!   through `vdpbf16ps`);
//! - blocks of 4 rows × 4 chunks of 16 outputs stay in registers while the value pairs stream
//!   past; each row's pair `(p̂[2m], p̂[2m+1])` is broadcast as one 32-bit word:
//!   `acc += p̂[2m+1]·V[2m+1]`, then `acc += p̂[2m]·V[2m]`.
//!
//! Every output element goes through the same operations in the same order whichever block
//! computes it: the pairs every row of a block sees (`⌊count/2⌋` of the block's first row), then
//! the row's own whole pairs, and, for an odd count, its last key paired with a zero key (the
//! value pair's high half masked to zero, so an unseen non-finite value is never multiplied by
//! 0). Tiles of fewer than 4 rows (decode) interleave the pairs in registers instead of packing
//! them: the same operations, so a row's bits do not depend on its tile's rows.

use super::bf16_pairs::{
    pack_probabilities, prefix_mask, Bf16, Interleaved, Packed, Pairs, Probabilities,
};
use crate::simd::lanes::{bf16_packed_len as packed_len, LANES};
use core::arch::x86_64::*;
use core::ops::Range;
use half::bf16;

/// Query rows of a register block, and tiles smaller than this are not packed.
const BLOCK_ROWS: usize = 4;

/// Chunks of 16 outputs per row of a register block.
const GROUP: usize = 4;

/// `n` rounded up to whole 16-lane lines, `None` on overflow.
const fn lines(n: usize) -> Option<usize> {
    n.div_ceil(LANES).checked_mul(LANES)
}

/// `Lanes::bf16_tile_accumulate` of the AVX512_BF16 token (see the module docs), in the work
/// space `lanes::bf16_pair_work_len` counts. `false` (nothing done) for `d = 0`, short `values`
/// or `p`, or too small a `work`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn tile_accumulate(
    t: Bf16,
    acc: &mut [f32],
    d: usize,
    p: Probabilities<'_>,
    ld: usize,
    count: impl Fn(usize) -> usize,
    keys: usize,
    values: &[bf16],
    work: &mut [f32],
) -> bool {
    if d == 0 {
        return false;
    }
    let rows = acc.len() / d;
    let count = |r: usize| count(r).min(keys);
    let pairs = keys.div_ceil(2);
    let chunks = d.div_ceil(LANES);
    let (Some(stride), Some(p_stride)) = (lines(d), lines(pairs)) else {
        return false;
    };
    let Some(values) = keys.checked_mul(d).and_then(|n| values.get(..n)) else {
        return false;
    };
    let blocked = rows >= BLOCK_ROWS;
    let v_len = if blocked {
        pairs.checked_mul(stride)
    } else {
        Some(0)
    };
    let p_len = match p {
        Probabilities::Unrounded(_) => rows.checked_mul(p_stride),
        Probabilities::Packed(_) => Some(0),
    };
    let (Some(v_len), Some(p_len)) = (v_len, p_len) else {
        return false;
    };
    let Some((vp, pp)) = work.split_at_mut_checked(v_len) else {
        return false;
    };
    let Some(pp) = pp.get_mut(..p_len) else {
        return false;
    };
    // Row `r`'s probability pairs: `pp_ld` apart in `pp_all`, its whole lines.
    let (pp_all, pp_ld) = match p {
        Probabilities::Unrounded(p) => {
            if (0..rows).any(|r| p.get(r * ld..r * ld + count(r)).is_none()) {
                return false;
            }
            for (r, dst) in pp.chunks_exact_mut(p_stride.max(1)).enumerate() {
                let src = p.get(r * ld..r * ld + count(r)).unwrap_or(&[]);
                pack_probabilities(t, src, dst);
            }
            (&*pp, p_stride)
        }
        Probabilities::Packed(p) => (p, ld),
    };
    let pp_row = |r: usize| {
        let at = r * pp_ld;
        pp_all.get(at..at + packed_len(count(r))).unwrap_or(&[])
    };
    if (0..rows).any(|r| pp_row(r).len() < packed_len(count(r))) {
        return false;
    }
    let interleaved = Interleaved { values, d, keys };
    if !blocked {
        for (r, acc_row) in acc.chunks_exact_mut(d).enumerate() {
            let c = count(r);
            let (pairs, lone) = (0..c / 2, c % 2 == 1);
            let row = Row {
                pp: pp_row(r),
                pairs,
                lone,
                values,
                d,
            };
            // 64 and then 32 outputs at a time by unpacking two value rows, the rest by chunks.
            let mut o = 0;
            while o + 4 * LANES <= d {
                unpacked::<2>(t, acc_row, o, &row);
                o += 4 * LANES;
            }
            if o + 2 * LANES <= d {
                unpacked::<1>(t, acc_row, o, &row);
                o += 2 * LANES;
            }
            let (pairs, lone) = (row.pairs, row.lone);
            let c0 = o / LANES;
            by_chunks::<1>(
                t,
                acc_row,
                d,
                c0,
                chunks,
                [row.pp],
                pairs,
                lone,
                interleaved,
            );
        }
        return true;
    }
    for m in 0..pairs {
        for c in 0..chunks {
            if let Some(out) = vp
                .get_mut(m * stride + c * LANES..)
                .and_then(|x| x.first_chunk_mut::<LANES>())
            {
                let x = interleaved.pair(t, m, c);
                // SAFETY: AVX-512F is present; `out` is 16 writable `f32`, 64 bytes.
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), x) };
            }
        }
    }
    let packed = Packed { vp: &*vp, stride };
    let mut r0 = 0;
    while r0 < rows {
        let block = BLOCK_ROWS.min(rows - r0);
        let Some(acc_block) = acc.get_mut(r0 * d..(r0 + block) * d) else {
            break;
        };
        // Counts grow with the row: the block's first row sees the fewest keys.
        let shared = if block == BLOCK_ROWS {
            count(r0) / 2
        } else {
            0
        };
        if shared > 0 {
            let pp_rows: [&[f32]; BLOCK_ROWS] = core::array::from_fn(|i| pp_row(r0 + i));
            let range = 0..shared;
            by_chunks::<BLOCK_ROWS>(t, acc_block, d, 0, chunks, pp_rows, range, false, packed);
        }
        // Each row's own remaining pairs, and its lone last key, continuing in key order.
        for (i, acc_row) in acc_block.chunks_exact_mut(d).enumerate() {
            let c = count(r0 + i);
            let (pairs, lone) = (shared..c / 2, c % 2 == 1);
            if !pairs.is_empty() || lone {
                by_chunks::<1>(
                    t,
                    acc_row,
                    d,
                    0,
                    chunks,
                    [pp_row(r0 + i)],
                    pairs,
                    lone,
                    packed,
                );
            }
        }
        r0 += block;
    }
    true
}

/// [`update`] over the chunks `first .. chunks` of the `R` rows: groups of [`GROUP`] chunks,
/// then one by one.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn by_chunks<const R: usize>(
    t: Bf16,
    acc: &mut [f32],
    d: usize,
    first: usize,
    chunks: usize,
    pp: [&[f32]; R],
    pairs: Range<usize>,
    lone: bool,
    pair: impl Pairs,
) {
    let mut c0 = first;
    while c0 + GROUP <= chunks {
        update::<R, GROUP>(t, acc, d, c0, pp, pairs.clone(), lone, pair);
        c0 += GROUP;
    }
    while c0 < chunks {
        update::<R, 1>(t, acc, d, c0, pp, pairs.clone(), lone, pair);
        c0 += 1;
    }
}

/// `acc[r][16c ..][..16]` for the `R` rows of `acc` (each `d` long) and chunks
/// `c0 .. c0 + G`, accumulating the value pairs `pair(m, c)` for `m` in `pairs` times each row's
/// probability pair `pp[r][m]`, then, if `lone`, pair `pairs.end` with its high (odd) key masked.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn update<const R: usize, const G: usize>(
    t: Bf16,
    acc: &mut [f32],
    d: usize,
    c0: usize,
    pp: [&[f32]; R],
    pairs: Range<usize>,
    lone: bool,
    pair: impl Pairs,
) {
    // Every chunk starts inside a row, and the rows are inside `acc`.
    if G == 0 || (c0 + G - 1) * LANES >= d || acc.len() < R * d {
        return;
    }
    let masks: [__mmask16; G] = core::array::from_fn(|g| prefix_mask(d - (c0 + g) * LANES));
    // SAFETY: AVX-512F is present.
    let mut a = [[unsafe { _mm512_setzero_ps() }; G]; R];
    for (i, a) in a.iter_mut().enumerate() {
        for ((g, a), &mask) in a.iter_mut().enumerate().zip(&masks) {
            // SAFETY: AVX-512F is present; chunk `c0 + g` starts at `(c0 + g)·16 < d` in row `i`
            // (checked above), so the pointer is inside `acc` (`R·d` long), and the masked load
            // reads only lanes `< d − (c0 + g)·16`, inside the row.
            *a = unsafe { _mm512_maskz_loadu_ps(mask, acc.as_ptr().add(i * d + (c0 + g) * LANES)) };
        }
    }
    // Every row holds the pairs this update reads: checked once here, so that `step` reads
    // them without a check (a checked read cannot become `vdpbf16ps`'s broadcast operand).
    let need = pairs.end + usize::from(lone);
    if pp.iter().any(|row| row.len() < need) {
        return;
    }
    for m in pairs.clone() {
        step(t, &mut a, pp, m, c0, pair, false);
    }
    if lone {
        step(t, &mut a, pp, pairs.end, c0, pair, true);
    }
    for (i, a) in a.iter().enumerate() {
        for ((g, &a), &mask) in a.iter().enumerate().zip(&masks) {
            // SAFETY: as for the loads: the masked store writes only lanes inside row `i`.
            unsafe {
                _mm512_mask_storeu_ps(acc.as_mut_ptr().add(i * d + (c0 + g) * LANES), mask, a)
            };
        }
    }
}

/// One pair `m` into the registers `a`: `a[r][g] += p̂[r][2m+1]·V[2m+1] + p̂[r][2m]·V[2m]` by
/// `vdpbf16ps`, the value pair's high half (key `2m+1`) zeroed if `lone`. Every row of `pp`
/// must hold pair `m` (the caller checks).
#[inline(always)]
fn step<const R: usize, const G: usize>(
    t: Bf16,
    a: &mut [[__m512; G]; R],
    pp: [&[f32]; R],
    m: usize,
    c0: usize,
    pair: impl Pairs,
    lone: bool,
) {
    // A loop, not `array::from_fn`: its closure would be compiled without the target features.
    // SAFETY: AVX-512F is present; `__m512bh` has the layout of `__m512i`.
    let mut v = [unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()) }; G];
    for (v, x) in v.iter_mut().zip(pair.group::<G>(t, m, c0)) {
        // SAFETY: AVX-512F is present; `__m512bh` is 32 bf16 bit patterns in the same 64 bytes
        // as `__m512i`.
        *v = unsafe {
            let x = if lone {
                _mm512_and_si512(x, _mm512_set1_epi32(0xFFFF))
            } else {
                x
            };
            core::mem::transmute::<__m512i, __m512bh>(x)
        };
    }
    for (a, pp) in a.iter_mut().zip(pp.iter()) {
        // SAFETY: `m < pp.len()` (`update` checks every row before its steps); AVX-512F is
        // present; the bf16 pair broadcast is 16 copies of 32 bits, and `__m512bh` has the
        // layout of `__m512i`.
        let pb = unsafe {
            let w = pp.as_ptr().add(m).read().to_bits();
            core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(w as i32))
        };
        for (a, &v) in a.iter_mut().zip(v.iter()) {
            // SAFETY: `Bf16` proves AVX512_BF16 is present.
            *a = unsafe { _mm512_dpbf16_ps(*a, v, pb) };
        }
    }
}

/// One output row of a tile too small to pack: its probability pairs, its whole pairs and lone
/// last key, and the value rows.
struct Row<'a> {
    pp: &'a [f32],
    pairs: Range<usize>,
    lone: bool,
    values: &'a [bf16],
    d: usize,
}

/// Outputs `o .. o + 32W` of one row (`acc`, `d` long) by `vpunpck{l,h}wd` of two value rows'
/// 32 elements: the same pairs and operations as [`update`], the accumulators held permuted
/// (the unpacks pair elements `8L + j` and `8L + 4 + j` of each 128-bit block `L`, `j < 4`) and
/// put back in order at the end.
#[inline(always)]
fn unpacked<const W: usize>(t: Bf16, acc: &mut [f32], o: usize, row: &Row<'_>) {
    let Some(out) = acc.get_mut(o..o + 2 * LANES * W) else {
        return;
    };
    // SAFETY: AVX-512F is present.
    let (lo_idx, hi_idx, back0, back1) = unsafe {
        (
            _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27),
            _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31),
            _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23),
            _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31),
        )
    };
    // SAFETY: AVX-512F is present.
    let mut a = [[unsafe { _mm512_setzero_ps() }; 2]; W];
    for (a, x) in a.iter_mut().zip(out.as_chunks::<{ 2 * LANES }>().0) {
        // SAFETY: AVX-512F is present; `x` is 32 readable `f32`.
        unsafe {
            let (x0, x1) = (
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(x.as_ptr().add(LANES)),
            );
            *a = [
                _mm512_permutex2var_ps(x0, lo_idx, x1),
                _mm512_permutex2var_ps(x0, hi_idx, x1),
            ];
        }
    }
    for m in row.pairs.clone() {
        unpacked_step(t, &mut a, row, o, m, false);
    }
    if row.lone {
        unpacked_step(t, &mut a, row, o, row.pairs.end, true);
    }
    for (a, x) in a.iter().zip(out.as_chunks_mut::<{ 2 * LANES }>().0) {
        // SAFETY: AVX-512F is present; `x` is 32 writable `f32`.
        unsafe {
            let p = x.as_mut_ptr();
            _mm512_storeu_ps(p, _mm512_permutex2var_ps(a[0], back0, a[1]));
            _mm512_storeu_ps(p.add(LANES), _mm512_permutex2var_ps(a[0], back1, a[1]));
        }
    }
}

/// One pair `m` into [`unpacked`]'s permuted accumulators (key `2m+1` zero if `lone`).
#[inline(always)]
fn unpacked_step<const W: usize>(
    _: Bf16,
    a: &mut [[__m512; 2]; W],
    row: &Row<'_>,
    o: usize,
    m: usize,
    lone: bool,
) {
    let d = row.d;
    let load = |k: usize, w: usize| -> Option<&[bf16; 2 * LANES]> {
        let at = k * d + o + 2 * LANES * w;
        row.values
            .get(at..)
            .and_then(|x| x.first_chunk::<{ 2 * LANES }>())
    };
    let w = row.pp.get(m).map_or(0, |x| x.to_bits());
    // SAFETY: AVX-512F is present; `__m512bh` has the layout of `__m512i`.
    let pb = unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(w as i32)) };
    for (w, a) in a.iter_mut().enumerate() {
        let (Some(even), odd) = (load(2 * m, w), load(2 * m + 1, w).filter(|_| !lone)) else {
            continue;
        };
        // SAFETY: AVX-512F, AVX-512BW and AVX512_BF16 are present (`Bf16`); `even` and `odd` are
        // 64 readable bytes; `__m512bh` has the layout of `__m512i`.
        unsafe {
            let e = _mm512_loadu_si512(even.as_ptr().cast());
            let o = match odd {
                Some(x) => _mm512_loadu_si512(x.as_ptr().cast()),
                None => _mm512_setzero_si512(),
            };
            let lo = core::mem::transmute::<__m512i, __m512bh>(_mm512_unpacklo_epi16(e, o));
            let hi = core::mem::transmute::<__m512i, __m512bh>(_mm512_unpackhi_epi16(e, o));
            a[0] = _mm512_dpbf16_ps(a[0], lo, pb);
            a[1] = _mm512_dpbf16_ps(a[1], hi, pb);
        }
    }
}
