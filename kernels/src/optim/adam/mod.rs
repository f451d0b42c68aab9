//! Adam and AdamW (decoupled weight decay): one fused pass over caller-owned slices.

mod lanes;
#[cfg(test)]
mod tests;

use super::check::all_finite;
use super::sink::{nowhere, Sink};
use crate::check::{length, require};
use crate::simd::Backend;
use crate::{Element, Error, Result};
use lanes::{adam_fused, adam_hyper_sums, adam_update, AdamFusedSlices, AdamHyperInputs};
pub(crate) use lanes::{flush, HyperTotals, UpdateConsts, FLUSH};

/// Hyperparameters of Adam. `weight_decay` is decoupled (AdamW, Loshchilov & Hutter): the
/// parameters shrink by `lr * weight_decay` each step, independently of the gradient; `0` is plain
/// Adam.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Step size (finite, `>= 0`).
    pub lr: f32,
    /// Decay of the first moment, in `[0, 1)`.
    pub beta1: f32,
    /// Decay of the second moment, in `[0, 1)`.
    pub beta2: f32,
    /// Added to the root of the second moment; finite and `> 0`.
    pub eps: f32,
    /// Decoupled weight decay (finite, `>= 0`); `0` is plain Adam.
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    /// `lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0` (PyTorch's defaults).
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// `Err(BadHyperparameter)` unless every field is in its documented range.
    pub fn validate(&self) -> Result<()> {
        require(self.lr.is_finite() && self.lr >= 0.0, "lr")?;
        require((0.0..1.0).contains(&self.beta1), "beta1")?;
        require((0.0..1.0).contains(&self.beta2), "beta2")?;
        require(self.eps.is_finite() && self.eps > 0.0, "eps")?;
        require(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "weight_decay",
        )
    }
}

/// The per-step scalars of an Adam step, folded once so the per-element loop is multiply-adds,
/// one square root and one reciprocal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamScalars {
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// `1 / sqrt(1 - beta2^t)`: `sqrt(v_hat) = sqrt(v) * this`.
    pub inv_sqrt_bc2: f32,
    pub eps: f32,
    /// `lr / (1 - beta1^t)`.
    pub step: f32,
    /// `1 - lr * weight_decay`.
    pub decay: f32,
}

impl AdamScalars {
    /// The scalars of `cfg` at step `t`.
    pub(crate) fn from_config(cfg: &AdamConfig, t: u32) -> Self {
        Self::new(cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, t)
    }

    /// Folds `lr, beta1, beta2, eps, weight_decay` at step `t >= 1`. Bias corrections are computed
    /// in `f64` and rounded once.
    pub(crate) fn new(
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        t: u32,
    ) -> Self {
        let bc1 = 1.0 - powi(beta1 as f64, t);
        let bc2 = 1.0 - powi(beta2 as f64, t);
        AdamScalars {
            beta1,
            one_minus_beta1: 1.0 - beta1,
            beta2,
            one_minus_beta2: 1.0 - beta2,
            inv_sqrt_bc2: (1.0 / libm::sqrt(bc2)) as f32,
            eps,
            step: (lr as f64 / bc1) as f32,
            decay: 1.0 - lr * weight_decay,
        }
    }
}

/// `b^t` by repeated squaring in `f64` (at most 64 multiplications; a tower computes several per
/// step, where `libm::pow` took a few hundred instructions each). Relative error at most about
/// `(t - 1) u` (`u = 2^-53`, each multiplication's rounding carried through the powers), so the
/// absolute error `t u b^t` stays below `u / (e ln(1/b))`: the bias correction `1 - b^t` is off
/// by less than `u / (e (1 - b))` relative, under `2e-9` for every `f32` below 1, before it is
/// rounded to `f32`.
pub(crate) fn powi(b: f64, t: u32) -> f64 {
    let (mut acc, mut base, mut e) = (1.0, b, t);
    while e > 0 {
        if e & 1 == 1 {
            acc *= base;
        }
        base *= base;
        e >>= 1;
    }
    acc
}

