//! The scores micro-kernel of flash's tiles, `S = Q·Kᵀ` over a whole tile of query rows (see
//! `rows::tile` for the packing and `P·V`).

use super::ops::{Counts, QTile};
use super::tile::{pack, round_up, MIN_BLOCKED_ROWS};
use crate::simd::lanes::Columns;
use crate::simd::{LaneElement, Lanes, LANES};
use half::bf16;

/// Keys per panel of the transposed key tile: one per lane.
const PANEL: usize = LANES;

/// The blocked scores of a tile (see [`RowOps::tile_scores`](super::ops::RowOps::tile_scores)).
/// Returns `false` (nothing done) for tiles too small to block or a too small `work`.
///
/// The key tile is transposed into panels of 16 keys (`kt[panel][i][lane]` = element `i` of key
/// `16·panel + lane`), zero-padded to whole panels and whole chunks of 16 elements, and the query
/// rows are packed zero-padded the same way. A block of `R` rows by one panel then computes 16
/// keys' scores per row with one key per lane: the canonical dot product's lane `t` (elements
/// `i ≡ t mod 16`, in order) becomes a vector accumulator over the 16 keys, fed by broadcasts of
/// the query's element `i`, and the 16 lane sums are added by the canonical tree as vectors
/// ([`panel_dots`]). Every score is the same IEEE operations in the same order as the per-row
/// kernel's, with no horizontal reduction: only the grouping into registers changes.
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
    let n = counts.n;
    if q.rows < MIN_BLOCKED_ROWS || d == 0 || n == 0 {
        return false;
    }
    let Some(dp) = round_up(d) else {
        return false;
    };
    let (Some((qp, kt)), Some(keys)) = (split_work(work, q.rows, dp, n), keys.get(..n * d)) else {
        return false;
    };
    transpose_keys(l, keys, d, dp, kt);
    for r in 0..q.rows {
        if let (Some(src), Some(dst)) = (q.row(r), qp.get_mut(r * dp..(r + 1) * dp)) {
            let (row, pad) = dst.split_at_mut(d.min(dst.len()));
            pack(l, src, row);
            pad.fill(0.0);
        }
    }
    let rows = RowsIn {
        q: qp,
        dp,
        rows: q.rows,
        scale,
        counts,
    };
    if L::WIDE_KEY_GROUPS {
        panels_of_rows::<L, F32Dot, 4, 2, 2>(l, &rows, kt, s, ld);
    } else {
        panels_of_rows::<L, F32Dot, 3, 1, 2>(l, &rows, kt, s, ld);
    }
    true
}

/// [`tile_scores`] for `bf16` rows on a token with its own bf16 pair instruction
/// ([`Lanes::bf16_pair_dot`], `vdpbf16ps`): the same micro-kernel with a *pair* of elements where
/// the `f32` one has an element. The query rows are packed as pairs (the bits of elements
/// `2p, 2p + 1` in one `f32` slot), the key panels as 16 keys' pairs `p` per row of the panel,
/// both zero-padded to whole chunks of 16 pairs; lane `t` of a dot product takes pairs
/// `p ≡ t mod 16` in order, as [`Lanes::bf16_scores`] does, so the bits are those of the per-row
/// kernel. Returns `false` (nothing done) for tiles too small to block, a too small `work` or
/// a token without the instruction.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_scores_bf16<L: Lanes>(
    l: L,
    q: QTile<'_, bf16>,
    keys: &[bf16],
    scale: f32,
    counts: Counts,
    s: &mut [f32],
    ld: usize,
    work: &mut [f32],
) -> bool {
    let d = q.d;
    let n = counts.n;
    if q.rows < MIN_BLOCKED_ROWS || d == 0 || n == 0 || !L::BF16_DOTS {
        return false;
    }
    // Pairs per row, rounded up to whole chunks of 16 pairs.
    let Some(pp) = round_up(d.div_ceil(2)) else {
        return false;
    };
    let (Some((qp, kt)), Some(keys)) = (split_work(work, q.rows, pp, n), keys.get(..n * d)) else {
        return false;
    };
    kt.fill(0.0);
    for j in 0..n {
        let (b, t) = (j / PANEL, j % PANEL);
        let (Some(panel), Some(key)) = (
            kt.get_mut(b * pp * PANEL..(b + 1) * pp * PANEL),
            keys.get(j * d..(j + 1) * d),
        ) else {
            break;
        };
        // Pair `p` of the key into lane `t` of panel row `p` (16 slots apart).
        let (pairs, odd) = key.as_chunks::<2>();
        let (rows, _) = panel.as_chunks_mut::<PANEL>();
        for (row, pair) in rows.iter_mut().zip(pairs) {
            if let Some(o) = row.get_mut(t) {
                *o = pair_bits(pair);
            }
        }
        if let (Some(row), Some(&last)) = (rows.get_mut(pairs.len()), odd.first()) {
            if let Some(o) = row.get_mut(t) {
                *o = pair_bits(&[last, bf16::ZERO]);
            }
        }
    }
    for r in 0..q.rows {
        if let (Some(src), Some(dst)) = (q.row(r), qp.get_mut(r * pp..(r + 1) * pp)) {
            dst.fill(0.0);
            let (pairs, odd) = src.as_chunks::<2>();
            for (o, pair) in dst.iter_mut().zip(pairs) {
                *o = pair_bits(pair);
            }
            if let (Some(o), Some(&last)) = (dst.get_mut(pairs.len()), odd.first()) {
                *o = pair_bits(&[last, bf16::ZERO]);
            }
        }
    }
    let rows = RowsIn {
        q: qp,
        dp: pp,
        rows: q.rows,
        scale,
        counts,
    };
    panels_of_rows::<L, Bf16PairDot, 4, 1, 4>(l, &rows, kt, s, ld);
    true
}

