//! The Adam loops on the 16 lanes of any backend (the scalar lanes included): the update of
//! `optim::adam`, the read-only pass of the hyper-Adam step (its five hypergradient sums and the
//! finiteness check of the gradient) and the lagged schedule's fused pass.
//!
//! Every value is computed with the `f32` operations of the scalar loops, in their order, so the
//! updated state and the hypergradient terms are the same bits. The terms are summed in sixteen
//! `f32` lanes flushed into `f64` every 16 chunks (the blocked summation of `optim::reduce`, with
//! its error bound).

use super::scalars::{
    adam_element, adam_hyper_terms, adam_lagged_element, AdamScalars, HyperScalars,
};
use crate::simd::{run_lanes, Backend, LaneJob, Lanes, LANES};
use crate::Result;

/// The slices of the pass, all of one length `n` (`params` empty when there is no weight decay).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamHyperInputs<'a> {
    pub grads: &'a [f32],
    pub m: &'a [f32],
    pub v: &'a [f32],
    pub prev: &'a [f32],
    pub params: &'a [f32],
}

/// The exact schedule's read-only pass on the best SIMD backend: the five sums of
/// `optim::adam::adam_hyper_terms` over the state the step `last` left (`v`, not `sqrt(v)`:
/// its square root is taken here, as that step took it) and the finiteness check of the gradient:
/// `None` when a gradient is NaN or infinite.
pub(crate) fn adam_hyper_sums(
    backend: Backend,
    last: &HyperScalars,
    x: AdamHyperInputs<'_>,
) -> Result<Option<[f64; 5]>> {
    struct Job<'a, 'b>(&'a HyperScalars, AdamHyperInputs<'b>);
    impl LaneJob for Job<'_, '_> {
        type Output = Option<[f64; 5]>;
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) -> Self::Output {
            if self.1.params.is_empty() {
                sums::<L, false>(l, self.0, self.1)
            } else {
                sums::<L, true>(l, self.0, self.1)
            }
        }
    }
    run_lanes(backend, Job(last, x))
}

/// Chunks summed in `f32` lanes before they are added into the `f64` totals, as in
/// `optim::reduce` (each lane then adds at most 16 terms in `f32`: an error below `17 u` of the
/// sum of magnitudes, the budget the hypergradient tests document).
pub(crate) const FLUSH: usize = 16;

/// Adds the `f32` lane sums into the `f64` totals and clears them.
#[inline(always)]
pub(crate) fn flush<L: Lanes, const K: usize>(
    l: L,
    lane_sums: &mut [L::F; K],
    totals: &mut [[f64; LANES]; K],
) {
    for (a, total) in lane_sums.iter_mut().zip(totals.iter_mut()) {
        let mut lanes = [0.0f32; LANES];
        l.store(*a, &mut lanes);
        for (acc, y) in total.iter_mut().zip(lanes) {
            *acc += y as f64;
        }
        *a = l.splat(0.0);
    }
}

/// [`adam_hyper_sums`] on one lane token; `DECAY`: add the weight term (`params` non-empty).
#[inline(always)]
fn sums<L: Lanes, const DECAY: bool>(
    l: L,
    last: &HyperScalars,
    x: AdamHyperInputs<'_>,
) -> Option<[f64; 5]> {
    let (gc, gt) = x.grads.as_chunks::<LANES>();
    let (mc, mt) = x.m.as_chunks::<LANES>();
    let (vc, vt) = x.v.as_chunks::<LANES>();
    let (rc, rt) = x.prev.as_chunks::<LANES>();
    let (pc, pt) = x.params.as_chunks::<LANES>();
    let lc = LastConsts::new(l, last);
    let zero = lc.zero;
    let mut totals: HyperTotals = Default::default();
    let mut lane_sums = [zero; 5];
    let mut bad = zero;
    let mut weight_runs = pc.chunks(FLUSH);
    let runs = gc.chunks(FLUSH).zip(mc.chunks(FLUSH));
    let state = vc.chunks(FLUSH).zip(rc.chunks(FLUSH));
    for ((gr, mr), (vr, rr)) in runs.zip(state) {
        let [s0, s1, s2, s3, s4] = &mut lane_sums;
        if DECAY {
            for (g, p) in gr.iter().zip(weight_runs.next().unwrap_or_default()) {
                *s4 = l.mul_add(l.load(g), l.load(p), *s4);
            }
        }
        let mut acc = [*s0, *s1, *s2, *s3];
        for ((g, m), (v, prev)) in gr.iter().zip(mr).zip(vr.iter().zip(rr)) {
            let g = l.load(g);
            bad = l.add(bad, l.sub(g, g));
            let v = l.load(v);
            let x = [g, l.load(m), l.sqrt(v), v, l.load(prev)];
            hyper_terms(l, &lc, x, &mut acc);
        }
        [*s0, *s1, *s2, *s3] = acc;
        flush(l, &mut lane_sums, &mut totals);
    }
    let mut flags = [0.0f32; LANES];
    l.store(bad, &mut flags);
    let mut sums = totals.map(|t| t.iter().sum::<f64>());
    let tail = gt.iter().zip(mt).zip(vt.iter().zip(rt));
    for (i, ((&g, &m), (&v, &prev))) in tail.enumerate() {
        if !g.is_finite() {
            return None;
        }
        let w = if DECAY {
            pt.get(i).copied().unwrap_or(0.0)
        } else {
            0.0
        };
        let terms = adam_hyper_terms(last, [g, m, libm::sqrtf(v), v, prev, w]);
        for (sum, term) in sums.iter_mut().zip(terms) {
            *sum += term as f64;
        }
    }
    flags.iter().all(|f| !f.is_nan()).then_some(sums)
}

