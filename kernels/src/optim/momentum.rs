//! SGD with momentum (PyTorch's convention): `b <- momentum b + g; p <- p - lr b`, one fused pass.

use super::check::all_finite;
use super::reduce::{magnitude_bits, Sums, LANES, NON_FINITE_BITS};
use super::sink::{nowhere, Sink};
use crate::check::{length, require};
use crate::simd::Backend;
use crate::{Element, Error, Result};

/// Hyperparameters of SGD with momentum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MomentumConfig {
    /// Step size (finite, `>= 0`).
    pub lr: f32,
    /// Decay of the velocity buffer, in `[0, 1)`.
    pub momentum: f32,
}

impl Default for MomentumConfig {
    /// `lr = 0.01, momentum = 0.9`.
    fn default() -> Self {
        MomentumConfig {
            lr: 0.01,
            momentum: 0.9,
        }
    }
}

impl MomentumConfig {
    /// `Err(BadHyperparameter)` unless `lr` is finite and `>= 0` and `momentum` is in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        require(self.lr.is_finite() && self.lr >= 0.0, "lr")?;
        require((0.0..1.0).contains(&self.momentum), "momentum")
    }
}

/// One step of SGD with momentum; `velocity` is the buffer `b` (start it at zero):
/// `b <- momentum b + g; p <- p - lr b`.
///
/// Errors (nothing is modified): different lengths, a bad hyperparameter, a NaN/infinite
/// gradient.
pub fn momentum_step(
    cfg: &MomentumConfig,
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
) -> Result<()> {
    momentum_step_with(Backend::Auto, cfg, params, grads, velocity)
}

/// [`momentum_step`] on a chosen backend, which checks the gradient (the update is one plain
/// loop, the same bits everywhere); `Err(BackendUnavailable)` if it cannot run here.
pub fn momentum_step_with(
    backend: Backend,
    cfg: &MomentumConfig,
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
) -> Result<()> {
    momentum_check(backend, cfg, params.len(), grads, velocity.len())?;
    momentum_loop(
        cfg.lr,
        cfg.momentum,
        params,
        grads,
        velocity,
        nowhere(),
        nowhere(),
    );
    Ok(())
}

/// [`momentum_step`] on `f32` master weights that also writes each updated weight, rounded,
/// into `copy` in the same pass.
pub fn momentum_step_mixed<E: Element>(
    cfg: &MomentumConfig,
    master: &mut [f32],
    copy: &mut [E],
    grads: &[f32],
    velocity: &mut [f32],
) -> Result<()> {
    momentum_step_mixed_with(Backend::Auto, cfg, master, copy, grads, velocity)
}

/// [`momentum_step_mixed`] on a chosen backend.
pub fn momentum_step_mixed_with<E: Element>(
    backend: Backend,
    cfg: &MomentumConfig,
    master: &mut [f32],
    copy: &mut [E],
    grads: &[f32],
    velocity: &mut [f32],
) -> Result<()> {
    momentum_check(backend, cfg, master.len(), grads, velocity.len())?;
    length("copy", copy.len(), master.len())?;
    momentum_loop(
        cfg.lr,
        cfg.momentum,
        master,
        grads,
        velocity,
        nowhere(),
        copy.iter_mut(),
    );
    Ok(())
}

fn momentum_check(
    backend: Backend,
    cfg: &MomentumConfig,
    n: usize,
    grads: &[f32],
    velocity: usize,
) -> Result<()> {
    cfg.validate()?;
    length("grads", grads.len(), n)?;
    length("velocity", velocity, n)?;
    all_finite(backend, "grads", grads)
}

/// The fused update; `saved` receives each gradient, `copy` each new parameter. Not inlined:
/// as a function of its own, its slice arguments are known not to alias, which keeps the loop
/// tight when the caller carved them out of one state slice.
#[inline(never)]
pub(crate) fn momentum_loop<A: Sink, B: Sink>(
    lr: f32,
    momentum: f32,
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
    saved: impl Iterator<Item = A>,
    copy: impl Iterator<Item = B>,
) {
    let lanes = params.iter_mut().zip(grads).zip(velocity.iter_mut());
    for (((p, g), b), (s, c)) in lanes.zip(saved.zip(copy)) {
        *b = momentum * *b + *g;
        *p -= lr * *b;
        s.put(*g);
        c.put(*p);
    }
}

