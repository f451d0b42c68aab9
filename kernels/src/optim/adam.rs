//! Adam and AdamW (decoupled weight decay): one fused pass over caller-owned slices.

use super::check::all_finite;
use super::reduce::{magnitude_bits, Sums, NON_FINITE_BITS};
use super::sink::{nowhere, Sink};
use crate::check::{length, require};
use crate::{Element, Error, Result};

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
    adam_check(cfg, t, params.len(), grads, m.len(), v.len())?;
    let s = AdamScalars::from_config(cfg, t);
    adam_loop(&s, params, grads, m, v, None, nowhere());
    Ok(())
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
    adam_check(cfg, t, master.len(), grads, m.len(), v.len())?;
    length("copy", copy.len(), master.len())?;
    let s = AdamScalars::from_config(cfg, t);
    adam_loop(&s, master, grads, m, v, None, copy.iter_mut());
    Ok(())
}

fn adam_check(cfg: &AdamConfig, t: u32, n: usize, grads: &[f32], m: usize, v: usize) -> Result<()> {
    cfg.validate()?;
    require(t >= 1, "t")?;
    length("grads", grads.len(), n)?;
    length("m", m, n)?;
    length("v", v, n)?;
    all_finite("grads", grads)
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

/// The fused update; `saved` (as long as `grads`) receives the gradient, `copy` each new
/// parameter. Not inlined: as a function of its own, its slice arguments are known not to alias,
/// which keeps the loop tight when the caller carved them out of one state slice.
#[inline(never)]
pub(crate) fn adam_loop<B: Sink>(
    s: &AdamScalars,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    saved: Option<&mut [f32]>,
    copy: impl Iterator<Item = B>,
) {
    let (mut saved, mut copy) = (saved, copy);
    if lane_update(s, params, grads, m, v, saved.as_deref_mut(), &mut copy) {
        return;
    }
    match saved {
        Some(saved) => adam_scalar(s, params, grads, m, v, saved.iter_mut(), copy),
        None => adam_scalar(s, params, grads, m, v, nowhere(), copy),
    }
}

/// [`adam_loop`] one element at a time, with `saved` as a sink.
#[inline(always)]
fn adam_scalar<A: Sink, B: Sink>(
    s: &AdamScalars,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    saved: impl Iterator<Item = A>,
    copy: impl Iterator<Item = B>,
) {
    let lanes = params
        .iter_mut()
        .zip(grads)
        .zip(m.iter_mut().zip(v.iter_mut()));
    for (((p, g), (m, v)), (sv, c)) in lanes.zip(saved.zip(copy)) {
        let (np, nm, nv, _) = adam_element(s, *p, *g, *m, *v);
        (*p, *m, *v) = (np, nm, nv);
        sv.put(*g);
        c.put(np);
    }
}

/// Elements per call of the SIMD update, after which the block's sinks are written.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) const LANE_BLOCK: usize = 1024;

/// [`adam_loop`] on the CPU's SIMD backend (`simd::optim`, the same `f32` operations, so the same
/// bits; it also stores the gradient into `saved`) in blocks, each followed by its parameter
/// copies; `false` (nothing done) when there is none.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn lane_update<B: Sink>(
    s: &AdamScalars,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    saved: Option<&mut [f32]>,
    copy: &mut impl Iterator<Item = B>,
) -> bool {
    use crate::simd::optim::adam_update;
    let blocks = params
        .chunks_mut(LANE_BLOCK)
        .zip(grads.chunks(LANE_BLOCK))
        .zip(m.chunks_mut(LANE_BLOCK).zip(v.chunks_mut(LANE_BLOCK)));
    // Empty slices: asks whether there is a SIMD backend, before anything is written.
    if !adam_update(s, &mut [], &[], &mut [], &mut [], &mut []) {
        return false;
    }
    let mut saved = saved.map(|s| s.chunks_mut(LANE_BLOCK));
    for ((p, g), (m, v)) in blocks {
        let sv = saved.as_mut().and_then(|b| b.next()).unwrap_or_default();
        adam_update(s, p, g, m, v, sv);
        // `p` leads the zip, so a sink is taken only for an element that exists.
        for (&pi, c) in p.iter().zip(copy.by_ref()) {
            c.put(pi);
        }
    }
    true
}

