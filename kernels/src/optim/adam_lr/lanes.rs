//! The passes of an Adam base level that learns only its learning rate, on the 16 lanes: the
//! exact schedule's read-only pass (`Σ g q` and `Σ g w`, with the finiteness check of the
//! gradient) and the step on the direction state `(q, sqrt(v))`, which on the lagged schedule
//! also adds those sums over the state before it (`optim::adam_lr`).
//!
//! The step is `optim::adam_lr::adam_direction_update`'s `f32` operations in its order (fused
//! multiply-adds where it calls `fmaf`), so the same bits. The sums are fused multiply-adds into
//! `f32` lanes flushed into `f64` every `FLUSH` chunks (the blocked summation of the full
//! hypergradient passes, with its error bound).

use super::scalars::adam_direction_update;
use crate::optim::adam::{flush, AdamScalars, UpdateConsts, FLUSH};
use crate::simd::{run_lanes, Backend, LaneJob, Lanes, LANES};
use crate::Result;

/// Running totals of the two sums (`Σ g q`, `Σ g w`), one `f64` per lane, carried across calls.
pub(crate) type LrTotals = [[f64; LANES]; 2];

/// The exact schedule's read-only pass on `backend`'s lanes: `[Σ g q, Σ g w]` (`params`
/// empty without weight decay: the second sum is then 0). The pass is also the gradient's finiteness check: with every `q` finite (the state a
/// step leaves), a NaN or infinite `g` makes its product `g q` (`inf · 0` is NaN) and so the
/// first sum NaN or infinite; finite products that overflow can too. The caller checks the
/// gradient and sums again in `f64` whenever a sum is not finite. `q` and `params` (when not
/// empty) are as long as `grads`.
pub(crate) fn adam_lr_sums(
    backend: Backend,
    grads: &[f32],
    q: &[f32],
    params: &[f32],
) -> Result<[f64; 2]> {
    struct Job<'a>(&'a [f32], &'a [f32], &'a [f32]);
    impl LaneJob for Job<'_> {
        type Output = [f64; 2];
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) -> Self::Output {
            if self.2.is_empty() {
                sums::<L, false>(l, self.0, self.1, self.2)
            } else {
                sums::<L, true>(l, self.0, self.1, self.2)
            }
        }
    }
    run_lanes(backend, Job(grads, q, params))
}

/// [`adam_lr_sums`] on one lane token; `DECAY`: add the weight sum.
#[inline(always)]
fn sums<L: Lanes, const DECAY: bool>(l: L, grads: &[f32], q: &[f32], params: &[f32]) -> [f64; 2] {
    let (gc, gt) = grads.as_chunks::<LANES>();
    let (qc, qt) = q.as_chunks::<LANES>();
    let (pc, pt) = params.as_chunks::<LANES>();
    let mut totals: LrTotals = Default::default();
    // The two halves in step: twice the streams in flight once the slices are beyond the caches.
    let half = gc.len() / 2;
    let (ga, gb) = gc.split_at(half);
    let (qa, qb) = qc.split_at(half.min(qc.len()));
    let (pa, pb) = pc.split_at(half.min(pc.len()));
    let mut wa = pa.chunks(FLUSH);
    let mut wb = pb.chunks(FLUSH);
    let halves = ga.chunks(FLUSH).zip(qa.chunks(FLUSH));
    let mut rest_b = gb.chunks(FLUSH).zip(qb.chunks(FLUSH));
    for (gra, qra) in halves {
        let wra = wa.next().unwrap_or_default();
        run::<L, DECAY>(l, [gra, qra, wra], &mut totals);
        if let Some((grb, qrb)) = rest_b.next() {
            let wrb = wb.next().unwrap_or_default();
            run::<L, DECAY>(l, [grb, qrb, wrb], &mut totals);
        }
    }
    for (grb, qrb) in rest_b {
        run::<L, DECAY>(l, [grb, qrb, wb.next().unwrap_or_default()], &mut totals);
    }
    let mut sums = totals.map(|t| t.iter().sum::<f64>());
    for (i, (&g, &qi)) in gt.iter().zip(qt).enumerate() {
        sums[0] += (g * qi) as f64;
        if DECAY {
            sums[1] += (g * pt.get(i).copied().unwrap_or(0.0)) as f64;
        }
    }
    sums
}

/// One run of at most `FLUSH` chunks of the read-only pass (`g`, `q`, and the weights `w` with
/// `DECAY`), its lane sums flushed into `totals`.
#[inline(always)]
fn run<L: Lanes, const DECAY: bool>(l: L, [g, q, w]: [&[[f32; LANES]]; 3], totals: &mut LrTotals) {
    let zero = l.splat(0.0);
    let (mut dq, mut dw) = ([zero; 4], [zero; 4]);
    four(l, &mut dq, g, q);
    if DECAY {
        four(l, &mut dw, g, w);
    }
    let [a, b, c, d] = dq;
    let [e, f, h, i] = dw;
    let dq = l.add(l.add(a, b), l.add(c, d));
    let dw = l.add(l.add(e, f), l.add(h, i));
    flush(l, &mut [dq, dw], totals);
}

/// `acc += x y` over one run of chunks, four chunks at a time into four sets of lane sums: four
/// independent chains of multiply-adds instead of one, whose latency would bound the pass.
#[inline(always)]
fn four<L: Lanes>(l: L, acc: &mut [L::F; 4], x: &[[f32; LANES]], y: &[[f32; LANES]]) {
    let (x4, x1) = x.as_chunks::<4>();
    let (y4, y1) = y.as_chunks::<4>();
    for (xs, ys) in x4.iter().zip(y4) {
        for ((a, xk), yk) in acc.iter_mut().zip(xs).zip(ys) {
            *a = l.mul_add(l.load(xk), l.load(yk), *a);
        }
    }
    for (xk, yk) in x1.iter().zip(y1) {
        acc[0] = l.mul_add(l.load(xk), l.load(yk), acc[0]);
    }
}

