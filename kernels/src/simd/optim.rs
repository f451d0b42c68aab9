//! The Adam loops on the 16 lanes: the update of `optim::adam` and the read-only pass of the
//! hyper-Adam step (its five hypergradient sums and the finiteness check of the gradient), with a
//! vector square root and divisions instead of libm's scalar ones (which keep those loops scalar).
//!
//! Every value is computed with the `f32` operations of the scalar loops, in their order, so the
//! updated state and the hypergradient terms are the same bits. The terms are summed in sixteen
//! `f32` lanes flushed into `f64` every 16 chunks (the blocked summation of `optim::reduce`, with
//! its error bound).

use super::dispatch::{run_lanes, LaneJob};
use super::lanes::{Lanes, LANES};
use crate::optim::{adam_element, AdamScalars};

/// The slices of the pass, all of one length `n` (`params` empty when there is no weight decay).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamHyperInputs<'a> {
    pub grads: &'a [f32],
    pub m: &'a [f32],
    pub v: &'a [f32],
    pub prev: &'a [f32],
    pub params: &'a [f32],
}

/// The five sums `[Σ g q, Σ g r (m − g'), Σ g q r (v − g'²)/sqrt(v), Σ g q r sqrt(v), Σ g p]` on
/// the best SIMD backend of this CPU: `Some(None)` when a gradient is NaN or infinite, `None` when
/// there is no SIMD backend here (the caller runs its scalar pass).
pub(crate) fn adam_hyper_sums(s: &AdamScalars, x: AdamHyperInputs<'_>) -> Option<Option<[f64; 5]>> {
    struct Job<'a, 'b>(&'a AdamScalars, AdamHyperInputs<'b>);
    impl LaneJob for Job<'_, '_> {
        type Output = Option<[f64; 5]>;
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) -> Self::Output {
            sums(l, self.0, self.1)
        }
    }
    run_lanes(Job(s, x))
}

/// The five terms of one chunk, with the scalar pass's operations in its order.
#[inline(always)]
fn terms<L: Lanes>(l: L, s: &AdamScalars, [g, m, v, prev, p]: [L::F; 5]) -> [L::F; 5] {
    let root = l.sqrt(v);
    let one = l.splat(1.0);
    let r = l.div(
        one,
        l.add(l.mul(root, l.splat(s.inv_sqrt_bc2)), l.splat(s.eps)),
    );
    let q = l.mul(m, r);
    let gq = l.mul(g, q);
    let zero = l.splat(0.0);
    let inv_root = l.select(l.gt(root, zero), l.div(one, root), zero);
    let gqr = l.mul(gq, r);
    [
        gq,
        l.mul(l.mul(g, r), l.sub(m, prev)),
        l.mul(gqr, l.mul(l.sub(v, l.mul(prev, prev)), inv_root)),
        l.mul(gqr, root),
        l.mul(g, p),
    ]
}

/// Elements `start..end` (at most 16) of `a`, the other lanes zero.
#[inline(always)]
fn load<L: Lanes>(l: L, a: &[f32], start: usize, end: usize) -> L::F {
    match a.get(start..end) {
        Some(c) => match <&[f32; LANES]>::try_from(c) {
            Ok(full) => l.load(full),
            Err(_) => l.load_partial(c),
        },
        None => l.splat(0.0),
    }
}

/// Chunks summed in `f32` lanes before they are added into the `f64` totals, as in
/// `optim::reduce` (each lane then adds at most 16 terms in `f32`: an error below `17 u` of the
/// sum of magnitudes, the budget the hypergradient tests document).
const FLUSH: usize = 16;

/// Adds the `f32` lane sums into the `f64` totals and clears them.
#[inline(always)]
fn flush<L: Lanes>(l: L, lane_sums: &mut [L::F; 5], totals: &mut [[f64; LANES]; 5]) {
    for (a, total) in lane_sums.iter_mut().zip(totals.iter_mut()) {
        let mut lanes = [0.0f32; LANES];
        l.store(*a, &mut lanes);
        for (acc, y) in total.iter_mut().zip(lanes) {
            *acc += y as f64;
        }
        *a = l.splat(0.0);
    }
}

