//! Adam and AdamW (decoupled weight decay): one fused pass over caller-owned slices.

#[cfg(feature = "cuda")]
mod element_pass;
mod lanes;
mod scalars;
#[cfg(test)]
mod tests;

use super::check::all_finite;
use super::sink::{nowhere, Sink};
use crate::check::{length, require};
use crate::simd::Backend;
use crate::{Element, Error, Result};
#[cfg(feature = "cuda")]
pub use element_pass::HyperAdamTerms;
use lanes::{adam_fused, adam_hyper_sums, adam_update, AdamFusedSlices, AdamHyperInputs};
pub(crate) use lanes::{flush, HyperTotals, UpdateConsts, FLUSH};
pub use scalars::AdamConfig;
pub(crate) use scalars::{adam_hyper_finish, lr_hypergradient, AdamScalars, HyperScalars};

/// One fused Adam (AdamW when `cfg.weight_decay > 0`) step; `t` is the 1-based step number.
///
/// `m` and `v` are the first and second moments (start them at zero). With bias corrections
/// `c1 = 1 - beta1^t`, `c2 = 1 - beta2^t`:
///
/// ```text
/// m <- beta1 m + (1 - beta1) g
/// v <- beta2 v + (1 - beta2) g^2
/// p <- p (1 - lr wd) - (lr / c1) m / (sqrt(v) / sqrt(c2) + eps)
/// ```
///
/// Errors (nothing is modified): slices of different lengths, `t == 0`, a hyperparameter outside
/// its range, or a NaN/infinite gradient (`Error::NonFinite("grads")`).
///
/// ```
/// use tessera_kernels::optim::{adam_step, AdamConfig};
/// let (mut p, g) = (vec![1.0f32, -2.0], vec![0.5f32, -0.25]);
/// let (mut m, mut v) = (vec![0.0f32; 2], vec![0.0f32; 2]);
/// adam_step(&AdamConfig::default(), 1, &mut p, &g, &mut m, &mut v)?;
/// assert!(p[0] < 1.0 && p[1] > -2.0); // the first Adam step moves each weight by about lr
/// # Ok::<(), tessera_kernels::Error>(())
/// ```
pub fn adam_step(
    cfg: &AdamConfig,
    t: u32,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    adam_step_with(Backend::Auto, cfg, t, params, grads, m, v)
}

/// [`adam_step`] on a chosen backend (every backend gives the same bits);
/// `Err(BackendUnavailable)` if it cannot run here, before anything is written.
pub fn adam_step_with(
    backend: Backend,
    cfg: &AdamConfig,
    t: u32,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    adam_check(backend, cfg, t, params.len(), grads, m.len(), v.len())?;
    let s = AdamScalars::from_config(cfg, t);
    adam_loop(backend, &s, params, grads, m, v, None, nowhere())
}

/// [`adam_step`] on `f32` master weights that also writes each updated weight, rounded, into
/// `copy` (the model's `bf16` or `f32` parameters) in the same pass.
pub fn adam_step_mixed<E: Element>(
    cfg: &AdamConfig,
    t: u32,
    master: &mut [f32],
    copy: &mut [E],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    adam_step_mixed_with(Backend::Auto, cfg, t, master, copy, grads, m, v)
}

/// [`adam_step_mixed`] on a chosen backend.
#[allow(clippy::too_many_arguments)]
pub fn adam_step_mixed_with<E: Element>(
    backend: Backend,
    cfg: &AdamConfig,
    t: u32,
    master: &mut [f32],
    copy: &mut [E],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    adam_check(backend, cfg, t, master.len(), grads, m.len(), v.len())?;
    length("copy", copy.len(), master.len())?;
    let s = AdamScalars::from_config(cfg, t);
    adam_loop(backend, &s, master, grads, m, v, None, copy.iter_mut())
}

fn adam_check(
    backend: Backend,
    cfg: &AdamConfig,
    t: u32,
    n: usize,
    grads: &[f32],
    m: usize,
    v: usize,
) -> Result<()> {
    cfg.validate()?;
    require(t >= 1, "t")?;
    length("grads", grads.len(), n)?;
    length("m", m, n)?;
    length("v", v, n)?;
    all_finite(backend, "grads", grads)
}

/// What a learned Adam base keeps per parameter besides its optimizer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// `m`, `v` and the gradient `g_k` (every coordinate learned: the closed forms need it).
    Grad,
    /// Only the learning rate learned: the step's direction `q_k = m_k / (sqrt(v_k) c + eps)`
    /// in place of `m` and `sqrt(v)` in place of `v`, nothing more (`optim::adam_lr`).
    Direction,
}