/// A pair of bf16 elements as the bits of one `f32` slot, element 0 in the low half, as
/// `vdpbf16ps` reads a lane.
#[inline(always)]
fn pair_bits(&[lo, hi]: &[bf16; 2]) -> f32 {
    f32::from_bits(u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16))
}

/// One step of a dot product in the micro-kernel: `acc + q·k` for one unit of the query row
/// (broadcast) and the same unit of 16 keys (one per lane).
trait PanelDot {
    fn dot<L: Lanes>(l: L, acc: L::F, q: f32, k: L::F) -> L::F;
}

/// `f32` elements: one fused multiply-add.
struct F32Dot;
impl PanelDot for F32Dot {
    #[inline(always)]
    fn dot<L: Lanes>(l: L, acc: L::F, q: f32, k: L::F) -> L::F {
        l.mul_add(l.splat(q), k, acc)
    }
}

/// Pairs of bf16 elements (the bits of a pair in each `f32` slot): the token's pair instruction.
struct Bf16PairDot;
impl PanelDot for Bf16PairDot {
    #[inline(always)]
    fn dot<L: Lanes>(l: L, acc: L::F, q: f32, k: L::F) -> L::F {
        l.bf16_pair_dot(acc, q, k)
    }
}

/// Widens `keys` (`d` elements each) into `kt` transposed in panels of 16 keys: element `i` of
/// key `16·b + t` at `kt[(b·dp + i)·16 + t]`; elements `d..dp` and keys past the last are `0`.
#[inline(always)]
fn transpose_keys<L: Lanes, E: LaneElement>(l: L, keys: &[E], d: usize, dp: usize, kt: &mut [f32]) {
    kt.fill(0.0);
    let mut row = [0.0f32; LANES];
    // Indexed, not `chunks_exact(d)`: that one keeps a panic path for `d = 0`.
    for j in 0..keys.len() / d.max(1) {
        let (b, t) = (j / PANEL, j % PANEL);
        let (Some(panel), Some(key)) = (
            kt.get_mut(b * dp * PANEL..(b + 1) * dp * PANEL),
            keys.get(j * d..(j + 1) * d),
        ) else {
            return;
        };
        let (chunks, tail) = key.as_chunks::<LANES>();
        let mut at = t;
        for c in chunks {
            l.store(E::load(l, c), &mut row);
            for &x in &row {
                if let Some(o) = panel.get_mut(at) {
                    *o = x;
                }
                at += PANEL;
            }
        }
        if !tail.is_empty() {
            l.store(E::load_partial(l, tail), &mut row);
            for &x in row.iter().take(tail.len()) {
                if let Some(o) = panel.get_mut(at) {
                    *o = x;
                }
                at += PANEL;
            }
        }
    }
}

/// The work space of both scores kernels: the packed query rows (`rows` of `units` slots) and
/// after them the transposed key tile (`n` keys rounded up to whole panels, by `units`); `None`
/// if `work` is too small.
#[inline(always)]
fn split_work(
    work: &mut [f32],
    rows: usize,
    units: usize,
    n: usize,
) -> Option<(&mut [f32], &mut [f32])> {
    let np = round_up(n)?;
    let (qp, kt) = work.split_at_mut_checked(rows.checked_mul(units)?)?;
    Some((qp, kt.get_mut(..np.checked_mul(units)?)?))
}