/// The Adam update of `p`, `m`, `v` (one length with `g`) with the scalar loop's `f32`
/// operations in its order, so the same bits; `saved` is empty or as long as `g`, which is then
/// copied into it in the same loop (a learned level's saved gradient: one more vector store per
/// chunk, instead of a pass of its own). On `backend`'s lanes (`Err` and nothing written if it
/// cannot run here).
pub(crate) fn adam_update(
    backend: Backend,
    s: &AdamScalars,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    saved: &mut [f32],
) -> Result<()> {
    struct Job<'a, 'b>(&'a AdamScalars, AdamSlices<'b>);
    impl LaneJob for Job<'_, '_> {
        type Output = ();
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) {
            if self.1.saved.is_empty() {
                update::<L, false>(l, self.0, self.1)
            } else {
                update::<L, true>(l, self.0, self.1)
            }
        }
    }
    run_lanes(backend, Job(s, AdamSlices { p, g, m, v, saved }))
}

/// The slices of [`adam_update`].
struct AdamSlices<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    saved: &'a mut [f32],
}

/// The per-step scalars of the update, splat once per call.
#[derive(Clone, Copy)]
pub(crate) struct UpdateConsts<L: Lanes> {
    pub(crate) b1: L::F,
    pub(crate) ob1: L::F,
    pub(crate) b2: L::F,
    pub(crate) ob2: L::F,
    pub(crate) ibc: L::F,
    pub(crate) eps: L::F,
    pub(crate) step: L::F,
    pub(crate) decay: L::F,
    pub(crate) one: L::F,
}

impl<L: Lanes> UpdateConsts<L> {
    #[inline(always)]
    pub(crate) fn new(l: L, s: &AdamScalars) -> Self {
        UpdateConsts {
            b1: l.splat(s.beta1),
            ob1: l.splat(s.one_minus_beta1),
            b2: l.splat(s.beta2),
            ob2: l.splat(s.one_minus_beta2),
            ibc: l.splat(s.inv_sqrt_bc2),
            eps: l.splat(s.eps),
            step: l.splat(s.step),
            decay: l.splat(s.decay),
            one: l.splat(1.0),
        }
    }
}

/// One chunk of the update: new `(p, m, v)` from `(p, g, m, v)`, with `adam_element`'s
/// operations in its order.
#[inline(always)]
fn update_chunk<L: Lanes>(l: L, c: &UpdateConsts<L>, [p, g, m, v]: [L::F; 4]) -> [L::F; 3] {
    let m = l.add(l.mul(c.b1, m), l.mul(c.ob1, g));
    let v = l.add(l.mul(c.b2, v), l.mul(c.ob2, l.mul(g, g)));
    let inv_denom = l.div(c.one, l.add(l.mul(l.sqrt(v), c.ibc), c.eps));
    let p = l.sub(l.mul(p, c.decay), l.mul(c.step, l.mul(m, inv_denom)));
    [p, m, v]
}

