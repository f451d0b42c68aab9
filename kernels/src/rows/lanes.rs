//! The row primitives of [`RowOps`], written once over [`Lanes`] for every lane token
//! ([`LaneOps`]), and the route of `f32`-accumulator jobs to the lane backends ([`run_rows`]).
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
//! [`sum_tree`]: crate::simd::lanes::sum_tree
//! [`max_tree`]: crate::simd::lanes::max_tree

use super::lane_dense;
use super::ops::{Job, Routed, RowOps};
use crate::simd::lanes::{keep_max, reduce_group, Columns};
use crate::simd::{exp, with_token, Backend, Isa, LaneElement, LaneJob, Lanes, LANES};

/// The row primitives on the lanes of token `L`: each call enters the token's target features
/// once (`Isa::enter`) and runs the primitive's loop inside them; all but `scores` (the one
/// with bf16 instructions of its own) on the token's plain ISA (`Isa::Plain`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LaneOps<L>(pub(crate) L);

impl<L: Isa, E: ScoreElement> RowOps<E, f32> for LaneOps<L> {
    #[inline]
    fn scores(self, q: &[E], keys: &[E], scale: f32, out: &mut [f32]) {
        self.0.enter(Scores(q, keys, scale, out))
    }
    #[inline]
    fn max(self, s: &[f32]) -> f32 {
        self.0.plain().enter(Max(s))
    }
    #[inline]
    fn max_exp_sum(self, s: &mut [f32], m: f32) -> (f32, f32) {
        self.0.plain().enter(MaxExpSum(s, m))
    }
    #[inline]
    fn exp_sum(self, s: &mut [f32], m: f32) -> f32 {
        self.0.plain().enter(ExpSum(s, m))
    }
    #[inline]
    fn normalize(self, s: &mut [f32], l: f32) {
        self.0.plain().enter(Normalize(s, l))
    }
    #[inline]
    fn scale(self, acc: &mut [f32], alpha: f32) {
        self.0.plain().enter(Scale(acc, alpha))
    }
    #[inline]
    fn accumulate(self, acc: &mut [f32], p: &[f32], values: &[E]) {
        self.0.plain().enter(Accumulate(acc, p, values))
    }
    #[inline]
    fn store(self, out: &mut [E], acc: &[f32], denom: f32) {
        self.0.plain().enter(Store(out, acc, denom))
    }
    #[inline]
    fn linear(self, in_dim: usize, x: &[f32], w: &[E], y: &mut [f32]) {
        self.0.plain().enter(Linear(in_dim, x, w, y))
    }
}

/// Each primitive as a lane job: its arguments, and its body on the token it is given.
struct Scores<'a, E>(&'a [E], &'a [E], f32, &'a mut [f32]);
struct Max<'a>(&'a [f32]);
struct MaxExpSum<'a>(&'a mut [f32], f32);
struct ExpSum<'a>(&'a mut [f32], f32);
struct Normalize<'a>(&'a mut [f32], f32);
struct Scale<'a>(&'a mut [f32], f32);
struct Accumulate<'a, E>(&'a mut [f32], &'a [f32], &'a [E]);
struct Store<'a, E>(&'a mut [E], &'a [f32], f32);
struct Linear<'a, E>(usize, &'a [f32], &'a [E], &'a mut [f32]);

impl<E: ScoreElement> LaneJob for Scores<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        E::scores(l, self.0, self.1, self.2, self.3)
    }
}
impl LaneJob for Max<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> f32 {
        max(l, self.0)
    }
}
impl LaneJob for MaxExpSum<'_> {
    type Output = (f32, f32);
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> (f32, f32) {
        let m = f32::max(self.1, max(l, self.0));
        (m, exp_sum(l, self.0, m))
    }
}
impl LaneJob for ExpSum<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> f32 {
        exp_sum(l, self.0, self.1)
    }
}
impl LaneJob for Normalize<'_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        normalize(l, self.0, self.1)
    }
}
impl LaneJob for Scale<'_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        scale(l, self.0, self.1)
    }
}
impl<E: LaneElement> LaneJob for Accumulate<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        accumulate(l, self.0, self.1, self.2)
    }
}
impl<E: LaneElement> LaneJob for Store<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        store(l, self.0, self.1, self.2)
    }
}
impl<E: LaneElement> LaneJob for Linear<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        lane_dense::linear(l, self.0, self.1, self.2, self.3)
    }
}

/// The one score computation that depends on the element type: bf16 rows go to the token's
/// own bf16 dot products where it has them (`Lanes::bf16_scores`).
pub(crate) trait ScoreElement: LaneElement {
    /// `out[j] = dot(q, key j) * scale`.
    fn scores<L: Lanes>(l: L, q: &[Self], keys: &[Self], scale: f32, out: &mut [f32]);
}

impl ScoreElement for f32 {
    #[inline(always)]
    fn scores<L: Lanes>(l: L, q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
        scores(l, q, keys, scale, out)
    }
}

impl ScoreElement for half::bf16 {
    #[inline(always)]
    fn scores<L: Lanes>(l: L, q: &[Self], keys: &[Self], scale: f32, out: &mut [f32]) {
        if !l.bf16_scores(q, keys, scale, out) {
            scores(l, q, keys, scale, out)
        }
    }
}

/// A row job handed a lane token: its primitives enter the token's features call by call.
struct RowJob<J, E>(J, core::marker::PhantomData<E>);

impl<E: ScoreElement, J: Job<E, f32>> LaneJob for RowJob<J, E> {
    type Output = J::Output;
    #[inline]
    fn run<L: Isa>(self, l: L) -> J::Output {
        self.0.run(LaneOps(l))
    }
}

/// Runs an `f32`-accumulator job on a SIMD backend, or hands it back for the generic one (whose
/// attention rounds each operation separately: see `rows::generic`).
#[inline]
pub(crate) fn run_rows<E: ScoreElement, J: Job<E, f32>>(
    backend: Backend,
    job: J,
) -> Routed<J, E, f32> {
    match backend.resolve() {
        Backend::Generic => Routed::Generic(job),
        chosen => Routed::Done(with_token(chosen, RowJob(job, core::marker::PhantomData))),
    }
}

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
    if let Some(columns) = Columns::new(rows, q_chunks.len()) {
        columns.zip_for_each(q_chunks, |qc, kcs| {
            let qv = E::load(l, qc);
            for (a, kc) in acc.iter_mut().zip(kcs) {
                *a = l.mul_add(qv, E::load(l, kc), *a);
            }
        });
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