/// A tile's packed query rows (`dp` apart) and what their scores need.
struct RowsIn<'a> {
    q: &'a [f32],
    dp: usize,
    rows: usize,
    scale: f32,
    counts: Counts,
}

/// Every row's scores against the panels of `kt` (`dp` rows of 16 lanes each): blocks of `R`
/// rows, then the rows left one at a time, each block over the panels its last row sees (causal
/// counts grow with the row), `P` panels at a time where `P` are left. Entries past a row's
/// count are not written.
#[inline(always)]
fn panels_of_rows<L: Lanes, D: PanelDot, const R: usize, const P: usize, const G: usize>(
    l: L,
    rows: &RowsIn<'_>,
    kt: &[f32],
    s: &mut [f32],
    ld: usize,
) {
    let mut r0 = 0;
    while r0 + R <= rows.rows {
        panel_block::<L, D, R, P, G>(l, rows, r0, kt, s, ld);
        r0 += R;
    }
    while r0 < rows.rows {
        panel_block::<L, D, 1, 1, G>(l, rows, r0, kt, s, ld);
        r0 += 1;
    }
}

/// Rows `r0 .. r0 + R` against every panel their last row sees: `P` panels a step while `P`
/// are left and the second is seen, then one.
#[inline(always)]
fn panel_block<L: Lanes, D: PanelDot, const R: usize, const P: usize, const G: usize>(
    l: L,
    rows: &RowsIn<'_>,
    r0: usize,
    kt: &[f32],
    s: &mut [f32],
    ld: usize,
) {
    let dp = rows.dp;
    // One panel: `dp` rows of 16 lanes.
    let len = dp * PANEL;
    let mut q: [&[f32]; R] = [&[]; R];
    for (i, q) in q.iter_mut().enumerate() {
        *q = rows.q.get((r0 + i) * dp..(r0 + i + 1) * dp).unwrap_or(&[]);
    }
    let Some(q) = Columns::<f32, R>::new(q, dp / LANES) else {
        return;
    };
    let seen = rows.counts.of(r0 + R - 1);
    let panels = kt.len().checked_div(len).unwrap_or(0);
    let mut b = 0;
    // The two branches are written out: one helper for both (`P` or one panel per call) ran
    // f32 3.5% slower on Zen 5 (session 22, docs/results/performance.md).
    while b < panels && b * PANEL < seen {
        if P > 1 && b + P <= panels && (b + 1) * PANEL < seen {
            // Plain loops, no closures (see `panel_dots`).
            let mut group: [&[f32]; P] = [&[]; P];
            for (p, g) in group.iter_mut().enumerate() {
                *g = kt.get((b + p) * len..(b + p + 1) * len).unwrap_or(&[]);
            }
            let Some(group) = Columns::new(group, dp / LANES) else {
                return;
            };
            let sums = panel_dots::<L, D, R, P, G>(l, q, group);
            for p in 0..P {
                let mut col = [l.splat(0.0); R];
                for (c, row) in col.iter_mut().zip(sums.iter()) {
                    if let Some(&v) = row.get(p) {
                        *c = v;
                    }
                }
                store_scores::<L, R>(l, rows, r0, (b + p) * PANEL, col, s, ld);
            }
            b += P;
        } else {
            let panel = kt.get(b * len..(b + 1) * len).unwrap_or(&[]);
            let Some(panel) = Columns::new([panel], dp / LANES) else {
                return;
            };
            let sums = panel_dots::<L, D, R, 1, G>(l, q, panel);
            let mut col = [l.splat(0.0); R];
            for (c, [v]) in col.iter_mut().zip(sums) {
                *c = v;
            }
            store_scores::<L, R>(l, rows, r0, b * PANEL, col, s, ld);
            b += 1;
        }
    }
}

/// Row `r0 + i`'s scores against the 16 keys from `j0` (`sums[i]`), scaled, where the row sees
/// them (a partial store for a row that sees only some).
#[inline(always)]
fn store_scores<L: Lanes, const R: usize>(
    l: L,
    rows: &RowsIn<'_>,
    r0: usize,
    j0: usize,
    sums: [L::F; R],
    s: &mut [f32],
    ld: usize,
) {
    let scale = l.splat(rows.scale);
    for (i, sum) in sums.into_iter().enumerate() {
        let n = rows.counts.of(r0 + i);
        if n <= j0 {
            continue;
        }
        let at = (r0 + i) * ld + j0;
        let v = l.mul(sum, scale);
        match s.get_mut(at..at + (n - j0).min(PANEL)) {
            Some(out) if out.len() == PANEL => {
                if let Ok(out) = <&mut [f32; LANES]>::try_from(out) {
                    l.store(v, out);
                }
            }
            Some(out) => l.store_partial(v, out),
            None => {}
        }
    }
}