/// [`adam_hyper_sums`] on one lane token; `None` when a gradient is not finite.
#[inline(always)]
fn sums<L: Lanes>(l: L, s: &AdamScalars, x: AdamHyperInputs<'_>) -> Option<[f64; 5]> {
    let n = x.grads.len();
    let decay = !x.params.is_empty();
    let mut totals = [[0.0f64; LANES]; 5];
    let mut lane_sums = [l.splat(0.0); 5];
    let mut chunks = 0;
    // `g − g` is 0 for every finite `g` and NaN for an infinity or a NaN.
    let mut bad = l.splat(0.0);
    let mut start = 0;
    while start < n {
        let end = (start + LANES).min(n);
        let g = load(l, x.grads, start, end);
        let p = if decay {
            load(l, x.params, start, end)
        } else {
            l.splat(0.0)
        };
        bad = l.add(bad, l.sub(g, g));
        let t = terms(
            l,
            s,
            [
                g,
                load(l, x.m, start, end),
                load(l, x.v, start, end),
                load(l, x.prev, start, end),
                p,
            ],
        );
        for (a, term) in lane_sums.iter_mut().zip(t) {
            *a = l.add(*a, term);
        }
        chunks += 1;
        if chunks == FLUSH {
            flush(l, &mut lane_sums, &mut totals);
            chunks = 0;
        }
        start = end;
    }
    flush(l, &mut lane_sums, &mut totals);
    let mut flags = [0.0f32; LANES];
    l.store(bad, &mut flags);
    if flags.iter().any(|f| f.is_nan()) {
        return None;
    }
    Some(totals.map(|t| t.iter().sum()))
}

/// The Adam update of `p`, `m`, `v` (one length with `g`) with the scalar loop's `f32`
/// operations in its order, so the same bits: `false` when this CPU has no SIMD backend (the
/// caller runs its scalar loop; nothing was written).
pub(crate) fn adam_update(
    s: &AdamScalars,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> bool {
    struct Job<'a, 'b>(
        &'a AdamScalars,
        &'b mut [f32],
        &'b [f32],
        &'b mut [f32],
        &'b mut [f32],
    );
    impl LaneJob for Job<'_, '_> {
        type Output = ();
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) {
            update(l, self.0, self.1, self.2, self.3, self.4)
        }
    }
    run_lanes(Job(s, p, g, m, v)).is_some()
}

/// [`adam_update`] on one lane token: whole chunks on the lanes, the tail one element at a time
/// through the scalar loop's own `adam_element`.
#[inline(always)]
fn update<L: Lanes>(l: L, s: &AdamScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (pc, pt) = p.as_chunks_mut::<LANES>();
    let (gc, gt) = g.as_chunks::<LANES>();
    let (mc, mt) = m.as_chunks_mut::<LANES>();
    let (vc, vt) = v.as_chunks_mut::<LANES>();
    let [b1, ob1, b2, ob2, ibc, eps, step, decay] = [
        s.beta1,
        s.one_minus_beta1,
        s.beta2,
        s.one_minus_beta2,
        s.inv_sqrt_bc2,
        s.eps,
        s.step,
        s.decay,
    ]
    .map(|x| l.splat(x));
    let one = l.splat(1.0);
    for (((pk, gk), mk), vk) in pc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc.iter_mut()) {
        let gv = l.load(gk);
        let mv = l.add(l.mul(b1, l.load(mk)), l.mul(ob1, gv));
        let vv = l.add(l.mul(b2, l.load(vk)), l.mul(ob2, l.mul(gv, gv)));
        let inv_denom = l.div(one, l.add(l.mul(l.sqrt(vv), ibc), eps));
        let pv = l.sub(l.mul(l.load(pk), decay), l.mul(step, l.mul(mv, inv_denom)));
        l.store(pv, pk);
        l.store(mv, mk);
        l.store(vv, vk);
    }
    for (((pi, &gi), mi), vi) in pt.iter_mut().zip(gt).zip(mt.iter_mut()).zip(vt.iter_mut()) {
        (*pi, *mi, *vi, _) = adam_element(s, *pi, gi, *mi, *vi);
    }
}
