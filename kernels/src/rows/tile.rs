//! Flash attention's tile primitives on lanes: register-blocked micro-kernels for `S = Q·Kᵀ`
//! (in `tile_scores`) and `O += P·V` (here) over a whole tile of query rows.
//!
//! A tile's query rows and its key and value rows are first packed into the caller's aligned
//! work space as `f32` (a contiguous copy: `bf16` is widened once per tile instead of once per
//! use). Then:
//!
//! - **scores**: a block of `R` query rows by `J` keys runs as `R·J` independent lane
//!   accumulators; each loaded chunk of 16 query elements feeds `J` fused multiply-adds and each
//!   loaded key chunk `R` (the per-row kernel loads a key chunk for every single FMA, so it is
//!   bound by the loads). Each dot product keeps the canonical order (element `i` into lane
//!   `i % 16`, then the canonical tree), so a row's scores have the same bits whichever block
//!   computes them, on every backend.
//! - **`P·V`**: a block of `R` rows by `G` chunks of 16 output elements stays in registers while
//!   the value rows stream past; each loaded value chunk feeds `R` FMAs. Every output element is
//!   accumulated in order of the key, as in `accumulate`.
//!
//! Causal tiles give each row its own number of keys: the block runs over the keys every row of
//! it sees, and each row finishes its own remaining keys with the per-row kernels, in order.

use super::ops::Counts;
use super::row_kernels::accumulate;
use crate::simd::lanes::{bf16_pair_work_len, Columns};
use crate::simd::{LaneElement, Lanes, LANES};

/// Query rows a tile needs before packing pays for itself; smaller tiles (decode) use the
/// per-row kernels, which give the same bits.
pub(crate) const MIN_BLOCKED_ROWS: usize = 4;

/// The work space of the scores micro-kernel (`rows::tile_scores`) in `f32`: the packed query
/// rows (`rows·dp`, `dp` = `d` rounded up to whole chunks of 16) and the transposed key tile
/// (`keys` rounded up to whole panels of 16, by `dp`).
const fn scores_work_len(rows: usize, keys: usize, d: usize) -> Option<usize> {
    let Some(dp) = round_up(d) else {
        return None;
    };
    let Some(kp) = round_up(keys) else {
        return None;
    };
    let (Some(q), Some(k)) = (rows.checked_mul(dp), kp.checked_mul(dp)) else {
        return None;
    };
    q.checked_add(k)
}

/// The work space the tile primitives need, in `f32`: the largest of the scores' (packed query
/// rows and the transposed key tile, [`scores_work_len`]), `P·V`'s (the value tile after the
/// query rows' whole 64-byte lines) and bf16 `P·V`'s by a pair instruction (the value pairs and
/// each row's probability pairs, `bf16_pair_work_len`).
pub(crate) const fn tile_work_len(rows: usize, keys: usize, d: usize) -> Option<usize> {
    let Some(scores) = scores_work_len(rows, keys, d) else {
        return None;
    };
    let (Some(q), Some(v)) = (rows.checked_mul(d), keys.checked_mul(d)) else {
        return None;
    };
    let Some(q) = round_up(q) else {
        return None;
    };
    let (Some(pv), Some(pairs)) = (q.checked_add(v), bf16_pair_work_len(rows, keys, d)) else {
        return None;
    };
    let larger = if scores > pv { scores } else { pv };
    Some(if pairs > larger { pairs } else { larger })
}

/// `n` rounded up to a whole number of lanes (a 64-byte line of `f32`).
pub(super) const fn round_up(n: usize) -> Option<usize> {
    match n.checked_add(LANES - 1) {
        Some(x) => Some(x / LANES * LANES),
        None => None,
    }
}

/// Widens `src` into `dst` (elementwise; `dst` at least as long).
#[inline(always)]
pub(super) fn pack<L: Lanes, E: LaneElement>(l: L, src: &[E], dst: &mut [f32]) {
    let Some(dst) = dst.get_mut(..src.len()) else {
        return;
    };
    let (s_chunks, s_tail) = src.as_chunks::<LANES>();
    let (d_chunks, d_tail) = dst.as_chunks_mut::<LANES>();
    for (d, s) in d_chunks.iter_mut().zip(s_chunks) {
        l.store(E::load(l, s), d);
    }
    if !s_tail.is_empty() {
        l.store_partial(E::load_partial(l, s_tail), d_tail);
    }
}

/// The blocked `P·V` of a tile (see
/// [`RowOps::tile_accumulate`](super::ops::RowOps::tile_accumulate)). Returns `false` (nothing
/// done) for tiles too small to block or a too small `work`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_accumulate<L: Lanes, E: LaneElement>(
    l: L,
    acc: &mut [f32],
    d: usize,
    p: &[f32],
    ld: usize,
    counts: Counts,
    values: &[E],
    work: &mut [f32],
) -> bool {
    let rows = acc.len().checked_div(d).unwrap_or(0);
    if rows < MIN_BLOCKED_ROWS {
        return false;
    }
    let Some(skip) = round_up(rows * d) else {
        return false;
    };
    let n = counts.n;
    let (Some(vp), Some(values)) = (work.get_mut(skip..skip + n * d), values.get(..n * d)) else {
        return false;
    };
    pack(l, values, vp);
    let vp = &*vp;
    if L::WIDE_KEY_GROUPS {
        accumulate_rows::<L, 4, 4>(l, acc, d, p, ld, counts, vp);
    } else {
        // 16-register ISAs (AVX2: 16 lanes are two registers): 6 rows by one chunk, chosen
        // among 2x2, 4x1 and 6x1 by thread CPU time at 1x8x1024x64.
        accumulate_rows::<L, 6, 1>(l, acc, d, p, ld, counts, vp);
    }
    true
}