/// The lagged schedule's one pass: the two sums of [`momentum_hypergradient`] over the state
/// the previous step (with `last_lr`, `last_mu`) left, read before this step overwrites it, and
/// the step with `lr`, `momentum`, saving each gradient into `prev` and each new parameter into
/// `copy`. The same sums, bit for bit, as the read-only pass. The gradient must already be
/// checked.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn momentum_fused_loop<B: Sink>(
    [last_lr, last_mu]: [f32; 2],
    [lr, momentum]: [f32; 2],
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
    prev: &mut [f32],
    copy: impl Iterator<Item = B>,
) -> [f64; 3] {
    let mut sums = Sums::<2>::new();
    let mut copy = copy;
    let (gc, gt) = grads.as_chunks::<LANES>();
    let (pc, pt) = params.as_chunks_mut::<LANES>();
    let (bc, bt) = velocity.as_chunks_mut::<LANES>();
    let (rc, rt) = prev.as_chunks_mut::<LANES>();
    let step = |p: &mut f32, g: f32, b: &mut f32, r: &mut f32| {
        *b = momentum * *b + g;
        *p -= lr * *b;
        *r = g;
    };
    let state = bc.iter_mut().zip(rc.iter_mut());
    for ((g, p), (b, r)) in gc.iter().zip(pc.iter_mut()).zip(state) {
        let mut terms = [[0.0f32; LANES]; 2];
        let [t0, t1] = &mut terms;
        for (((t0, t1), g), (b, r)) in t0
            .iter_mut()
            .zip(t1.iter_mut())
            .zip(g)
            .zip(b.iter().zip(r.iter()))
        {
            *t0 = g * b;
            *t1 = g * (b - r);
        }
        sums.add_chunk(&terms);
        let lanes = p.iter_mut().zip(g).zip(b.iter_mut().zip(r.iter_mut()));
        for (((p, g), (b, r)), c) in lanes.zip(copy.by_ref()) {
            step(p, *g, b, r);
            c.put(*p);
        }
    }
    let lanes = pt.iter_mut().zip(gt).zip(bt.iter_mut().zip(rt.iter_mut()));
    for (((p, g), (b, r)), c) in lanes.zip(copy) {
        sums.add_one([g * *b, g * (*b - *r)]);
        step(p, *g, b, r);
        c.put(*p);
    }
    let [gb, gd] = sums.finish();
    momentum_hyper_finish(last_lr, last_mu, gb, gd)
}

/// The hypergradient from the two sums.
#[inline]
fn momentum_hyper_finish(lr: f32, momentum: f32, gb: f64, gd: f64) -> [f64; 3] {
    let (lr, mu) = (lr as f64, momentum as f64);
    [-gb, -2.0 * lr * (1.0 - mu) * gd, 0.0]
}

/// The hypergradient of the previous momentum step with respect to `(lr, z)`,
/// `momentum = (tanh z + 1) / 2`,
/// and the finiteness check of `grads`, in one read-only pass.
///
/// With `b_k = mu b_{k-1} + g_k` and `w_{k+1} = w_k - lr b_k` (history detached):
/// `d w_{k+1} / d lr = -b_k` and `d w_{k+1} / d mu = -lr b_{k-1} = -lr (b_k - g_k) / mu`, so with
/// `mu = (tanh z + 1) / 2` (`d mu / d z = 2 mu (1 - mu)`), `d w_{k+1} / d z = -2 lr (1 - mu) (b_k - g_k)`:
/// no division. `lr`, `momentum`
/// are the values the previous step used; `velocity` is `b_k`, `prev` is `g_k`.
pub(crate) fn momentum_hypergradient(
    what: &'static str,
    lr: f32,
    momentum: f32,
    grads: &[f32],
    velocity: &[f32],
    prev: &[f32],
) -> Result<[f64; 3]> {
    let (gc, gt) = grads.as_chunks::<LANES>();
    let (bc, bt) = velocity.as_chunks::<LANES>();
    let (pc, pt) = prev.as_chunks::<LANES>();
    let mut sums = Sums::<2>::new();
    let mut bits = [0u32; LANES];
    for ((g, b), p) in gc.iter().zip(bc).zip(pc) {
        let mut terms = [[0.0f32; LANES]; 2];
        let [t0, t1] = &mut terms;
        let lanes = t0.iter_mut().zip(t1.iter_mut()).zip(&mut bits);
        for ((((t0, t1), bit), g), (b, p)) in lanes.zip(g).zip(b.iter().zip(p)) {
            *bit = (*bit).max(magnitude_bits(*g));
            *t0 = g * b;
            *t1 = g * (b - p);
        }
        sums.add_chunk(&terms);
    }
    let mut max = bits.iter().copied().fold(0, u32::max);
    for ((g, b), p) in gt.iter().zip(bt).zip(pt) {
        max = max.max(magnitude_bits(*g));
        sums.add_one([g * b, g * (b - p)]);
    }
    if max >= NON_FINITE_BITS {
        return Err(Error::NonFinite(what));
    }
    let [gb, gd] = sums.finish();
    Ok(momentum_hyper_finish(lr, momentum, gb, gd))
}
