//! The row primitives of [`RowOps`](super::RowOps), written once over [`Lanes`] for every SIMD
//! backend, and the macro that gives each backend its `#[target_feature]` entry points.
//!
//! The canonical order, identical on every backend:
//! - **dot products and sums**: 16 lane accumulators, element `i` into lane `i % 16` by a fused
//!   multiply-add (sum: add); a tail of fewer than 16 elements is zero-padded into the same lanes
//!   (adding `0·0` or `+0` changes nothing); then the lanes are summed by [`sum_tree`]. Several keys
//!   are processed together only to overlap independent chains: each key's order is unchanged.
//! - **`accumulate`**: per output element, one fused multiply-add per value row, in row order.
//! - **`max`**: 16 lane maxima by `x > m ? x : m` (NaN ignored), [`max_tree`], then the tail in
//!   order.
//! - **elementwise** (`normalize`, `scale`, `store`): one IEEE operation per element.
//! - **`exp`**: [`exp`](super::exp::exp) in lanes; a tail is padded with `-inf` (whose exp is `0`).
//!
//! [`sum_tree`]: super::lanes::sum_tree
//! [`max_tree`]: super::lanes::max_tree

use super::exp::exp;
use super::lanes::{keep_max, LaneElement, Lanes, LANES};

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

/// [`Lanes::reduce_add`] of each of `G` vectors, four at a time.
#[inline(always)]
pub(crate) fn reduce_group<L: Lanes, const G: usize>(l: L, acc: [L::F; G]) -> [f32; G] {
    let mut out = [0.0; G];
    let mut outs = out.chunks_exact_mut(4);
    let mut accs = acc.chunks_exact(4);
    for (o, a) in (&mut outs).zip(&mut accs) {
        if let Ok(a) = <[L::F; 4]>::try_from(a) {
            o.copy_from_slice(&l.reduce_add4(a));
        }
    }
    for (o, a) in outs.into_remainder().iter_mut().zip(accs.remainder()) {
        *o = l.reduce_add(*a);
    }
    out
}

/// The 16 lane sums of `q · key` for each of the `G` keys of length `d = q.len()` that follow
/// one another in `keys` (`G·d` elements).
#[inline(always)]
fn dots<L: Lanes, E: LaneElement, const G: usize>(l: L, q: &[E], keys: &[E]) -> [L::F; G] {
    let d = q.len();
    let mut acc = [l.splat(0.0); G];
    let (q_chunks, q_tail) = q.as_chunks::<LANES>();
    for (c, qc) in q_chunks.iter().enumerate() {
        let qv = E::load(l, qc);
        for (r, a) in acc.iter_mut().enumerate() {
            if let Some(kc) = chunk_at(keys, r * d + c * LANES) {
                *a = l.mul_add(qv, E::load(l, kc), *a);
            }
        }
    }
    if !q_tail.is_empty() {
        let qv = E::load_partial(l, q_tail);
        let tail_start = q_chunks.len() * LANES;
        for (r, a) in acc.iter_mut().enumerate() {
            if let Some(kt) = keys.get(r * d + tail_start..(r + 1) * d) {
                *a = l.mul_add(qv, E::load_partial(l, kt), *a);
            }
        }
    }
    acc
}

/// The 16 elements of `x` from `start`, if they are all there.
#[inline(always)]
pub(crate) fn chunk_at<T>(x: &[T], start: usize) -> Option<&[T; LANES]> {
    x.get(start..start.checked_add(LANES)?)?.try_into().ok()
}

/// The largest value of `s`, NaN ignored; `-inf` if `s` is empty or all NaN.
#[inline(always)]
pub(crate) fn max<L: Lanes>(l: L, s: &[f32]) -> f32 {
    let (chunks, tail) = s.as_chunks::<LANES>();
    let mut m = l.splat(f32::NEG_INFINITY);
    for c in chunks {
        m = l.max_keep(m, l.load(c));
    }
    tail.iter().fold(l.reduce_max(m), |m, &x| keep_max(m, x))
}