/// The Adam update of one element: new `(p, m, v)` and the reciprocal of the denominator.
/// Shared by the plain and the hyper step so both round identically.
#[inline(always)]
pub(crate) fn adam_element(
    s: &AdamScalars,
    p: f32,
    g: f32,
    m: f32,
    v: f32,
) -> (f32, f32, f32, f32) {
    let m = s.beta1 * m + s.one_minus_beta1 * g;
    let v = s.beta2 * v + s.one_minus_beta2 * (g * g);
    let root = libm::sqrtf(v);
    let inv_denom = 1.0 / (root * s.inv_sqrt_bc2 + s.eps);
    let p = p * s.decay - s.step * (m * inv_denom);
    (p, m, v, inv_denom)
}

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

/// What a hypergradient pass (either schedule's) needs of the step `last` took: its scalars, and
/// the factors ([`HyperFactors`], in `f64`) that combine the pass's sums after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HyperScalars {
    pub s: AdamScalars,
    /// `1 / (1 - beta1^k)`, for the learning-rate coordinate.
    pub c1: f64,
    /// `p1 + p2` and `p1`: `d y / d z1 = -(p12 Σ g r m - p1 Σ g r g')`.
    pub p12: f64,
    pub p1: f64,
    /// `q1 + q2` and `q1`: `d y / d z2 = q12 Σ t v - q1 Σ t g'^2` with `t = g m r^2 / sqrt(v)`.
    pub q12: f64,
    pub q1: f64,
}

impl HyperScalars {
    /// The step `k >= 1` of `cfg`.
    pub(crate) fn new(cfg: &AdamConfig, k: u32) -> Self {
        let f = HyperFactors::new(cfg.lr, cfg.beta1, cfg.beta2, k);
        HyperScalars {
            s: AdamScalars::from_config(cfg, k),
            c1: f.c1,
            p12: f.p1 + f.p2,
            p1: f.p1,
            q12: f.q1 + f.q2,
            q1: f.q1,
        }
    }
}

/// The five hypergradient terms of one element (their sums go to [`adam_hyper_finish`]), as both
/// schedules' passes form them from the state the step `last` left (`m`, `root = sqrt(v)`, `v`,
/// `prev = g'`), the gradient `g` and the weight `w` (0 without weight decay):
/// `[z m, z g', t v, t g'^2, g w]` with `z = g r` and `t = z m r / sqrt(v)`.
///
/// With `a = root c + eps` and `rho = root` (`1` where `root = 0`), `inv = 1/(rho a)` is the one
/// division: `r = 1/a = rho inv` and `r / sqrt(v) = inv`, so `z = g rho inv` and
/// `t = (z m) inv`. The beta coordinates' per-element differences `p12 m - p1 g'` and
/// `q12 v - q1 g'^2` are formed after the pass, from the sums (in `f64`, with `f64` factors):
/// three products and four accumulations per element, where per-element differences took eight
/// and three. Where `v = 0`, `t v = 0` and `t g'^2` is 0 unless `g'^2` is subnormal.
#[inline(always)]
pub(crate) fn adam_hyper_terms(
    last: &HyperScalars,
    [g, m, root, v, prev, w]: [f32; 6],
) -> [f32; 5] {
    let a = libm::fmaf(root, last.s.inv_sqrt_bc2, last.s.eps);
    let rho = if root > 0.0 { root } else { 1.0 };
    let inv = 1.0 / (rho * a);
    let z = (g * rho) * inv;
    let zm = z * m;
    let t = zm * inv;
    [zm, z * prev, t * v, t * (prev * prev), g * w]
}

/// The lagged pass's Adam step of one element with `now`; the state is `(m, root = sqrt(v))`.
/// Returns the new `(p, m, root)`.
#[inline(always)]
pub(crate) fn adam_lagged_update(now: &AdamScalars, [p, g, m, root]: [f32; 4]) -> [f32; 3] {
    let m = libm::fmaf(now.beta1, m, now.one_minus_beta1 * g);
    let v = libm::fmaf(now.beta2, root * root, now.one_minus_beta2 * (g * g));
    let root = libm::sqrtf(v);
    let p = p * now.decay - (now.step * m) / libm::fmaf(root, now.inv_sqrt_bc2, now.eps);
    [p, m, root]
}