/// [`adam_update`] on one lane token: whole chunks on the lanes, the tail one element at a time
/// through the scalar loop's own `adam_element`. `SAVE`: copy `g` into `x.saved`.
#[inline(always)]
fn update<L: Lanes, const SAVE: bool>(l: L, s: &AdamScalars, x: AdamSlices<'_>) {
    let (pc, pt) = x.p.as_chunks_mut::<LANES>();
    let (gc, gt) = x.g.as_chunks::<LANES>();
    let (mc, mt) = x.m.as_chunks_mut::<LANES>();
    let (vc, vt) = x.v.as_chunks_mut::<LANES>();
    let c = UpdateConsts::new(l, s);
    let chunk = |pk: &mut [f32; LANES], gk, mk: &mut _, vk: &mut _| {
        let g = l.load(gk);
        let [pv, mv, vv] = update_chunk(l, &c, [l.load(pk), g, l.load(mk), l.load(vk)]);
        l.store(pv, pk);
        l.store(mv, mk);
        l.store(vv, vk);
        g
    };
    let chunks = pc.iter_mut().zip(gc).zip(mc.iter_mut().zip(vc.iter_mut()));
    if SAVE {
        let (sc, st) = x.saved.as_chunks_mut::<LANES>();
        for (((pk, gk), (mk, vk)), sk) in chunks.zip(sc.iter_mut()) {
            l.store(chunk(pk, gk, mk, vk), sk);
        }
        for (si, &gi) in st.iter_mut().zip(gt) {
            *si = gi;
        }
    } else {
        for ((pk, gk), (mk, vk)) in chunks {
            chunk(pk, gk, mk, vk);
        }
    }
    for (((pi, &gi), mi), vi) in pt.iter_mut().zip(gt).zip(mt.iter_mut()).zip(vt.iter_mut()) {
        (*pi, *mi, *vi, _) = adam_element(s, *pi, gi, *mi, *vi);
    }
}

/// The per-parameter slices of the lagged hyper-Adam pass, all of one length; `root` holds
/// `sqrt(v)` (`optim::adam::adam_lagged_element`).
#[derive(Debug)]
pub(crate) struct AdamFusedSlices<'a> {
    pub params: &'a mut [f32],
    pub grads: &'a [f32],
    pub m: &'a mut [f32],
    pub root: &'a mut [f32],
    pub prev: &'a mut [f32],
}

/// Running totals of the lagged pass's five sums, one `f64` per lane, carried across calls.
pub(crate) type HyperTotals = [[f64; LANES]; 5];

/// The lagged schedule's one pass on the best SIMD backend: adds the five hypergradient terms of
/// the step `last` took into `totals` (`f32` lanes flushed into `f64` every `FLUSH` chunks, as
/// [`adam_hyper_sums`] does) and applies the step with `now`, saving each gradient into `prev`.
/// The step is `adam_lagged_update`'s operations in its order (the same bits); the terms are
/// `adam_hyper_terms`' products, the first added exactly as formed and the others each with one
/// fused multiply-add (within an ulp of `adam_lagged_element`'s terms). `decay`: include the
/// weight term. The gradient must already be checked. On `backend`'s lanes (`Err` and nothing
/// written if it cannot run here).
pub(crate) fn adam_fused(
    backend: Backend,
    last: &HyperScalars,
    now: &AdamScalars,
    decay: bool,
    x: AdamFusedSlices<'_>,
    totals: &mut HyperTotals,
) -> Result<()> {
    struct Job<'a, 'b, 'c>(
        &'a HyperScalars,
        &'a AdamScalars,
        bool,
        AdamFusedSlices<'b>,
        &'c mut HyperTotals,
    );
    impl LaneJob for Job<'_, '_, '_> {
        type Output = ();
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) {
            if self.2 {
                fused::<L, true>(l, self.0, self.1, self.3, self.4)
            } else {
                fused::<L, false>(l, self.0, self.1, self.3, self.4)
            }
        }
    }
    run_lanes(backend, Job(last, now, decay, x, totals))
}

/// The hypergradient passes' constants of the previous step, splat once per call.
#[derive(Clone, Copy)]
struct LastConsts<L: Lanes> {
    zero: L::F,
    one: L::F,
    ibc: L::F,
    eps: L::F,
}

impl<L: Lanes> LastConsts<L> {
    #[inline(always)]
    fn new(l: L, last: &HyperScalars) -> Self {
        LastConsts {
            zero: l.splat(0.0),
            one: l.splat(1.0),
            ibc: l.splat(last.s.inv_sqrt_bc2),
            eps: l.splat(last.s.eps),
        }
    }
}

/// `adam_hyper_terms` on one chunk, accumulated: `acc[0] += z m` (the product as formed),
/// `acc[1] += z g'`, `acc[2] += t v`, `acc[3] += t g'^2`, each with one fused multiply-add.
#[inline(always)]
fn hyper_terms<L: Lanes>(
    l: L,
    last: &LastConsts<L>,
    [g, m, root, v, prev]: [L::F; 5],
    acc: &mut [L::F; 4],
) {
    let a = l.mul_add(root, last.ibc, last.eps);
    let rho = l.select(l.gt(root, last.zero), root, last.one);
    let inv = l.div(last.one, l.mul(rho, a));
    let z = l.mul(l.mul(g, rho), inv);
    let zm = l.mul(z, m);
    let t = l.mul(zm, inv);
    let [a0, a1, a2, a3] = acc;
    *a0 = l.add(*a0, zm);
    *a1 = l.mul_add(z, prev, *a1);
    *a2 = l.mul_add(t, v, *a2);
    *a3 = l.mul_add(t, l.mul(prev, prev), *a3);
}