/// `s[j] = exp(s[j] - m)`; returns the sum of the new values.
#[inline(always)]
pub(crate) fn exp_sum<L: Lanes>(l: L, s: &mut [f32], m: f32) -> f32 {
    let mv = l.splat(m);
    let mut sum = l.splat(0.0);
    let (chunks, tail) = s.as_chunks_mut::<LANES>();
    for c in chunks {
        let e = exp(l, l.sub(l.load(c), mv));
        l.store(e, c);
        sum = l.add(sum, e);
    }
    if !tail.is_empty() {
        let mut x = [f32::NEG_INFINITY; LANES];
        for (x, &s) in x.iter_mut().zip(tail.iter()) {
            *x = s - m;
        }
        let e = exp(l, l.load(&x));
        l.store_partial(e, tail);
        sum = l.add(sum, e);
    }
    l.reduce_add(sum)
}

/// `s[j] = s[j] / d`.
#[inline(always)]
pub(crate) fn normalize<L: Lanes>(l: L, s: &mut [f32], d: f32) {
    let dv = l.splat(d);
    let (chunks, tail) = s.as_chunks_mut::<LANES>();
    for c in chunks {
        l.store(l.div(l.load(c), dv), c);
    }
    for x in tail {
        *x /= d;
    }
}

/// `acc[i] = acc[i] * alpha`.
#[inline(always)]
pub(crate) fn scale<L: Lanes>(l: L, acc: &mut [f32], alpha: f32) {
    let av = l.splat(alpha);
    let (chunks, tail) = acc.as_chunks_mut::<LANES>();
    for c in chunks {
        l.store(l.mul(l.load(c), av), c);
    }
    for x in tail {
        *x *= alpha;
    }
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

/// `out[i] = round(acc[i] / denom)` into the storage format.
#[inline(always)]
pub(crate) fn store<L: Lanes, E: LaneElement>(l: L, out: &mut [E], acc: &[f32], denom: f32) {
    let dv = l.splat(denom);
    let (out_chunks, out_tail) = out.as_chunks_mut::<LANES>();
    let (acc_chunks, acc_tail) = acc.as_chunks::<LANES>();
    for (o, a) in out_chunks.iter_mut().zip(acc_chunks) {
        E::store(l, l.div(l.load(a), dv), o);
    }
    for (o, &a) in out_tail.iter_mut().zip(acc_tail) {
        *o = E::from_f32(a / denom);
    }
}

/// Implements `RowOps<E, f32>` for `f32` and `bf16` elements on a [`Lanes`] token: each primitive
/// is a `#[target_feature]` wrapper around the shared body above, entered with the token as proof
/// that the features are present. Without a feature list (`core::simd`) the bodies are called
/// directly.
macro_rules! lane_row_ops {
    ($token:ty, $features:literal) => {
        impl<E: $crate::simd::lanes::LaneElement> $crate::simd::RowOps<E, f32> for $token {
            #[inline]
            fn scores(self, q: &[E], keys: &[E], scale: f32, out: &mut [f32]) {
                #[target_feature(enable = $features)]
                fn wrapper<E: $crate::simd::lanes::LaneElement>(
                    t: $token,
                    q: &[E],
                    keys: &[E],
                    scale: f32,
                    out: &mut [f32],
                ) {
                    $crate::simd::rows::scores(t, q, keys, scale, out)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, q, keys, scale, out) }
            }

            #[inline]
            fn max(self, s: &[f32]) -> f32 {
                #[target_feature(enable = $features)]
                fn wrapper(t: $token, s: &[f32]) -> f32 {
                    $crate::simd::rows::max(t, s)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, s) }
            }

            #[inline]
            fn exp_sum(self, s: &mut [f32], m: f32) -> f32 {
                #[target_feature(enable = $features)]
                fn wrapper(t: $token, s: &mut [f32], m: f32) -> f32 {
                    $crate::simd::rows::exp_sum(t, s, m)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, s, m) }
            }

            #[inline]
            fn normalize(self, s: &mut [f32], d: f32) {
                #[target_feature(enable = $features)]
                fn wrapper(t: $token, s: &mut [f32], d: f32) {
                    $crate::simd::rows::normalize(t, s, d)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, s, d) }
            }

            #[inline]
            fn scale(self, acc: &mut [f32], alpha: f32) {
                #[target_feature(enable = $features)]
                fn wrapper(t: $token, acc: &mut [f32], alpha: f32) {
                    $crate::simd::rows::scale(t, acc, alpha)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, acc, alpha) }
            }

            #[inline]
            fn accumulate(self, acc: &mut [f32], p: &[f32], values: &[E]) {
                #[target_feature(enable = $features)]
                fn wrapper<E: $crate::simd::lanes::LaneElement>(
                    t: $token,
                    acc: &mut [f32],
                    p: &[f32],
                    values: &[E],
                ) {
                    $crate::simd::rows::accumulate(t, acc, p, values)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, acc, p, values) }
            }

            #[inline]
            fn store(self, out: &mut [E], acc: &[f32], denom: f32) {
                #[target_feature(enable = $features)]
                fn wrapper<E: $crate::simd::lanes::LaneElement>(
                    t: $token,
                    out: &mut [E],
                    acc: &[f32],
                    denom: f32,
                ) {
                    $crate::simd::rows::store(t, out, acc, denom)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, out, acc, denom) }
            }

            #[inline]
            fn linear(self, in_dim: usize, x: &[f32], w: &[E], y: &mut [f32]) {
                #[target_feature(enable = $features)]
                fn wrapper<E: $crate::simd::lanes::LaneElement>(
                    t: $token,
                    in_dim: usize,
                    x: &[f32],
                    w: &[E],
                    y: &mut [f32],
                ) {
                    $crate::simd::lane_dense::linear(t, in_dim, x, w, y)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, in_dim, x, w, y) }
            }
        }
    };
    ($token:ty) => {
        impl<E: $crate::simd::lanes::LaneElement> $crate::simd::RowOps<E, f32> for $token {
            #[inline]
            fn scores(self, q: &[E], keys: &[E], scale: f32, out: &mut [f32]) {
                fn wrapper<E: $crate::simd::lanes::LaneElement>(
                    t: $token,
                    q: &[E],
                    keys: &[E],
                    scale: f32,
                    out: &mut [f32],
                ) {
                    $crate::simd::rows::scores(t, q, keys, scale, out)
                }
                wrapper(self, q, keys, scale, out)
            }

            #[inline]
            fn max(self, s: &[f32]) -> f32 {
                fn wrapper(t: $token, s: &[f32]) -> f32 {
                    $crate::simd::rows::max(t, s)
                }
                wrapper(self, s)
            }

            #[inline]
            fn exp_sum(self, s: &mut [f32], m: f32) -> f32 {
                fn wrapper(t: $token, s: &mut [f32], m: f32) -> f32 {
                    $crate::simd::rows::exp_sum(t, s, m)
                }
                wrapper(self, s, m)
            }

            #[inline]
            fn normalize(self, s: &mut [f32], d: f32) {
                fn wrapper(t: $token, s: &mut [f32], d: f32) {
                    $crate::simd::rows::normalize(t, s, d)
                }
                wrapper(self, s, d)
            }

            #[inline]
            fn scale(self, acc: &mut [f32], alpha: f32) {
                fn wrapper(t: $token, acc: &mut [f32], alpha: f32) {
                    $crate::simd::rows::scale(t, acc, alpha)
                }
                wrapper(self, acc, alpha)
            }

            #[inline]
            fn accumulate(self, acc: &mut [f32], p: &[f32], values: &[E]) {
                fn wrapper<E: $crate::simd::lanes::LaneElement>(
                    t: $token,
                    acc: &mut [f32],
                    p: &[f32],
                    values: &[E],
                ) {
                    $crate::simd::rows::accumulate(t, acc, p, values)
                }
                wrapper(self, acc, p, values)
            }

            #[inline]
            fn store(self, out: &mut [E], acc: &[f32], denom: f32) {
                fn wrapper<E: $crate::simd::lanes::LaneElement>(
                    t: $token,
                    out: &mut [E],
                    acc: &[f32],
                    denom: f32,
                ) {
                    $crate::simd::rows::store(t, out, acc, denom)
                }
                wrapper(self, out, acc, denom)
            }

            #[inline]
            fn linear(self, in_dim: usize, x: &[f32], w: &[E], y: &mut [f32]) {
                $crate::simd::lane_dense::linear(self, in_dim, x, w, y)
            }
        }
    };
}
pub(crate) use lane_row_ops;