/// The 16 keys' dot products of each of `P` panels (`dp` rows of 16 lanes: element `i` of each
/// key) with each of `R` query rows, lane `j` holding key `j`'s: the canonical lane `t` of
/// every dot product as a vector accumulator of its own (elements `i ≡ t mod 16`, by FMA in
/// order of `i`), the 16 accumulators added by the canonical tree. `G` of them run at once
/// (lanes `t`, `t + 16/G`, ...: the ones the tree's first levels join), the rest of the tree
/// over the residue classes written out. The `P` panels share each broadcast query element, the
/// `R` rows each loaded key vector: `R + P` loads for `R·P` multiply-adds.
#[inline(always)]
fn panel_dots<L: Lanes, D: PanelDot, const R: usize, const P: usize, const G: usize>(
    l: L,
    q: Columns<'_, f32, R>,
    panels: PanelColumns<'_, P>,
) -> [[L::F; P]; R] {
    // The tree written out for each count of classes (no closures: a closure the compiler
    // leaves out of line loses the token's target features, and its intrinsics become calls).
    let c = |t: usize| class_sum::<L, D, R, P, G>(l, q, panels, t);
    match LANES / G {
        1 => c(0),
        2 => add_rows(l, c(0), c(1)),
        4 => add_rows(l, add_rows(l, c(0), c(2)), add_rows(l, c(1), c(3))),
        _ => add_rows(
            l,
            add_rows(l, add_rows(l, c(0), c(4)), add_rows(l, c(2), c(6))),
            add_rows(l, add_rows(l, c(1), c(5)), add_rows(l, c(3), c(7))),
        ),
    }
}

/// Chunk `c` of each of `P` panels: elements `16c .. 16c + 16` of its 16 keys, 16 lanes each.
type PanelColumns<'a, const P: usize> = Columns<'a, f32, P, { LANES * LANES }>;

/// Lanes `t0`, `t0 + 16/G`, ... of every row's dot products with each panel's 16 keys, each a
/// vector over the keys accumulated by FMA in order of the element, then summed by the canonical
/// tree's first levels.
#[inline(always)]
fn class_sum<L: Lanes, D: PanelDot, const R: usize, const P: usize, const G: usize>(
    l: L,
    q: Columns<'_, f32, R>,
    panels: PanelColumns<'_, P>,
    t0: usize,
) -> [[L::F; P]; R] {
    let step = LANES / G;
    let mut acc = [[[l.splat(0.0); G]; P]; R];
    // Plain loops, no closure (see `panel_dots`).
    let mut c = 0;
    while let (Some(qc), Some(kc)) = (q.get(c), panels.get(c)) {
        c += 1;
        for g in 0..G {
            let t = t0 + g * step;
            let mut kv = [l.splat(0.0); P];
            for (kv, kc) in kv.iter_mut().zip(kc) {
                if let Some(k) = kc.as_chunks::<LANES>().0.get(t) {
                    *kv = l.load(k);
                }
            }
            for (a, qc) in acc.iter_mut().zip(qc.iter()) {
                let Some(&x) = qc.get(t) else {
                    continue;
                };
                for (a, &kv) in a.iter_mut().zip(kv.iter()) {
                    if let Some(a) = a.get_mut(g) {
                        *a = D::dot(l, *a, x, kv);
                    }
                }
            }
        }
    }
    let mut out = [[l.splat(0.0); P]; R];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = halving_sum(l, a);
        }
    }
    out
}

/// `a + b` row by row, panel by panel.
#[inline(always)]
fn add_rows<L: Lanes, const R: usize, const P: usize>(
    l: L,
    a: [[L::F; P]; R],
    b: [[L::F; P]; R],
) -> [[L::F; P]; R] {
    let mut out = a;
    for (o, b) in out.iter_mut().zip(b) {
        for (o, b) in o.iter_mut().zip(b) {
            *o = l.add(*o, b);
        }
    }
    out
}

/// The canonical halving tree over `G` vectors: `a[k] + a[k + G/2]`, down to one.
#[inline(always)]
fn halving_sum<L: Lanes, const G: usize>(l: L, mut a: [L::F; G]) -> L::F {
    let mut w = G / 2;
    while w > 0 {
        let (lo, hi) = a.split_at_mut(w);
        for (x, &y) in lo.iter_mut().zip(hi.iter()) {
            *x = l.add(*x, y);
        }
        w /= 2;
    }
    a.first().copied().unwrap_or(l.splat(0.0))
}
