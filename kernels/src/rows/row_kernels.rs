//! The per-row kernels of attention on lanes, in the canonical order (see `rows::lanes`): a
//! query row's scores against a run of keys, and `acc += Σ_j p_j·v_j` for one output row. The
//! row primitives call them for one row; the blocked tile kernels (`rows::tile`) for the keys a
//! block's rows do not share.

use crate::simd::lanes::{reduce_group, Columns};
use crate::simd::{LaneElement, Lanes, LANES};

/// `out[j] = dot(q, keys[j*d..(j+1)*d]) * scale` for `j < min(out.len(), keys.len() / d)`.
#[inline(always)]
pub(crate) fn scores<L: Lanes, E: LaneElement>(
    l: L,
    q: &[E],
    keys: &[E],
    scale: f32,
    out: &mut [f32],
) {
    if L::WIDE_KEY_GROUPS {
        scores_by::<L, E, 8>(l, q, keys, scale, out)
    } else {
        scores_by::<L, E, 4>(l, q, keys, scale, out)
    }
}

/// [`scores`] with the dot products of `G` keys run together (independent FMA chains that share
/// the loads of `q`); the remaining keys one by one.
#[inline(always)]
fn scores_by<L: Lanes, E: LaneElement, const G: usize>(
    l: L,
    q: &[E],
    keys: &[E],
    scale: f32,
    out: &mut [f32],
) {
    let d = q.len();
    if d == 0 {
        out.fill(0.0);
        return;
    }
    // A group spans `G·d` elements; saturated, it is still longer than any slice.
    let group_len = d.saturating_mul(G);
    let mut groups = keys.chunks_exact(group_len);
    let mut outs = out.chunks_exact_mut(G);
    for (group, o) in (&mut groups).zip(&mut outs) {
        let sums = reduce_group(l, dots::<L, E, G>(l, q, group));
        for (o, s) in o.iter_mut().zip(sums) {
            *o = s * scale;
        }
    }
    let rest = groups.remainder().chunks_exact(d);
    for (key, o) in rest.zip(outs.into_remainder()) {
        let [acc] = dots::<L, E, 1>(l, q, key);
        *o = l.reduce_add(acc) * scale;
    }
}

/// The 16 lane sums of `q · key` for each of the `G` keys of length `d = q.len()` that follow
/// one another in `keys` (`G·d` elements).
#[inline(always)]
fn dots<L: Lanes, E: LaneElement, const G: usize>(l: L, q: &[E], keys: &[E]) -> [L::F; G] {
    let d = q.len();
    let mut acc = [l.splat(0.0); G];
    let (q_chunks, q_tail) = q.as_chunks::<LANES>();
    let rows: [&[E]; G] = core::array::from_fn(|r| keys.get(r * d..(r + 1) * d).unwrap_or(&[]));
    // Every key's chunks beside the query's, checked once (never `None`: `keys` holds `G` rows).
    if let (Some(columns), Some(q_column)) = (
        Columns::new(rows, q_chunks.len()),
        Columns::<E, 1>::new([q], q_chunks.len()),
    ) {
        for (kcs, [qc]) in columns.zip(q_column) {
            let qv = E::load(l, qc);
            for (a, kc) in acc.iter_mut().zip(kcs) {
                *a = l.mul_add(qv, E::load(l, kc), *a);
            }
        }
    }
    if !q_tail.is_empty() {
        let qv = E::load_partial(l, q_tail);
        let tail_start = q_chunks.len() * LANES;
        for (a, row) in acc.iter_mut().zip(rows) {
            if let Some(kt) = row.get(tail_start..) {
                *a = l.mul_add(qv, E::load_partial(l, kt), *a);
            }
        }
    }
    acc
}

/// Output lanes of `acc` kept in registers while the value rows stream past.
const CHUNKS_PER_GROUP: usize = 4;

/// `acc[i] = fma(p[j], values[j*d + i], acc[i])` for `j` in order, `d = acc.len()`.
#[inline(always)]
pub(crate) fn accumulate<L: Lanes, E: LaneElement>(l: L, acc: &mut [f32], p: &[f32], values: &[E]) {
    let d = acc.len();
    if d == 0 {
        return;
    }
    let rows = || p.iter().zip(values.chunks_exact(d));
    let (chunks, tail) = acc.as_chunks_mut::<LANES>();
    let mut offset = 0;
    let mut groups = chunks.chunks_exact_mut(CHUNKS_PER_GROUP);
    for group in &mut groups {
        if let Ok(group) = <&mut [[f32; LANES]; CHUNKS_PER_GROUP]>::try_from(group) {
            accumulate_group(l, group, offset, rows());
        }
        offset += CHUNKS_PER_GROUP * LANES;
    }
    for chunk in groups.into_remainder() {
        accumulate_group::<L, E, 1>(l, core::array::from_mut(chunk), offset, rows());
        offset += LANES;
    }
    if !tail.is_empty() {
        let mut a = l.load_partial(tail);
        for (&pj, row) in rows() {
            if let Some(v) = row.get(offset..) {
                a = l.mul_add(l.splat(pj), E::load_partial(l, v), a);
            }
        }
        l.store_partial(a, tail);
    }
}

/// [`accumulate`] for `G` full chunks of `acc` starting at element `offset` of each value row.
#[inline(always)]
fn accumulate_group<'a, L: Lanes, E: LaneElement, const G: usize>(
    l: L,
    acc: &mut [[f32; LANES]; G],
    offset: usize,
    rows: impl Iterator<Item = (&'a f32, &'a [E])>,
) {
    let mut a = [l.splat(0.0); G];
    for (a, c) in a.iter_mut().zip(acc.iter()) {
        *a = l.load(c);
    }
    for (&pj, row) in rows {
        let pv = l.splat(pj);
        let Some(v) = row.get(offset..offset + G * LANES) else {
            continue;
        };
        for (a, vc) in a.iter_mut().zip(v.as_chunks::<LANES>().0) {
            *a = l.mul_add(pv, E::load(l, vc), *a);
        }
    }
    for (c, a) in acc.iter_mut().zip(a) {
        l.store(a, c);
    }
}