/// One element of the lagged schedule's pass: the new `(p, m, root)` (the step with `now`) and
/// the five terms of the step `last` took ([`adam_hyper_terms`], on `v = root^2` as the step
/// squares it).
#[inline(always)]
pub(crate) fn adam_lagged_element(
    last: &HyperScalars,
    now: &AdamScalars,
    [p, g, m, root, prev, w]: [f32; 6],
) -> ([f32; 3], [f32; 5]) {
    let terms = adam_hyper_terms(last, [g, m, root, root * root, prev, w]);
    (adam_lagged_update(now, [p, g, m, root]), terms)
}

/// The hypergradient from the five sums of either schedule's pass ([`adam_hyper_terms`]) over
/// the state the step `last` (with weight decay `weight_decay`) left.
/// `1 - lr weight_decay > 0` must have been checked.
pub(crate) fn adam_hyper_finish(
    weight_decay: f32,
    last: &HyperScalars,
    [gq, gr_prev, tv, t_prev2, gp]: [f64; 5],
) -> [f64; 3] {
    [
        lr_hypergradient(weight_decay, last.c1, &last.s, gq, gp),
        last.p1 * gr_prev - last.p12 * gq,
        last.q12 * tv - last.q1 * t_prev2,
    ]
}

/// The learning-rate coordinate of the Adam hypergradient from `Σ g q` and `Σ g w`: `-c1 Σ g q`,
/// and with weight decay the term of the previous weights, `w_k = (w_{k+1} + step q) / decay`
/// with the step's own `f32` factors, summed against `g`. `s.decay > 0` must have been checked.
pub(super) fn lr_hypergradient(
    weight_decay: f32,
    c1: f64,
    s: &AdamScalars,
    gq: f64,
    gp: f64,
) -> f64 {
    let mut d_lr = -c1 * gq;
    if weight_decay != 0.0 {
        let (step, decay) = (s.step as f64, s.decay as f64);
        d_lr -= weight_decay as f64 * (gp + step * gq) / decay;
    }
    d_lr
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

/// The scalar factors of the closed form's sums (which [`HyperScalars`] carries), giving the
/// hypergradient with respect to `(lr, logit(beta1), logit(beta2))`. All in `f64`, from the `f32`
/// values the previous step used and its step number `k`.
struct HyperFactors {
    /// `1 / (1 - beta1^k)`.
    c1: f64,
    /// `step (1 - beta1)` and `step k beta1^k (1 - beta1) c1`.
    p1: f64,
    p2: f64,
    /// `step (1 - beta2) sqrt(c2) / 2` and `step k beta2^k (1 - beta2) c2 sqrt(c2) / 2`, with
    /// `c2 = 1 / (1 - beta2^k)`.
    q1: f64,
    q2: f64,
}

impl HyperFactors {
    fn new(lr: f32, beta1: f32, beta2: f32, k: u32) -> Self {
        let (lr, b1, b2) = (lr as f64, beta1 as f64, beta2 as f64);
        let (b1k, b2k) = (powi(b1, k), powi(b2, k));
        let c1 = 1.0 / (1.0 - b1k);
        let c2 = 1.0 / (1.0 - b2k);
        let step = lr * c1;
        let half_root_c2 = 0.5 * libm::sqrt(c2);
        HyperFactors {
            c1,
            p1: step * (1.0 - b1),
            p2: step * k as f64 * b1k * (1.0 - b1) * c1,
            q1: step * (1.0 - b2) * half_root_c2,
            q2: step * k as f64 * b2k * (1.0 - b2) * c2 * half_root_c2,
        }
    }
}

/// The hypergradient of the previous Adam step with respect to `(lr, logit(beta1),
/// logit(beta2))`, and the finiteness check of `grads`, in one read-only pass on `backend`'s lanes.
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
