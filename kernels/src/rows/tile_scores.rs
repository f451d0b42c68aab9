//! The scores micro-kernel of flash's tiles, `S = Q·Kᵀ` over a whole tile of query rows (see
//! `rows::tile` for the packing and `P·V`).

use super::ops::{Counts, QTile};
use super::row_kernels::scores;
use super::tile::{pack, round_up, MIN_BLOCKED_ROWS};
use crate::simd::lanes::reduce_group;
use crate::simd::{LaneElement, Lanes, LANES};
use half::bf16;

/// The blocked scores of a tile (see [`RowOps::tile_scores`](super::ops::RowOps::tile_scores)).
/// Returns `false` (nothing done) for tiles too small to block or a too small `work`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_scores<L: Lanes, E: LaneElement>(
    l: L,
    q: QTile<'_, E>,
    keys: &[E],
    scale: f32,
    counts: Counts,
    s: &mut [f32],
    ld: usize,
    work: &mut [f32],
) -> bool {
    let d = q.d;
    if q.rows < MIN_BLOCKED_ROWS || d == 0 {
        return false;
    }
    let Some(q_len) = round_up(q.rows * d) else {
        return false;
    };
    let Some((qp, kp)) = work.split_at_mut_checked(q_len) else {
        return false;
    };
    let n = counts.n;
    let (Some(kp), Some(keys)) = (kp.get_mut(..n * d), keys.get(..n * d)) else {
        return false;
    };
    pack(l, keys, kp);
    for r in 0..q.rows {
        if let (Some(src), Some(dst)) = (q.row(r), qp.get_mut(r * d..(r + 1) * d)) {
            pack(l, src, dst);
        }
    }
    let (qp, kp) = (&*qp, &*kp);
    let row_q = |r: usize| qp.get(r * d..(r + 1) * d).unwrap_or(&[]);
    let one_row = |q: &[f32], k: &[f32], out: &mut [f32]| scores(l, q, k, scale, out);
    let rows = (q.rows, d, scale, counts);
    if L::WIDE_KEY_GROUPS {
        let block = |q, k| Some(block_dots::<L, 4, 4>(l, q, k, d));
        scores_rows::<L, f32, 4, 4>(l, row_q, kp, rows, block, one_row, s, ld);
    } else {
        let block = |q, k| Some(block_dots::<L, 2, 2>(l, q, k, d));
        scores_rows::<L, f32, 2, 2>(l, row_q, kp, rows, block, one_row, s, ld);
    }
    true
}

/// [`tile_scores`] for `bf16` rows on a token with its own bf16 dot products
/// ([`Lanes::bf16_block_dots`], [`Lanes::bf16_scores`]): blocks of 4 rows by 4 keys, each dot
/// product in the order of the token's per-row kernel. Returns `false` (nothing done) for tiles
/// too small to block or a token without them.
#[inline(always)]
pub(crate) fn tile_scores_bf16<L: Lanes>(
    l: L,
    q: QTile<'_, bf16>,
    keys: &[bf16],
    scale: f32,
    counts: Counts,
    s: &mut [f32],
    ld: usize,
) -> bool {
    let d = q.d;
    if q.rows < MIN_BLOCKED_ROWS || d == 0 || !L::BF16_DOTS {
        return false;
    }
    let row_q = |r: usize| q.row(r).unwrap_or(&[]);
    let one_row = |q: &[bf16], k: &[bf16], out: &mut [f32]| {
        l.bf16_scores(q, k, scale, out);
    };
    let block = |q, k| l.bf16_block_dots(q, k);
    let rows = (q.rows, d, scale, counts);
    scores_rows::<L, bf16, 4, 4>(l, row_q, keys, rows, block, one_row, s, ld);
    true
}