/// Targets without a SIMD backend run the scalar loop.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn lane_update<B: Sink>(
    _: &AdamScalars,
    _: &mut [f32],
    _: &[f32],
    _: &mut [f32],
    _: &mut [f32],
    _: Option<&mut [f32]>,
    _: &mut impl Iterator<Item = B>,
) -> bool {
    false
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
/// `now`, saving each gradient into `prev` and each new parameter into `copy`. The state is
/// `[m, root, prev]` ([`adam_lagged_element`]). `decay`: `last` had weight decay. The gradient
/// must already be checked.
#[inline(never)]
pub(crate) fn adam_fused_loop<B: Sink>(
    last: &HyperScalars,
    now: &AdamScalars,
    decay: bool,
    params: &mut [f32],
    grads: &[f32],
    [m, root, prev]: [&mut [f32]; 3],
    copy: impl Iterator<Item = B>,
) -> [f64; 5] {
    let mut copy = copy;
    if let Some(sums) = lane_fused(last, now, decay, params, grads, [m, root, prev], &mut copy) {
        return sums;
    }
    let mut sums = Sums::<5>::new();
    let state = m.iter_mut().zip(root.iter_mut()).zip(prev.iter_mut());
    for (((p, &g), ((m, root), prev)), c) in params.iter_mut().zip(grads).zip(state).zip(copy) {
        let w = if decay { *p } else { 0.0 };
        let (new, terms) = adam_lagged_element(last, now, [*p, g, *m, *root, *prev, w]);
        sums.add_one(terms);
        [*p, *m, *root] = new;
        *prev = g;
        c.put(*p);
    }
    sums.finish()
}

/// [`adam_fused_loop`] on the CPU's SIMD backend in blocks of [`LANE_BLOCK`] (a multiple of the
/// summation's flush period, so the sums are those of one pass over all of it), each followed by
/// its sinks; `None` (nothing done) when there is none.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn lane_fused<B: Sink>(
    last: &HyperScalars,
    now: &AdamScalars,
    decay: bool,
    params: &mut [f32],
    grads: &[f32],
    [m, root, prev]: [&mut [f32]; 3],
    copy: &mut impl Iterator<Item = B>,
) -> Option<[f64; 5]> {
    use crate::simd::optim::{adam_fused, AdamFusedSlices, HyperTotals};
    let empty = || AdamFusedSlices {
        params: &mut [],
        grads: &[],
        m: &mut [],
        root: &mut [],
        prev: &mut [],
    };
    let mut totals: HyperTotals = Default::default();
    // Empty slices: asks whether there is a SIMD backend, before anything is written.
    if !adam_fused(last, now, decay, empty(), &mut totals) {
        return None;
    }
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
        adam_fused(last, now, decay, x, &mut totals);
        for (&pi, c) in params.iter().zip(copy.by_ref()) {
            c.put(pi);
        }
    }
    Some(totals.map(|t| t.iter().sum()))
}

/// Targets without a SIMD backend run the scalar pass.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn lane_fused<B: Sink>(
    _: &HyperScalars,
    _: &AdamScalars,
    _: bool,
    _: &mut [f32],
    _: &[f32],
    _: [&mut [f32]; 3],
    _: &mut impl Iterator<Item = B>,
) -> Option<[f64; 5]> {
    None
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
/// logit(beta2))`, and the finiteness check of `grads`, in one read-only pass.
///
/// `cfg` and `k` are what the previous step used; `params` is `w_{k+1}` (read only when
/// `weight_decay != 0`), `m`, `v` are `m_k`, `v_k`, `prev` is `g_k`. Each element's terms are
/// [`adam_hyper_terms`] (the lagged pass's, on `sqrt(v_k)` taken here as the step took it).
/// Errors: `NonFinite(what)`; `BadHyperparameter` when `1 - lr weight_decay` is not positive (the
/// previous weights cannot be recovered).
pub(crate) fn adam_hypergradient(
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
    let sums = match lane_sums(&last, params, grads, [m, v, prev]) {
        Some(sums) => sums,
        None => scalar_sums(&last, params, grads, [m, v, prev]),
    };
    let sums = sums.ok_or(Error::NonFinite(what))?;
    // The previous weights are recovered by dividing by `1 - lr weight_decay`.
    require(!decay || last.s.decay > 0.0, "lr * weight_decay")?;
    Ok(adam_hyper_finish(cfg.weight_decay, &last, sums))
}

/// The five sums on the CPU's SIMD backend (`simd::optim`): `None` when there is none, else the
/// sums or `None` for a non-finite gradient. The slices have one length (checked by the caller),
/// but `params`, empty without weight decay.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn lane_sums(
    last: &HyperScalars,
    params: &[f32],
    grads: &[f32],
    [m, v, prev]: [&[f32]; 3],
) -> Option<Option<[f64; 5]>> {
    use crate::simd::optim::{adam_hyper_sums, AdamHyperInputs};
    adam_hyper_sums(
        last,
        AdamHyperInputs {
            grads,
            m,
            v,
            prev,
            params,
        },
    )
}

