//! The row primitives of [`RowOps`], written once over [`Lanes`] for every lane token
//! ([`LaneOps`]), and the route of `f32`-accumulator jobs to the lane backends ([`run_rows`]).
//!
//! The canonical order, identical on every backend:
//! - **dot products and sums**: 16 lane accumulators, element `i` into lane `i % 16` by a fused
//!   multiply-add (sum: add); a tail of fewer than 16 elements is zero-padded into the same lanes
//!   (adding `0·0` or `+0` changes nothing); then the lanes are summed by [`sum_tree`]. Several keys
//!   (and, in flash's blocked tiles, several query rows: `rows::tile`) are processed together only
//!   to share loads and overlap independent chains: each dot product's order is unchanged.
//! - **`accumulate`**: per output element, one fused multiply-add per value row, in row order
//!   (flash's `P·V` on bf16 values on a token with bf16 pair products, `avx512bf16`, is the
//!   exception: keys in pairs by `vdpbf16ps`, see `simd/x86/bf16_pv.rs`).
//! - **`max`**: four sets of 16 lane maxima (chunk `c` into set `c % 4`) by `x > m ? x : m` (NaN
//!   ignored), the sets combined (`(0, 1)`, `(2, 3)`, then the two), [`max_tree`], then the tail
//!   in order.
//! - **elementwise** (`normalize`, `scale`, `store`): one IEEE operation per element.
//! - **`exp`**: [`exp_clamped`](crate::simd::exp_clamped) in lanes; a tail is padded with `-inf`
//!   (whose exp is `0`).
//!
//! [`sum_tree`]: crate::simd::lanes::sum_tree
//! [`max_tree`]: crate::simd::lanes::max_tree

use super::exp_pass::exp_pass;
use super::ops::{
    per_row_accumulate, per_row_scores, round_tile, Counts, Job, QTile, Routed, RowOps,
    SoftmaxStop, SoftmaxTile,
};
use super::pairs::{exp_sum_packed, pack_row, packs, unpack_rows};
use super::row_kernels::accumulate;
pub(crate) use super::score_element::ScoreElement;
use super::softmax::{softmax_rows, SoftmaxSteps};
use super::{lane_dense, tile, tile_scores};
use crate::simd::lanes::keep_max;
use crate::simd::{with_token, Backend, Isa, LaneElement, LaneJob, Lanes, LANES};

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
    fn finite_max_exp_sum(self, s: &mut [f32], m: f32) -> Option<(f32, f32)> {
        self.0.plain().enter(FiniteMaxExpSum(s, m))
    }
    #[inline]
    fn tile_softmax(
        self,
        tile: SoftmaxTile<'_, f32>,
        from: usize,
    ) -> Option<Result<(), SoftmaxStop>> {
        let rows = tile.acc.len().checked_div(tile.d).unwrap_or(0);
        if packs(E::IS_BF16 && L::BF16_DOTS, tile.ld, rows, tile.scores.len()) {
            // In the token's own features: its pair rounding instruction.
            return Some(self.0.enter(TileSoftmax::<true>(tile, from)));
        }
        Some(self.0.plain().enter(TileSoftmax::<false>(tile, from)))
    }
    #[inline]
    fn finish_probabilities(self, row: &mut [f32], count: usize) {
        if packs(E::IS_BF16 && L::BF16_DOTS, row.len(), 1, row.len()) {
            self.0.enter(PackRow(row, count));
        }
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
    #[inline]
    fn tile_scores(
        self,
        q: QTile<'_, E>,
        keys: &[E],
        scale: f32,
        counts: Counts,
        s: &mut [f32],
        ld: usize,
        work: &mut [f32],
    ) {
        // bf16 scores by the token's own pair instruction (in its features, not the plain ones).
        if E::IS_BF16 && L::BF16_DOTS && q.rows >= tile::MIN_BLOCKED_ROWS {
            let job = TileScoresOwn(q, keys, scale, counts, &mut *s, ld, &mut *work);
            if !self.0.enter(job) {
                per_row_scores(self, q, keys, scale, counts, s, ld)
            }
            return;
        }
        // Tiles too small to block keep the per-row kernels (same bits).
        if q.rows < tile::MIN_BLOCKED_ROWS {
            return per_row_scores(self, q, keys, scale, counts, s, ld);
        }
        let job = TileScores(q, keys, scale, counts, &mut *s, ld, work);
        if !self.0.plain().enter(job) {
            per_row_scores(self, q, keys, scale, counts, s, ld)
        }
    }
    #[inline]
    fn round_probabilities(self, p: &mut [f32]) {
        // Scalar, as the generic backend: the identity (no pass) for f32 elements.
        if E::IS_BF16 {
            for x in p.iter_mut() {
                *x = E::round_probability(*x);
            }
        }
    }
    #[inline]
    fn tile_accumulate(
        self,
        acc: &mut [f32],
        d: usize,
        p: &mut [f32],
        ld: usize,
        counts: Counts,
        values: &[E],
        work: &mut [f32],
    ) {
        // bf16 values by the token's own pair instruction, `P` rounded in vectors while it is
        // packed, for every tile (decode's too: a row's bits do not depend on its tile's rows).
        let rows = acc.len().checked_div(d).unwrap_or(0);
        if E::IS_BF16 && L::BF16_DOTS {
            let packed = packs(true, ld, rows, p.len());
            let job = TileAccumulateOwn(&mut *acc, d, &*p, packed, ld, counts, values, &mut *work);
            if self.0.enter(job) {
                return;
            }
            if packed {
                // Refused (never in flash, which sizes `work` for it): back to f32, exactly.
                unpack_rows(p, ld, rows, |r| counts.of(r));
            }
        }
        round_tile::<E, f32, _>(self, rows, p, ld, counts);
        if rows < tile::MIN_BLOCKED_ROWS {
            return per_row_accumulate(self, acc, d, p, ld, counts, values);
        }
        let job = TileAccumulate(&mut *acc, d, p, ld, counts, values, work);
        if !self.0.plain().enter(job) {
            per_row_accumulate(self, acc, d, p, ld, counts, values)
        }
    }
}