/// The scores of a tile's rows (`row_q(r)`, `d` elements) against the keys `kp`, in blocks of
/// `R` rows by `J` keys by `block` (the lane sums of each dot product, reduced here by the
/// canonical tree), and each row's keys outside whole blocks by `one_row`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scores_rows<'a, L: Lanes, T: 'a, const R: usize, const J: usize>(
    l: L,
    row_q: impl Fn(usize) -> &'a [T],
    kp: &'a [T],
    (rows, d, scale, counts): (usize, usize, f32, Counts),
    block: impl Fn([&'a [T]; R], [&'a [T]; J]) -> Option<[[L::F; J]; R]>,
    one_row: impl Fn(&[T], &[T], &mut [f32]),
    s: &mut [f32],
    ld: usize,
) {
    let mut r0 = 0;
    while r0 < rows {
        let size = R.min(rows - r0);
        // Counts grow with the row: the block's first row sees the fewest keys.
        let common = if size == R { counts.of(r0) } else { 0 };
        let mut j0 = 0;
        if common > 0 {
            let q_rows: [&[T]; R] = core::array::from_fn(|i| row_q(r0 + i));
            while j0 + J <= common {
                let k_rows: [&[T]; J] =
                    core::array::from_fn(|j| kp.get((j0 + j) * d..(j0 + j + 1) * d).unwrap_or(&[]));
                let Some(acc) = block(q_rows, k_rows) else {
                    break;
                };
                for (i, acc) in acc.into_iter().enumerate() {
                    let sums = reduce_group(l, acc);
                    let at = (r0 + i) * ld + j0;
                    if let Some(out) = s.get_mut(at..at + J) {
                        for (o, x) in out.iter_mut().zip(sums) {
                            *o = x * scale;
                        }
                    }
                }
                j0 += J;
            }
        }
        // Each row's keys outside whole blocks, in order.
        for r in r0..r0 + size {
            let n = counts.of(r);
            let at = r * ld;
            if n > j0 {
                if let (Some(k), Some(out)) = (kp.get(j0 * d..n * d), s.get_mut(at + j0..at + n)) {
                    one_row(row_q(r), k, out);
                }
            }
        }
        r0 += size;
    }
}

/// The 16 lane sums of each of the `R·J` dot products of `R` query rows with `J` key rows (all
/// of length `d`), in the canonical order: lane `i % 16` by FMA, the tail zero-padded.
#[inline(always)]
fn block_dots<L: Lanes, const R: usize, const J: usize>(
    l: L,
    q: [&[f32]; R],
    k: [&[f32]; J],
    d: usize,
) -> [[L::F; J]; R] {
    let mut acc = [[l.splat(0.0); J]; R];
    let full = d / LANES;
    let qc: [&[[f32; LANES]]; R] = q.map(|x| x.as_chunks::<LANES>().0.get(..full).unwrap_or(&[]));
    let kc: [&[[f32; LANES]]; J] = k.map(|x| x.as_chunks::<LANES>().0.get(..full).unwrap_or(&[]));
    for c in 0..full {
        let mut kv = [l.splat(0.0); J];
        for (v, rows) in kv.iter_mut().zip(kc.iter()) {
            if let Some(x) = rows.get(c) {
                *v = l.load(x);
            }
        }
        for (a, rows) in acc.iter_mut().zip(qc.iter()) {
            if let Some(x) = rows.get(c) {
                let qv = l.load(x);
                for (a, &kv) in a.iter_mut().zip(kv.iter()) {
                    *a = l.mul_add(qv, kv, *a);
                }
            }
        }
    }
    let tail = full * LANES;
    if tail < d {
        let kv: [L::F; J] = k.map(|x| l.load_partial(x.get(tail..).unwrap_or(&[])));
        for (a, x) in acc.iter_mut().zip(q.iter()) {
            let qv = l.load_partial(x.get(tail..).unwrap_or(&[]));
            for (a, &kv) in a.iter_mut().zip(kv.iter()) {
                *a = l.mul_add(qv, kv, *a);
            }
        }
    }
    acc
}