/// Targets without a SIMD backend run the scalar pass.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn lane_sums(_: &HyperScalars, _: &[f32], _: &[f32], _: [&[f32]; 3]) -> Option<Option<[f64; 5]>> {
    None
}

/// The five sums, each term added in `f64`; `None` when a gradient is not finite.
fn scalar_sums(
    last: &HyperScalars,
    params: &[f32],
    grads: &[f32],
    [m, v, prev]: [&[f32]; 3],
) -> Option<[f64; 5]> {
    let mut sums = Sums::<5>::new();
    let mut max = 0u32;
    let weights = params.iter().chain(core::iter::repeat(&0.0));
    for ((((&g, &m), &v), &p), &w) in grads.iter().zip(m).zip(v).zip(prev).zip(weights) {
        max = max.max(magnitude_bits(g));
        sums.add_one(adam_hyper_terms(last, [g, m, libm::sqrtf(v), v, p, w]));
    }
    (max < NON_FINITE_BITS).then(|| sums.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Adam in f64, written from the formula in the docs, independent of the fused loop.
    fn adam_f64(cfg: &AdamConfig, t: u32, p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
        let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
        let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        for ((p, g), (m, v)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let lr = cfg.lr as f64;
            *p = *p * (1.0 - lr * cfg.weight_decay as f64)
                - lr / c1 * *m / ((*v / c2).sqrt() + cfg.eps as f64);
        }
    }

    #[test]
    fn matches_f64_formula_over_steps() {
        let n = 37;
        let cfg = AdamConfig {
            weight_decay: 0.01,
            ..AdamConfig::default()
        };
        let mut p: alloc_free::Buf = alloc_free::Buf::new(|i| (i as f32 * 0.3).sin());
        let mut p64 = p.map(|x| x as f64);
        let (mut m, mut v) = (alloc_free::Buf::zero(), alloc_free::Buf::zero());
        let (mut m64, mut v64) = ([0.0f64; 64], [0.0f64; 64]);
        for t in 1..=20u32 {
            let g = alloc_free::Buf::new(|i| ((i as f32 + 1.0) * t as f32 * 0.7).cos());
            adam_step(
                &cfg,
                t,
                &mut p.0[..n],
                &g.0[..n],
                &mut m.0[..n],
                &mut v.0[..n],
            )
            .unwrap();
            let g64 = g.map(|x| x as f64);
            adam_f64(
                &cfg,
                t,
                &mut p64[..n],
                &g64[..n],
                &mut m64[..n],
                &mut v64[..n],
            );
        }
        for (i, (&got, &want)) in p.0[..n].iter().zip(&p64[..n]).enumerate() {
            let err = (got as f64 - want).abs();
            assert!(err <= 1e-5 * want.abs().max(1.0), "i {i}: {got} vs {want}");
        }
    }

    /// The SIMD update (where this CPU has one) against the scalar element formula, bit for bit,
    /// over whole chunks, a tail, and a block boundary.
    #[test]
    fn step_equals_the_scalar_formula_bit_for_bit() {
        let n = LANE_BLOCK_TEST + 37;
        let val = |i: usize, k: u32| ((i as f32 * 0.37 + k as f32).sin()) * 0.1;
        let mut p: [f32; LANE_BLOCK_TEST + 37] = core::array::from_fn(|i| val(i, 1));
        let g: [f32; LANE_BLOCK_TEST + 37] = core::array::from_fn(|i| val(i, 2));
        let mut m: [f32; LANE_BLOCK_TEST + 37] = core::array::from_fn(|i| val(i, 3));
        let mut v: [f32; LANE_BLOCK_TEST + 37] = core::array::from_fn(|i| val(i, 4).abs());
        let (p0, m0, v0) = (p, m, v);
        let cfg = AdamConfig {
            weight_decay: 0.01,
            ..AdamConfig::default()
        };
        adam_step(&cfg, 3, &mut p, &g, &mut m, &mut v).unwrap();
        let s = AdamScalars::from_config(&cfg, 3);
        for i in 0..n {
            let (pe, me, ve, _) = adam_element(&s, p0[i], g[i], m0[i], v0[i]);
            assert_eq!(p[i].to_bits(), pe.to_bits(), "p[{i}]");
            assert_eq!(m[i].to_bits(), me.to_bits(), "m[{i}]");
            assert_eq!(v[i].to_bits(), ve.to_bits(), "v[{i}]");
        }
    }

    const LANE_BLOCK_TEST: usize = 1024;

    /// `powi` against `libm::pow` (within 1 ulp of the exact power) for the decay rates and
    /// step numbers Adam meets, through underflow: within `(t + 2) u` relative, and the bias
    /// correction `1 - b^t` within `2e-9` relative.
    #[test]
    fn powi_matches_pow() {
        for b in [
            0.5f32,
            0.9,
            0.99,
            0.999,
            0.9999,
            0.99999,
            1.0 - f32::EPSILON / 2.0,
        ] {
            let b = b as f64;
            let steps = (1..=2000u32).chain((1..40).map(|i| 1u32 << (i % 32) | i));
            for t in steps.chain([u32::MAX]) {
                let (got, want) = (powi(b, t), libm::pow(b, t as f64));
                let err = (got - want).abs();
                let tol = (t as f64 + 2.0) * (f64::EPSILON / 2.0) * want + f64::MIN_POSITIVE;
                assert!(err <= tol, "{b}^{t}: {got:e} vs {want:e}");
                let bc_err = ((1.0 - got) - (1.0 - want)).abs() / (1.0 - want);
                assert!(bc_err <= 2e-9, "1 - {b}^{t}: relative error {bc_err:e}");
            }
        }
    }

    /// The lagged pass (SIMD where this CPU has it) against its scalar element: the same new
    /// `p`, `m`, `sqrt(v)` and saved gradient bit for bit, over two blocks and a tail, with and
    /// without weight decay, some `sqrt(v) = 0`; the sums within 20 u of their scale (the SIMD
    /// pass adds each product with a fused multiply-add and sums 16 per lane in `f32`).
    #[test]
    fn lagged_pass_equals_its_scalar_element() {
        const N: usize = 2 * LANE_BLOCK_TEST + 37;
        let val = |i: usize, k: u32| ((i as f32 * 0.37 + k as f32).sin()) * 0.1;
        for wd in [0.0, 0.01] {
            let last = AdamConfig {
                weight_decay: wd,
                ..AdamConfig::default()
            };
            let now = AdamConfig {
                lr: 2e-3,
                beta1: 0.8,
                ..last
            };
            let (ls, ns) = (
                HyperScalars::new(&last, 4),
                AdamScalars::from_config(&now, 5),
            );
            let mut p: [f32; N] = core::array::from_fn(|i| val(i, 1));
            let g: [f32; N] = core::array::from_fn(|i| val(i, 2));
            let mut m: [f32; N] = core::array::from_fn(|i| val(i, 3));
            let mut root: [f32; N] = core::array::from_fn(|i| val(i, 4).abs());
            let mut prev: [f32; N] = core::array::from_fn(|i| val(i, 5));
            for i in (0..N).step_by(97) {
                (m[i], root[i], prev[i]) = (1e-30, 0.0, 0.0); // v underflowed, m did not
            }
            let (p0, m0, r0, q0) = (p, m, root, prev);
            let sums = adam_fused_loop(
                &ls,
                &ns,
                wd != 0.0,
                &mut p,
                &g,
                [&mut m, &mut root, &mut prev],
                nowhere(),
            );
            let (mut want, mut scale) = ([0.0f64; 5], [0.0f64; 5]);
            for i in 0..N {
                let w = if wd != 0.0 { p0[i] } else { 0.0 };
                let (new, t) = adam_lagged_element(&ls, &ns, [p0[i], g[i], m0[i], r0[i], q0[i], w]);
                assert_eq!(p[i].to_bits(), new[0].to_bits(), "p[{i}]");
                assert_eq!(m[i].to_bits(), new[1].to_bits(), "m[{i}]");
                assert_eq!(root[i].to_bits(), new[2].to_bits(), "root[{i}]");
                assert_eq!(prev[i].to_bits(), g[i].to_bits(), "prev[{i}]");
                for c in 0..5 {
                    want[c] += t[c] as f64;
                    scale[c] += (t[c] as f64).abs();
                }
            }
            for c in 0..5 {
                let err = (sums[c] - want[c]).abs();
                assert!(
                    err <= 20.0 * f32::EPSILON as f64 / 2.0 * scale[c],
                    "sum {c}: {err:e}"
                );
            }
            assert!(scale[..4].iter().all(|&s| s > 0.0));
            assert_eq!(scale[4] > 0.0, wd != 0.0);
        }
    }

    #[test]
    fn exact_pass_sums_match_the_scalar_pass() {
        // The exact schedule's read-only pass on the SIMD backend (where there is one) against
        // the scalar pass over the same state, with and without the weight term, and its
        // finiteness check in a chunk and in the tail.
        const N: usize = 3 * 16 * 16 + 21;
        let val = |i: usize, k: u32| ((i as f32 * 0.61 + k as f32).sin()) * 0.1;
        let cfg = AdamConfig {
            weight_decay: 0.01,
            ..AdamConfig::default()
        };
        let last = HyperScalars::new(&cfg, 3);
        let p: [f32; N] = core::array::from_fn(|i| val(i, 1));
        let mut g: [f32; N] = core::array::from_fn(|i| val(i, 2));
        let mut m: [f32; N] = core::array::from_fn(|i| val(i, 3));
        let mut v: [f32; N] = core::array::from_fn(|i| val(i, 4).abs() * 0.01);
        let mut prev: [f32; N] = core::array::from_fn(|i| val(i, 5));
        for i in (0..N).step_by(89) {
            (m[i], v[i], prev[i]) = (1e-30, 0.0, 0.0);
        }
        for params in [&p[..], &[]] {
            let want = scalar_sums(&last, params, &g, [&m, &v, &prev]).expect("finite");
            let Some(got) = lane_sums(&last, params, &g, [&m, &v, &prev]) else {
                return; // no SIMD backend on this CPU
            };
            let got = got.expect("finite");
            let scale = |c: usize| -> f64 {
                let w = |i: usize| if params.is_empty() { 0.0 } else { p[i] };
                (0..N)
                    .map(|i| {
                        let terms = [g[i], m[i], libm::sqrtf(v[i]), v[i], prev[i], w(i)];
                        adam_hyper_terms(&last, terms)[c].abs() as f64
                    })
                    .sum()
            };
            for c in 0..5 {
                let err = (got[c] - want[c]).abs();
                assert!(
                    err <= 20.0 * f32::EPSILON as f64 / 2.0 * scale(c),
                    "sum {c}: {err:e}"
                );
            }
            assert_eq!(want[4] == 0.0, params.is_empty());
        }
        for at in [5, N - 2] {
            let keep = g[at];
            g[at] = f32::NAN;
            assert_eq!(scalar_sums(&last, &[], &g, [&m, &v, &prev]), None);
            assert!(matches!(
                lane_sums(&last, &[], &g, [&m, &v, &prev]),
                None | Some(None)
            ));
            g[at] = keep;
        }
    }

    #[test]
    fn non_finite_gradient_modifies_nothing() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut p = [1.0f32, 2.0, 3.0];
            let mut g = [0.1f32, 0.2, 0.3];
            g[2] = bad;
            let (mut m, mut v) = ([0.5f32; 3], [0.25f32; 3]);
            let r = adam_step(&AdamConfig::default(), 3, &mut p, &g, &mut m, &mut v);
            assert_eq!(r, Err(Error::NonFinite("grads")));
            assert_eq!((p, m, v), ([1.0, 2.0, 3.0], [0.5; 3], [0.25; 3]));
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let (mut p, g, mut m, mut v) = ([0.0f32; 4], [0.0f32; 4], [0.0f32; 4], [0.0f32; 4]);
        let cfg = AdamConfig::default();
        assert_eq!(
            adam_step(&cfg, 0, &mut p, &g, &mut m, &mut v),
            Err(Error::BadHyperparameter("t"))
        );
        let bad = AdamConfig { beta1: 1.0, ..cfg };
        assert!(adam_step(&bad, 1, &mut p, &g, &mut m, &mut v).is_err());
        let bad = AdamConfig { eps: 0.0, ..cfg };
        assert!(adam_step(&bad, 1, &mut p, &g, &mut m, &mut v).is_err());
        assert!(matches!(
            adam_step(&cfg, 1, &mut p, &g[..3], &mut m, &mut v),
            Err(Error::LengthMismatch { what: "grads", .. })
        ));
    }

    /// Fixed 64-element buffers: the kernel crate's tests run without `alloc`.
    mod alloc_free {
        pub struct Buf(pub [f32; 64]);
        impl Buf {
            pub fn new(f: impl Fn(usize) -> f32) -> Self {
                Buf(core::array::from_fn(f))
            }
            pub fn zero() -> Self {
                Buf([0.0; 64])
            }
            pub fn map(&self, f: impl Fn(f32) -> f64) -> [f64; 64] {
                core::array::from_fn(|i| f(self.0[i]))
            }
        }
    }
}