/// The per-parameter slices of the step, all of one length: the weights, the gradient (already
/// checked), and the state: the previous step's direction `q` and `sqrt(v)`.
#[derive(Debug)]
pub(crate) struct AdamLrSlices<'a> {
    pub params: &'a mut [f32],
    pub grads: &'a [f32],
    pub q: &'a mut [f32],
    pub root: &'a mut [f32],
}

/// The step with `now` on the direction state the step `last` left, on `backend`'s lanes; with
/// `sums` it first adds `g q` and (`decay`: the weight decay, the same at both steps) `g w` of
/// each element into `totals`. `Err` (nothing written) if the backend cannot run here.
pub(crate) fn adam_lr_step(
    backend: Backend,
    [last, now]: [&AdamScalars; 2],
    (sums, decay): (bool, bool),
    x: AdamLrSlices<'_>,
    totals: &mut LrTotals,
) -> Result<()> {
    struct Job<'a, 'b, 'c>(
        [&'a AdamScalars; 2],
        bool,
        bool,
        AdamLrSlices<'b>,
        &'c mut LrTotals,
    );
    impl LaneJob for Job<'_, '_, '_> {
        type Output = ();
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) {
            let Job(s, sums, decay, x, totals) = self;
            match (sums, decay) {
                (true, true) => step::<L, true, true>(l, s, x, totals),
                (true, false) => step::<L, true, false>(l, s, x, totals),
                (false, true) => step::<L, false, true>(l, s, x, totals),
                (false, false) => step::<L, false, false>(l, s, x, totals),
            }
        }
    }
    run_lanes(backend, Job([last, now], sums, decay, x, totals))
}

/// `adam_direction_update` on one chunk: `m` from `q` and the last step's denominator, the
/// step, the new `(p, q, sqrt(v))`. `DECAY: false` skips the multiplication by
/// `1 - lr weight_decay = 1` (exact either way).
#[inline(always)]
fn direction_chunk<L: Lanes, const DECAY: bool>(
    l: L,
    ibc_last: L::F,
    now: &UpdateConsts<L>,
    [p, g, q, root]: [L::F; 4],
) -> [L::F; 3] {
    let m = l.mul(q, l.mul_add(root, ibc_last, now.eps));
    let m = l.mul_add(now.b1, m, l.mul(now.ob1, g));
    let v = l.mul_add(now.b2, l.mul(root, root), l.mul(now.ob2, l.mul(g, g)));
    let root = l.sqrt(v);
    let q = l.div(m, l.mul_add(root, now.ibc, now.eps));
    let p = if DECAY { l.mul(p, now.decay) } else { p };
    [l.sub(p, l.mul(now.step, q)), q, root]
}

/// [`adam_lr_step`] on one lane token.
#[inline(always)]
fn step<L: Lanes, const SUMS: bool, const DECAY: bool>(
    l: L,
    [last, now]: [&AdamScalars; 2],
    x: AdamLrSlices<'_>,
    totals: &mut LrTotals,
) {
    let (pc, pt) = x.params.as_chunks_mut::<LANES>();
    let (gc, gt) = x.grads.as_chunks::<LANES>();
    let (qc, qt) = x.q.as_chunks_mut::<LANES>();
    let (rc, rt) = x.root.as_chunks_mut::<LANES>();
    let nc = UpdateConsts::new(l, now);
    let lc = l.splat(last.inv_sqrt_bc2);
    let runs = pc.chunks_mut(FLUSH).zip(gc.chunks(FLUSH));
    let state = qc.chunks_mut(FLUSH).zip(rc.chunks_mut(FLUSH));
    for ((pr, gr), (qr, rr)) in runs.zip(state) {
        if SUMS {
            // The run's sums over the state before the step, in a loop of their own (in the
            // step's loop their accumulators pushed its values onto the stack); the run's 2 KB
            // of `g`, `q`, `w` are then read again from L1.
            run::<L, DECAY>(l, [gr, qr, pr], totals);
        }
        let write = pr.iter_mut().zip(gr).zip(qr.iter_mut().zip(rr.iter_mut()));
        for ((pk, gk), (qk, rk)) in write {
            let (p, g, q) = (l.load(pk), l.load(gk), l.load(qk));
            let [p, q, root] = direction_chunk::<L, DECAY>(l, lc, &nc, [p, g, q, l.load(rk)]);
            l.store(p, pk);
            l.store(q, qk);
            l.store(root, rk);
        }
    }
    let mut terms = [[0.0f32; LANES]; 2];
    let state = qt.iter_mut().zip(rt.iter_mut());
    for (i, ((pi, &gi), (qi, ri))) in pt.iter_mut().zip(gt).zip(state).enumerate() {
        let w = if DECAY { *pi } else { 0.0 };
        for (sum, term) in terms.iter_mut().zip([gi * *qi, gi * w]) {
            if let Some(slot) = sum.get_mut(i) {
                *slot = term;
            }
        }
        [*pi, *qi, *ri] = adam_direction_update(last, now, [*pi, gi, *qi, *ri]);
    }
    if SUMS {
        flush(l, &mut terms.map(|t| l.load(&t)), totals);
    }
}
