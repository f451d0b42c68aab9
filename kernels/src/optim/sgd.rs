//! Stochastic gradient descent: `p <- p - lr g`, one fused pass.

use super::check::all_finite;
use super::reduce::{magnitude_bits, Sums, LANES, NON_FINITE_BITS};
use super::sink::{nowhere, Sink};
use crate::check::{length, require};
use crate::simd::Backend;
use crate::{Element, Error, Result};

/// Hyperparameters of plain SGD.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Step size (finite, `>= 0`).
    pub lr: f32,
}

impl Default for SgdConfig {
    /// `lr = 0.01`.
    fn default() -> Self {
        SgdConfig { lr: 0.01 }
    }
}

impl SgdConfig {
    /// `Err(BadHyperparameter("lr"))` unless `lr` is finite and `>= 0`.
    pub fn validate(&self) -> Result<()> {
        require(self.lr.is_finite() && self.lr >= 0.0, "lr")
    }
}

/// One SGD step: `params[i] -= lr * grads[i]`.
///
/// Errors (nothing is modified): different lengths, a bad `lr`, a NaN/infinite gradient.
pub fn sgd_step(cfg: &SgdConfig, params: &mut [f32], grads: &[f32]) -> Result<()> {
    sgd_step_with(Backend::Auto, cfg, params, grads)
}

/// [`sgd_step`] on a chosen backend, which checks the gradient (the update is one plain loop,
/// the same bits everywhere); `Err(BackendUnavailable)` if it cannot run here.
pub fn sgd_step_with(
    backend: Backend,
    cfg: &SgdConfig,
    params: &mut [f32],
    grads: &[f32],
) -> Result<()> {
    sgd_check(backend, cfg, params.len(), grads)?;
    sgd_loop(cfg.lr, params, grads, nowhere(), nowhere());
    Ok(())
}

/// [`sgd_step`] on `f32` master weights that also writes each updated weight, rounded, into
/// `copy` (the model's `bf16` or `f32` parameters) in the same pass.
pub fn sgd_step_mixed<E: Element>(
    cfg: &SgdConfig,
    master: &mut [f32],
    copy: &mut [E],
    grads: &[f32],
) -> Result<()> {
    sgd_step_mixed_with(Backend::Auto, cfg, master, copy, grads)
}

/// [`sgd_step_mixed`] on a chosen backend.
pub fn sgd_step_mixed_with<E: Element>(
    backend: Backend,
    cfg: &SgdConfig,
    master: &mut [f32],
    copy: &mut [E],
    grads: &[f32],
) -> Result<()> {
    sgd_check(backend, cfg, master.len(), grads)?;
    length("copy", copy.len(), master.len())?;
    sgd_loop(cfg.lr, master, grads, nowhere(), copy.iter_mut());
    Ok(())
}

fn sgd_check(backend: Backend, cfg: &SgdConfig, n: usize, grads: &[f32]) -> Result<()> {
    cfg.validate()?;
    length("grads", grads.len(), n)?;
    all_finite(backend, "grads", grads)
}

/// The fused update; `saved` receives each gradient, `copy` each new parameter. Not inlined:
/// as a function of its own, its slice arguments are known not to alias, which keeps the loop
/// tight when the caller carved them out of one state slice.
#[inline(never)]
pub(crate) fn sgd_loop<A: Sink, B: Sink>(
    lr: f32,
    params: &mut [f32],
    grads: &[f32],
    saved: impl Iterator<Item = A>,
    copy: impl Iterator<Item = B>,
) {
    for ((p, g), (s, c)) in params.iter_mut().zip(grads).zip(saved.zip(copy)) {
        *p -= lr * *g;
        s.put(*g);
        c.put(*p);
    }
}

/// The lagged schedule's one pass: the sum of [`sgd_hypergradient`] over the state the previous
/// step left (`prev`, read before it is overwritten), and the step with `lr`, saving each
/// gradient into `prev` and each new parameter into `copy`. The same sums, bit for bit, as the
/// read-only pass. The gradient must already be checked.
#[inline(never)]
pub(crate) fn sgd_fused_loop<B: Sink>(
    lr: f32,
    params: &mut [f32],
    grads: &[f32],
    prev: &mut [f32],
    copy: impl Iterator<Item = B>,
) -> [f64; 3] {
    let mut sums = Sums::<1>::new();
    let mut copy = copy;
    let (gc, gt) = grads.as_chunks::<LANES>();
    let (pc, pt) = params.as_chunks_mut::<LANES>();
    let (rc, rt) = prev.as_chunks_mut::<LANES>();
    for ((g, p), r) in gc.iter().zip(pc.iter_mut()).zip(rc.iter_mut()) {
        let mut terms = [[0.0f32; LANES]];
        for ((t, g), r) in terms[0].iter_mut().zip(g).zip(r.iter()) {
            *t = g * r;
        }
        sums.add_chunk(&terms);
        for (((p, g), r), c) in p.iter_mut().zip(g).zip(r.iter_mut()).zip(copy.by_ref()) {
            *p -= lr * *g;
            *r = *g;
            c.put(*p);
        }
    }
    for (((p, g), r), c) in pt.iter_mut().zip(gt).zip(rt.iter_mut()).zip(copy) {
        sums.add_one([g * *r]);
        *p -= lr * *g;
        *r = *g;
        c.put(*p);
    }
    let [dot] = sums.finish();
    [-dot, 0.0, 0.0]
}

/// The hypergradient of the previous SGD step, `d f(w_t) / d lr = -g_t · g_{t-1}`, and the
/// finiteness check of `grads`, in one read-only pass. Lengths must already agree.
pub(crate) fn sgd_hypergradient(
    what: &'static str,
    grads: &[f32],
    prev: &[f32],
) -> Result<[f64; 3]> {
    let (gc, gt) = grads.as_chunks::<LANES>();
    let (pc, pt) = prev.as_chunks::<LANES>();
    let mut sums = Sums::<1>::new();
    let mut bits = [0u32; LANES];
    for (g, p) in gc.iter().zip(pc) {
        let mut terms = [[0.0f32; LANES]];
        for (((t, b), g), p) in terms[0].iter_mut().zip(&mut bits).zip(g).zip(p) {
            *b = (*b).max(magnitude_bits(*g));
            *t = g * p;
        }
        sums.add_chunk(&terms);
    }
    let mut max = bits.iter().copied().fold(0, u32::max);
    for (g, p) in gt.iter().zip(pt) {
        max = max.max(magnitude_bits(*g));
        sums.add_one([g * p]);
    }
    if max >= NON_FINITE_BITS {
        return Err(Error::NonFinite(what));
    }
    let [dot] = sums.finish();
    Ok([-dot, 0.0, 0.0])
}
