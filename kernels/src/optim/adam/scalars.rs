//! Adam's configuration and the per-step scalars folded from it, and the arithmetic of one
//! element: the update, the hypergradient terms, and the lagged schedule's element. The lane loops
//! (`lanes.rs`) and the scalar references of the tests are written in these.

use crate::check::require;
use crate::Result;

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
    /// Added to the root of the second moment; finite and at least `f32::MIN_POSITIVE` (a
    /// subnormal `eps` would make `1 / eps` infinite, and a parameter whose gradients were all
    /// zero NaN).
    pub eps: f32,
    /// Decoupled weight decay (finite, `>= 0`); `0` is plain Adam.
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    /// [`AdamConfig::DEFAULT`].
    fn default() -> Self {
        AdamConfig::DEFAULT
    }
}

impl AdamConfig {
    /// `lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0` (PyTorch's
    /// defaults), usable in `const` items.
    pub const DEFAULT: AdamConfig = AdamConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };

    /// `Err(BadHyperparameter)` unless every field is in its documented range.
    pub fn validate(&self) -> Result<()> {
        require(self.lr.is_finite() && self.lr >= 0.0, "lr")?;
        require((0.0..1.0).contains(&self.beta1), "beta1")?;
        require((0.0..1.0).contains(&self.beta2), "beta2")?;
        require(self.eps.is_finite() && self.eps >= f32::MIN_POSITIVE, "eps")?;
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

    /// Folds `lr, beta1, beta2, eps, weight_decay` at step `t >= 1`. Bias corrections and the
    /// decay factor `1 - lr weight_decay` are computed in `f64` and rounded once: the factor in
    /// `f32` arithmetic (`1 - fl(lr weight_decay)`) is off by up to `u lr weight_decay`, all of
    /// its value when `lr weight_decay` is near 1 (the fuzz target `optim_step` found a decayed
    /// weight off by 10^6 times its bound).
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
            // `lr weight_decay` is exact in `f64` (two 24-bit significands); one rounding.
            decay: (1.0 - lr as f64 * weight_decay as f64) as f32,
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
pub(crate) fn lr_hypergradient(
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

/// The scalar factors of the closed form's sums (which [`HyperScalars`] carries), giving the
/// hypergradient with respect to `(lr, z1, z2)`, `beta = (tanh z + 1) / 2` (so
/// `d beta / d z = 2 beta (1 - beta)`: the factors 2 below). All in `f64`, from the `f32` values the
/// previous step used and its step number `k`.
struct HyperFactors {
    /// `1 / (1 - beta1^k)`.
    c1: f64,
    /// `2 step (1 - beta1)` and `2 step k beta1^k (1 - beta1) c1`.
    p1: f64,
    p2: f64,
    /// `step (1 - beta2) sqrt(c2)` and `step k beta2^k (1 - beta2) c2 sqrt(c2)`, with
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
        // The sigmoid parametrisation's `sqrt(c2) / 2`, times the tanh one's 2.
        let root_c2 = libm::sqrt(c2);
        let twice = 2.0 * step;
        HyperFactors {
            c1,
            p1: twice * (1.0 - b1),
            p2: twice * k as f64 * b1k * (1.0 - b1) * c1,
            q1: step * (1.0 - b2) * root_c2,
            q2: step * k as f64 * b2k * (1.0 - b2) * c2 * root_c2,
        }
    }
}