/// Elements per call of the lane update, after which the block's sinks are written.
pub(super) const LANE_BLOCK: usize = 1024;

/// The fused update on `backend`'s lanes (`lanes::adam_update`, the same `f32` operations as
/// [`adam_element`], so the same bits on every backend) in blocks, each followed by its parameter
/// copies; `saved` (as long as `grads`) receives the gradient. The backend must have been checked
/// (the first block's error is returned before anything is written).
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_loop<B: Sink>(
    backend: Backend,
    s: &AdamScalars,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    saved: Option<&mut [f32]>,
    mut copy: impl Iterator<Item = B>,
) -> Result<()> {
    let blocks = params
        .chunks_mut(LANE_BLOCK)
        .zip(grads.chunks(LANE_BLOCK))
        .zip(m.chunks_mut(LANE_BLOCK).zip(v.chunks_mut(LANE_BLOCK)));
    let mut saved = saved.map(|s| s.chunks_mut(LANE_BLOCK));
    for ((p, g), (m, v)) in blocks {
        let sv = saved.as_mut().and_then(|b| b.next()).unwrap_or_default();
        adam_update(backend, s, p, g, m, v, sv)?;
        // `p` leads the zip, so a sink is taken only for an element that exists.
        for (&pi, c) in p.iter().zip(copy.by_ref()) {
            c.put(pi);
        }
    }
    Ok(())
}

/// The lagged schedule's one pass (see the module docs): the five hypergradient sums of the
/// step `last` took, read from the state before this pass overwrites it, and the Adam step with
/// `now`, saving each gradient into `prev` and each new parameter into `copy`, on `backend`'s lanes
/// (`lanes::adam_fused`) in blocks of [`LANE_BLOCK`] (a multiple of the summation's flush period,
/// so the sums are those of one pass over all of it), each followed by its sinks. The state is
/// `[m, root, prev]` ([`adam_lagged_element`]). `decay`: `last` had weight decay. The gradient and
/// the backend must already be checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_fused_loop<B: Sink>(
    backend: Backend,
    last: &HyperScalars,
    now: &AdamScalars,
    decay: bool,
    params: &mut [f32],
    grads: &[f32],
    [m, root, prev]: [&mut [f32]; 3],
    mut copy: impl Iterator<Item = B>,
) -> Result<[f64; 5]> {
    let mut totals: HyperTotals = Default::default();
    let blocks = params
        .chunks_mut(LANE_BLOCK)
        .zip(grads.chunks(LANE_BLOCK))
        .zip(m.chunks_mut(LANE_BLOCK))
        .zip(root.chunks_mut(LANE_BLOCK).zip(prev.chunks_mut(LANE_BLOCK)));
    for (((params, grads), m), (root, prev)) in blocks {
        let x = AdamFusedSlices {
            params: &mut *params,
            grads,
            m,
            root,
            prev,
        };
        adam_fused(backend, last, now, decay, x, &mut totals)?;
        for (&pi, c) in params.iter().zip(copy.by_ref()) {
            c.put(pi);
        }
    }
    Ok(totals.map(|t| t.iter().sum()))
}

/// The hypergradient of the previous Adam step with respect to `(lr, z1, z2)`
/// (`beta = (tanh z + 1) / 2`), and the finiteness check of `grads`, in one read-only pass on `backend`'s lanes.
///
/// `cfg` and `k` are what the previous step used; `params` is `w_{k+1}` (read only when
/// `weight_decay != 0`), `m`, `v` are `m_k`, `v_k`, `prev` is `g_k`. Each element's terms are
/// [`adam_hyper_terms`] (the lagged pass's, on `sqrt(v_k)` taken here as the step took it).
/// Errors: `NonFinite(what)`; `BadHyperparameter` when `1 - lr weight_decay` is not positive (the
/// previous weights cannot be recovered).
pub(crate) fn adam_hypergradient(
    backend: Backend,
    what: &'static str,
    cfg: &AdamConfig,
    k: u32,
    params: &[f32],
    grads: &[f32],
    [m, v, prev]: [&[f32]; 3],
) -> Result<[f64; 3]> {
    let last = HyperScalars::new(cfg, k);
    let decay = cfg.weight_decay != 0.0;
    let params = if decay { params } else { &[] };
    let x = AdamHyperInputs {
        grads,
        m,
        v,
        prev,
        params,
    };
    let sums = adam_hyper_sums(backend, &last, x)?.ok_or(Error::NonFinite(what))?;
    // The previous weights are recovered by dividing by `1 - lr weight_decay`.
    require(!decay || last.s.decay > 0.0, "lr * weight_decay")?;
    Ok(adam_hyper_finish(cfg.weight_decay, &last, sums))
}