/// The blocked tile primitives of `rows::tile` as lane jobs (`false`: not blocked, nothing done).
struct TileScores<'a, E>(
    QTile<'a, E>,
    &'a [E],
    f32,
    Counts,
    &'a mut [f32],
    usize,
    &'a mut [f32],
);
struct TileScoresOwn<'a, E>(
    QTile<'a, E>,
    &'a [E],
    f32,
    Counts,
    &'a mut [f32],
    usize,
    &'a mut [f32],
);
struct TileAccumulate<'a, E>(
    &'a mut [f32],
    usize,
    &'a [f32],
    usize,
    Counts,
    &'a [E],
    &'a mut [f32],
);

impl<E: LaneElement> LaneJob for TileScores<'_, E> {
    type Output = bool;
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> bool {
        let TileScores(q, keys, scale, counts, s, ld, work) = self;
        tile_scores::tile_scores(l, q, keys, scale, counts, s, ld, work)
    }
}
impl<E: ScoreElement> LaneJob for TileScoresOwn<'_, E> {
    type Output = bool;
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> bool {
        let TileScoresOwn(q, keys, scale, counts, s, ld, work) = self;
        E::tile_scores_own(l, q, keys, scale, counts, s, ld, work)
    }
}
struct TileAccumulateOwn<'a, E>(
    &'a mut [f32],
    usize,
    &'a [f32],
    bool,
    usize,
    Counts,
    &'a [E],
    &'a mut [f32],
);
impl<E: ScoreElement> LaneJob for TileAccumulateOwn<'_, E> {
    type Output = bool;
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> bool {
        let TileAccumulateOwn(acc, d, p, packed, ld, counts, values, work) = self;
        E::tile_accumulate_own(l, acc, d, p, packed, ld, counts, values, work)
    }
}
impl<E: LaneElement> LaneJob for TileAccumulate<'_, E> {
    type Output = bool;
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> bool {
        let TileAccumulate(acc, d, p, ld, counts, values, work) = self;
        tile::tile_accumulate(l, acc, d, p, ld, counts, values, work)
    }
}