/// `adam_lagged_update` on one chunk: the new `(p, m, root)`, the same bits. `DECAY: false`
/// skips the multiplication by `1 - lr weight_decay = 1` (exact either way).
#[inline(always)]
fn lagged_update<L: Lanes, const DECAY: bool>(
    l: L,
    now: &UpdateConsts<L>,
    [p, g, m, root]: [L::F; 4],
) -> [L::F; 3] {
    let m = l.mul_add(now.b1, m, l.mul(now.ob1, g));
    let v = l.mul_add(now.b2, l.mul(root, root), l.mul(now.ob2, l.mul(g, g)));
    let root = l.sqrt(v);
    let step = l.div(l.mul(now.step, m), l.mul_add(root, now.ibc, now.eps));
    let p = if DECAY { l.mul(p, now.decay) } else { p };
    [l.sub(p, step), m, root]
}

/// [`adam_fused`] on one lane token; `DECAY`: add the weight term.
#[inline(always)]
fn fused<L: Lanes, const DECAY: bool>(
    l: L,
    last: &HyperScalars,
    now: &AdamScalars,
    x: AdamFusedSlices<'_>,
    totals: &mut HyperTotals,
) {
    let (pc, pt) = x.params.as_chunks_mut::<LANES>();
    let (gc, gt) = x.grads.as_chunks::<LANES>();
    let (mc, mt) = x.m.as_chunks_mut::<LANES>();
    let (sc, st) = x.root.as_chunks_mut::<LANES>();
    let (rc, rt) = x.prev.as_chunks_mut::<LANES>();
    let lc = LastConsts::new(l, last);
    let nc = UpdateConsts::new(l, now);
    let zero = lc.zero;
    let mut lane_sums = [zero; 5];
    // Runs of `FLUSH` chunks, each followed by the flush of the lane sums. With weight decay the
    // run's weight terms are summed first (from L1 on the second read).
    let runs = pc.chunks_mut(FLUSH).zip(gc.chunks(FLUSH));
    let state = mc
        .chunks_mut(FLUSH)
        .zip(sc.chunks_mut(FLUSH))
        .zip(rc.chunks_mut(FLUSH));
    for ((pr, gr), ((mr, sr), rr)) in runs.zip(state) {
        let [s0, s1, s2, s3, s4] = &mut lane_sums;
        let mut acc = [*s0, *s1, *s2, *s3];
        if DECAY {
            for (pk, gk) in pr.iter().zip(gr.iter()) {
                *s4 = l.mul_add(l.load(gk), l.load(pk), *s4);
            }
        }
        let write = pr
            .iter_mut()
            .zip(gr)
            .zip(mr.iter_mut().zip(sr.iter_mut()).zip(rr.iter_mut()));
        for ((pk, gk), ((mk, sk), rk)) in write {
            let g = l.load(gk);
            let (m, root) = (l.load(mk), l.load(sk));
            let v = l.mul(root, root);
            hyper_terms(l, &lc, [g, m, root, v, l.load(rk)], &mut acc);
            let [p, m, root] = lagged_update::<L, DECAY>(l, &nc, [l.load(pk), g, m, root]);
            l.store(p, pk);
            l.store(m, mk);
            l.store(root, sk);
            l.store(g, rk);
        }
        [*s0, *s1, *s2, *s3] = acc;
        flush(l, &mut lane_sums, totals);
    }
    if !gt.is_empty() {
        let state = mt.iter_mut().zip(st.iter_mut()).zip(rt.iter_mut());
        let mut terms = [[0.0f32; LANES]; 5];
        for (i, ((pi, &gi), ((mi, si), ri))) in pt.iter_mut().zip(gt).zip(state).enumerate() {
            let w = if DECAY { *pi } else { 0.0 };
            let (new, t) = adam_lagged_element(last, now, [*pi, gi, *mi, *si, *ri, w]);
            for (sum, term) in terms.iter_mut().zip(t) {
                if let Some(slot) = sum.get_mut(i) {
                    *slot = term;
                }
            }
            [*pi, *mi, *si] = new;
            *ri = gi;
        }
        for (a, term) in lane_sums.iter_mut().zip(&terms) {
            *a = l.add(*a, l.load(term));
        }
    }
    flush(l, &mut lane_sums, totals);
}