/// [`tile_accumulate`] on packed values, in blocks of `R` rows by `G` chunks of output.
#[inline(always)]
fn accumulate_rows<L: Lanes, const R: usize, const G: usize>(
    l: L,
    acc: &mut [f32],
    d: usize,
    p: &[f32],
    ld: usize,
    counts: Counts,
    vp: &[f32],
) {
    let rows = acc.len() / d.max(1);
    let full = d / LANES;
    let mut r0 = 0;
    while r0 < rows {
        let block = R.min(rows - r0);
        let common = if block == R { counts.of(r0) } else { 0 };
        let Some(acc_block) = acc.get_mut(r0 * d..(r0 + block) * d) else {
            return;
        };
        if common > 0 {
            let p_rows: [&[f32]; R] = core::array::from_fn(|i| {
                p.get((r0 + i) * ld..(r0 + i) * ld + common).unwrap_or(&[])
            });
            let mut c0 = 0;
            while c0 + G <= full {
                block_update::<L, R, G>(l, acc_block, d, c0, p_rows, vp, common);
                c0 += G;
            }
            while c0 < full {
                block_update::<L, R, 1>(l, acc_block, d, c0, p_rows, vp, common);
                c0 += 1;
            }
            // The tail of each row (fewer than 16 elements), zero-padded as in `accumulate`.
            let tail = full * LANES;
            if tail < d {
                for (i, p_row) in p_rows.iter().enumerate() {
                    let Some(a_tail) = acc_block.get_mut(i * d + tail..(i + 1) * d) else {
                        continue;
                    };
                    let mut a = l.load_partial(a_tail);
                    for (j, &pj) in p_row.iter().enumerate() {
                        if let Some(v) = vp.get(j * d + tail..(j + 1) * d) {
                            a = l.mul_add(l.splat(pj), l.load_partial(v), a);
                        }
                    }
                    l.store_partial(a, a_tail);
                }
            }
        }
        // Each row's own remaining keys, continuing every element's sum in key order.
        for (i, acc_row) in acc_block.chunks_exact_mut(d.max(1)).enumerate() {
            let r = r0 + i;
            let n = counts.of(r);
            if n > common {
                if let (Some(p_row), Some(v)) = (
                    p.get(r * ld + common..r * ld + n),
                    vp.get(common * d..n * d),
                ) {
                    accumulate(l, acc_row, p_row, v);
                }
            }
        }
        r0 += block;
    }
}

/// `acc[r][c0·16 ..][..G·16] += Σ_{j < keys} p[r][j] · v[j][c0·16 ..]` for the `R` rows of
/// `acc` (each `d` long), in order of `j`.
#[inline(always)]
fn block_update<L: Lanes, const R: usize, const G: usize>(
    l: L,
    acc: &mut [f32],
    d: usize,
    c0: usize,
    p: [&[f32]; R],
    vp: &[f32],
    keys: usize,
) {
    let off = c0 * LANES;
    let span = G * LANES;
    let mut a = [[l.splat(0.0); G]; R];
    for (i, a) in a.iter_mut().enumerate() {
        if let Some(x) = acc.get(i * d + off..i * d + off + span) {
            for (a, c) in a.iter_mut().zip(x.as_chunks::<LANES>().0) {
                *a = l.load(c);
            }
        }
    }
    // Every row's probabilities, checked once for all keys (one bound check a key, not one a
    // row and key).
    let Some(p) = Columns::<f32, R, 1>::new(p, keys) else {
        return;
    };
    for j in 0..keys {
        let (Some(v), Some(pj)) = (vp.get(j * d + off..j * d + off + span), p.get(j)) else {
            break;
        };
        let (vc, _) = v.as_chunks::<LANES>();
        let mut vv = [l.splat(0.0); G];
        for (x, c) in vv.iter_mut().zip(vc) {
            *x = l.load(c);
        }
        for (a, &&[pj]) in a.iter_mut().zip(pj.iter()) {
            let pv = l.splat(pj);
            for (a, &v) in a.iter_mut().zip(vv.iter()) {
                *a = l.mul_add(pv, v, *a);
            }
        }
    }
    for (i, a) in a.iter().enumerate() {
        if let Some(x) = acc.get_mut(i * d + off..i * d + off + span) {
            for (c, &a) in x.as_chunks_mut::<LANES>().0.iter_mut().zip(a.iter()) {
                l.store(a, c);
            }
        }
    }
}
