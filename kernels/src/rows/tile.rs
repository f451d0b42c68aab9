//! Flash attention's tile primitives on lanes: register-blocked micro-kernels for `S = Q·Kᵀ`
//! and `O += P·V` over a whole tile of query rows.
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

use super::ops::{Counts, QTile};
use super::row_kernels::{accumulate, scores};
use crate::simd::lanes::reduce_group;
use crate::simd::{LaneElement, Lanes, LANES};
use half::bf16;

/// Query rows a tile needs before packing pays for itself; smaller tiles (decode) use the
/// per-row kernels, which give the same bits.
pub(crate) const MIN_BLOCKED_ROWS: usize = 4;

/// The work space [`tile_scores`] and [`tile_accumulate`] need, in `f32`: the packed query rows
/// (`rows·d`, rounded up to whole 64-byte lines) and the packed key or value tile (`keys·d`).
pub(crate) const fn tile_work_len(rows: usize, keys: usize, d: usize) -> Option<usize> {
    let Some(q) = rows.checked_mul(d) else {
        return None;
    };
    let Some(k) = keys.checked_mul(d) else {
        return None;
    };
    let Some(q) = round_up(q) else {
        return None;
    };
    q.checked_add(k)
}

/// `n` rounded up to a whole number of lanes (a 64-byte line of `f32`).
const fn round_up(n: usize) -> Option<usize> {
    match n.checked_add(LANES - 1) {
        Some(x) => Some(x / LANES * LANES),
        None => None,
    }
}

/// Widens `src` into `dst` (elementwise; `dst` at least as long).
#[inline(always)]
fn pack<L: Lanes, E: LaneElement>(l: L, src: &[E], dst: &mut [f32]) {
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
        accumulate_rows::<L, 2, 2>(l, acc, d, p, ld, counts, vp);
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
    let p: [&[f32]; R] = p.map(|x| x.get(..keys).unwrap_or(&[]));
    for j in 0..keys {
        let Some(v) = vp.get(j * d + off..j * d + off + span) else {
            continue;
        };
        let (vc, _) = v.as_chunks::<LANES>();
        let mut vv = [l.splat(0.0); G];
        for (x, c) in vv.iter_mut().zip(vc) {
            *x = l.load(c);
        }
        for (a, p) in a.iter_mut().zip(p.iter()) {
            if let Some(&pj) = p.get(j) {
                let pv = l.splat(pj);
                for (a, &v) in a.iter_mut().zip(vv.iter()) {
                    *a = l.mul_add(pv, v, *a);
                }
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