/// Each primitive as a lane job: its arguments, and its body on the token it is given.
struct Scores<'a, E>(&'a [E], &'a [E], f32, &'a mut [f32]);
struct Max<'a>(&'a [f32]);
struct MaxExpSum<'a>(&'a mut [f32], f32);
struct FiniteMaxExpSum<'a>(&'a mut [f32], f32);
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
        (m, exp_sum_with::<L, false>(l, self.0, m))
    }
}
impl LaneJob for FiniteMaxExpSum<'_> {
    type Output = Option<(f32, f32)>;
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> Option<(f32, f32)> {
        let (max, finite) = finite_max(l, self.0);
        if !finite {
            return None;
        }
        let m = f32::max(self.1, max);
        Some((m, exp_sum_with::<L, false>(l, self.0, m)))
    }
}
/// Packs a recomputed row's probabilities ([`RowOps::finish_probabilities`]).
struct PackRow<'a>(&'a mut [f32], usize);
impl LaneJob for PackRow<'_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        pack_row(l, self.0, self.1)
    }
}
/// Flash's softmax step over a whole tile inside the token's features (`PACK`: the
/// probabilities packed to bf16 pairs as they are made, see [`packs`]).
struct TileSoftmax<'a, const PACK: bool>(SoftmaxTile<'a, f32>, usize);
impl<const PACK: bool> LaneJob for TileSoftmax<'_, PACK> {
    type Output = Result<(), SoftmaxStop>;
    #[inline(always)]
    fn run<L: Isa>(self, l: L) -> Result<(), SoftmaxStop> {
        softmax_rows(InLanes::<L, PACK>(l), self.0, self.1)
    }
}
/// The softmax steps on a token already inside its features: the primitives' bodies inlined.
#[derive(Clone, Copy)]
struct InLanes<L, const PACK: bool>(L);
impl<L: Isa, const PACK: bool> SoftmaxSteps<f32> for InLanes<L, PACK> {
    #[inline(always)]
    fn finite_max_exp_sum(self, row: &mut [f32], count: usize, m: f32) -> Option<(f32, f32)> {
        if !PACK {
            return FiniteMaxExpSum(row.get_mut(..count)?, m).run(self.0);
        }
        let (max, finite) = finite_max(self.0, row.get(..count)?);
        if !finite {
            return None;
        }
        let m = f32::max(m, max);
        Some((m, exp_sum_packed(self.0, row, count, m)?))
    }
    #[inline(always)]
    fn scale(self, acc: &mut [f32], alpha: f32) {
        scale(self.0, acc, alpha)
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

/// The largest value of `s`, NaN ignored; `-inf` if `s` is empty or all NaN.
#[inline(always)]
pub(crate) fn max<L: Lanes>(l: L, s: &[f32]) -> f32 {
    max_checked::<L, false>(l, s).0
}

/// [`max`] and whether every value is finite: `x - x` is `0` for a finite `x` and NaN for an
/// infinity or NaN, so one add a chunk carries the check through the same pass.
#[inline(always)]
fn finite_max<L: Lanes>(l: L, s: &[f32]) -> (f32, bool) {
    max_checked::<L, true>(l, s)
}

/// The max pass of [`max`] and [`finite_max`]: the check's add is compiled only with `CHECK`
/// (without it, `true` is returned). Four independent chains of maxima and of checks, chunk `c`
/// into chain `c % 4`: with one chain the pass ran at one `max` and one add's latency a chunk
/// (about 3 of the ~140 cycles flash spends on 16 scores at d = 64), not at the loads' pace.
#[inline(always)]
fn max_checked<L: Lanes, const CHECK: bool>(l: L, s: &[f32]) -> (f32, bool) {
    let (chunks, tail) = s.as_chunks::<LANES>();
    let (quads, rest) = chunks.as_chunks::<4>();
    let mut m = [l.splat(f32::NEG_INFINITY); 4];
    let mut nf = [l.splat(0.0); 4];
    for quad in quads {
        for ((m, nf), c) in m.iter_mut().zip(&mut nf).zip(quad) {
            (*m, *nf) = max_check_step::<L, CHECK>(l, *m, *nf, c);
        }
    }
    for ((m, nf), c) in m.iter_mut().zip(&mut nf).zip(rest) {
        (*m, *nf) = max_check_step::<L, CHECK>(l, *m, *nf, c);
    }
    let [m0, m1, m2, m3] = m;
    let m = l.max_keep(l.max_keep(m0, m1), l.max_keep(m2, m3));
    let finite = !CHECK || {
        let [n0, n1, n2, n3] = nf;
        // Each chain is `+0` or NaN, so their sum is `0` exactly when every value was finite.
        let nf = l.add(l.add(n0, n1), l.add(n2, n3));
        l.reduce_add(nf) == 0.0 && tail.iter().fold(true, |ok, x| ok & x.is_finite())
    };
    (
        tail.iter().fold(l.reduce_max(m), |m, &x| keep_max(m, x)),
        finite,
    )
}

/// One chunk of [`max_checked`]: the chain's max with `c`, and its check (`x - x` is `0` for a
/// finite `x`, NaN otherwise) added in.
#[inline(always)]
fn max_check_step<L: Lanes, const CHECK: bool>(
    l: L,
    m: L::F,
    nf: L::F,
    c: &[f32; LANES],
) -> (L::F, L::F) {
    let x = l.load(c);
    let nf = if CHECK { l.add(nf, l.sub(x, x)) } else { nf };
    (l.max_keep(m, x), nf)
}

/// `s[j] = exp(s[j] - m)`; returns the sum of the new values.
#[inline(always)]
pub(crate) fn exp_sum<L: Lanes>(l: L, s: &mut [f32], m: f32) -> f32 {
    exp_sum_with::<L, true>(l, s, m)
}

/// [`exp_sum`]; without `HIGH_CLAMP` only after the max pass ([`exp_pass`]).
#[inline(always)]
fn exp_sum_with<L: Lanes, const HIGH_CLAMP: bool>(l: L, s: &mut [f32], m: f32) -> f32 {
    let count = s.len();
    exp_pass::<L, HIGH_CLAMP, false>(l, s, count, m)
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
