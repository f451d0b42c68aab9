//! Optimizers: SGD, SGD with momentum, Adam/AdamW, and hyperoptimizer towers that learn their
//! hyperparameters ("Gradient Descent: The Ultimate Optimizer", Chandra et al., NeurIPS 2022).
//!
//! Every step works on caller-owned slices: `f32` parameters (or `f32` master weights plus a
//! rounded `bf16`/`f32` copy written in the same pass, the `*_mixed` functions), an `f32`
//! gradient and `f32` state. Every step checks its arguments first and returns `Err` without
//! touching anything when a slice length, a hyperparameter or a gradient (NaN or infinity:
//! [`Error::NonFinite`](crate::Error::NonFinite)) is bad. No allocation, no panics.
//!
//! # Plain steps
//!
//! | function | update (`g` the gradient, `t` the 1-based step) | state per parameter |
//! |---|---|---|
//! | [`sgd_step`] | `p -= lr g` | none |
//! | [`momentum_step`] | `b = mu b + g; p -= lr b` | `b` |
//! | [`adam_step`] | `m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;` `p = p (1 - lr wd) - lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)` | `m`, `v` |
//!
//! Each is one fused pass (after a read-only pass that checks the gradient, so that a bad one
//! changes nothing), written as plain loops the compiler vectorises. Bias corrections are folded
//! into per-step scalars in `f64`. `sqrt` is `libm::sqrtf` (correctly rounded on every target;
//! it is not vectorised by the stable compiler, which makes Adam's pass compute-bound).
//!
//! # Hyper steps: the definition
//!
//! A [`Tower`] of height `H` has levels `0..=H`. Level 0 updates the weights `w`; level `j >= 1`
//! updates the *learned coordinates* `x_{j-1}` of level `j - 1`'s hyperparameters; the top level
//! `H` keeps its hyperparameters fixed. Learned coordinates ([`Optimizer`]):
//!
//! | optimizer | coordinates | hyperparameters from coordinates |
//! |---|---|---|
//! | SGD | `[lr]` | `lr` |
//! | momentum | `[lr, z]` | `lr`, `momentum = (tanh z + 1)/2` |
//! | Adam | `[lr, z1, z2]` | `lr`, `beta1 = (tanh z1 + 1)/2`, `beta2 = (tanh z2 + 1)/2` (`eps`, `weight_decay` fixed) |
//!
//! The reparametrisation is gdtuo's (the paper's code: its `Adam.clamp`, `(tanh z + 1) / 2`, which
//! is `sigmoid(2 z)`, so `d beta / d z = 2 beta (1 - beta)`); it keeps every decay rate in
//! `(0, 1)`: `tanh` is evaluated in `f64` and rounded, and capped at the largest `f32` below 1.
//! (gdtuo learns SGD's momentum raw, unclamped; a momentum level here uses the same map as Adam's
//! betas.)
//!
//! **Two further differences from gdtuo**, both kept and measured against it in
//! `harness/tests/gdtuo_fixture.rs` and `docs/results/hyperopt.md`: (1) gdtuo starts Adam's `v`
//! at its `eps` (1e-8), here it starts at 0 (the caller's zeroed state; a caller may start it at
//! `eps` to reproduce gdtuo, as that test does); (2) in gdtuo every level steps at every call, so
//! a hyper-Adam level's first step has a zero gradient (its bias corrections then run one step
//! ahead, and its first real step is `sqrt(1 + beta2) / (1 + beta1) = 0.74` times as large at
//! the default betas), where here level `j` first steps at the tower's step `j + 1`, with a
//! real hypergradient. An SGD level's zero step changes nothing, so SGD levels agree.
//! **The learning rate is learned as it is, as in the paper: nothing stops a learned learning
//! rate from becoming negative** (the hypergradient then pushes it back up, since a step against
//! the gradient raises the loss). For AdamW a learned `lr` with `lr * weight_decay >= 1` is
//! refused (`Err`, nothing changed).
//!
//! **Hypergradient.** Let level `j`'s step number `k` map its parameters `y_k` (the weights, or
//! the coordinates below) to `y_{k+1} = S(y_k, g_k, state; theta_k)` with hyperparameters
//! `theta_k`, and let `G` be the gradient of the loss at `y_{k+1}` (for level 0 the next
//! gradient `g_{k+1}`, for level `j` the hypergradient level `j - 1` computes next). With
//! everything the step read held constant (the paper's detach), the hypergradient of level `j` is
//! `h = G · d y_{k+1} / d x_j` (`x_j` the coordinates of `theta_k`). In closed form, with
//! `y = y_{k+1}` and the state after the step:
//!
//! - SGD: `d y / d lr = -g_k`, so `h = -G · g_k` (Baydin et al.'s SGD-HD).
//! - momentum: `d y / d lr = -b_k`; `d y / d mu = -lr b_{k-1} = -lr (b_k - g_k) / mu`, so
//!   `h_z = -2 lr (1 - mu) G · (b_k - g_k)` (no division).
//! - Adam, with `c1 = 1/(1 - b1^k)`, `c2 = 1/(1 - b2^k)`, `r = 1/(sqrt(v_k c2) + eps)`,
//!   `q = m_k r`, `s = lr c1`, and `m_{k-1} - g_k = (m_k - g_k)/b1`,
//!   `v_{k-1} - g_k^2 = (v_k - g_k^2)/b2`:
//!   - `d y / d lr = -(wd y_k + c1 q)` (`y_k`, the weights before, is recovered as
//!     `(y_{k+1} + s q) / (1 - lr wd)`);
//!   - `d y / d z1 = -2 s r [(1 - b1)(m_k - g_k) + k b1^k (1 - b1) c1 m_k]` (the second term is the
//!     bias correction's);
//!   - `d y / d z2 = q r [s (1 - b2) sqrt(c2) · (v_k - g_k^2)/sqrt(v_k)
//!     + s k b2^k (1 - b2) c2 sqrt(c2) · sqrt(v_k)]` (the `1/sqrt(v_k)` term is taken as 0
//!     where `v_k = 0`).
//!
//! **Extra state.** Every learned level keeps exactly one more `f32` per parameter: the gradient
//! `g_k` it was last given. Everything else the closed forms need (`b_k`, `m_k`, `v_k`, `r`,
//! `q`) is the optimizer's own state or recomputed from it. So a learned base level's state is
//! SGD 1, momentum 2, Adam 3 values per parameter ([`Optimizer::state_per_param`],
//! [`Tower::state_len`]); levels above hold at most 3 parameters and keep their state inside the
//! [`Tower`] value. (An Adam base learning only its learning rate keeps 2, below.)
//!
//! **Adam's pass** forms four sums per step (plus the weight term): `Σ g r m_k`, `Σ g r g_k`,
//! `Σ t v_k` and `Σ t g_k^2` with `t = g m_k r^2 / sqrt(v_k)`, and only then combines them with
//! the closed form's `f64` factors, `d y / d z1 = -(p12 Σ g r m_k - p1 Σ g r g_k)` and
//! `d y / d z2 = q12 Σ t v_k - q1 Σ t g_k^2` (the differences `m_k - g_k` and `v_k - g_k^2` are
//! never formed per element). With `a = sqrt(v_k) c + eps` and `inv = 1/(sqrt(v_k) a)`, one
//! division gives both `r = 1/a = sqrt(v_k) inv` and `r / sqrt(v_k) = inv` (`adam_hyper_terms`;
//! where `v_k = 0`, 1 stands in for `sqrt(v_k)`, and `t g_k^2` is 0 unless `g_k^2` is
//! subnormal). So the pass costs one square root, one division and ten multiplications or fused
//! multiply-adds per element. Each sum's rounding error is bounded by the sum of its terms'
//! magnitudes, the scale the hypergradient tests measure against.
//!
//! **Learning the learning rate alone** ([`Learn::LearningRate`], `Tower::with_learned`: the
//! paper's `Adam^α`, Baydin et al.'s SGD-HD and Adam-HD). Every level below the top learns only
//! its `lr` (coordinates `[lr]`); the decay rates stay exactly as configured. The learning rate's
//! hypergradient is the first closed form above, `-G · (wd y_k + c1 q_k)`, and for Adam it needs
//! nothing of the previous step but its direction `q_k = m_k r`: so an Adam base keeps `q_k` in
//! place of `m_k` and `sqrt(v_k)` in place of `v_k`, **two values per parameter, no more than
//! plain Adam** ([`Tower::state_len`]). Each step recovers `m_k = q_k (sqrt(v_k) c + eps)` with
//! the denominator step `k` divided by (recomputed to the same bits), takes the Adam step, and
//! stores the new direction; the hypergradient is one multiply-add per parameter (`Σ g q_k`, and
//! `Σ g w` with weight decay), with no square root or division beyond the step's own. The
//! recovered `m_k` is within about an ulp of the one the step formed (`optim/adam_lr.rs`), so
//! with its learning rate frozen such a tower follows plain Adam to rounding, not bit for bit.
//! On the exact schedule the sum is a read-only pass over `g` and `q` that also checks the
//! gradient; on the lagged one it is taken inside the step's pass. SGD and momentum bases keep
//! their state and passes and only update `lr`. Measured against plain Adam
//! (`docs/results/hyperopt-cost.md`): 1.1-1.25x its time on the exact schedule, against
//! 1.8-2.3x for `Adam/Adam` learning all three coordinates.
//!
//! **Order within one call** `tower.step(w, g_t, state)`:
//!
//! 1. *Hypergradients, bottom-up, read-only.* Level 0 reads `g_t` with its state and computes
//!    `h_0`, the hypergradient of the step it took at the previous call (and checks `g_t` is
//!    finite), in one pass. Level 1 computes `h_1` from `h_0` and its own state, and so on up to
//!    level `H - 1`. A level computes nothing before it has stepped once.
//! 2. *Hyperparameter updates, top-down.* Level `H` steps `x_{H-1}` with gradient `h_{H-1}`;
//!    then level `H - 1`, with its new hyperparameters, steps `x_{H-2}` with `h_{H-2}`; ... level
//!    1 steps `x_0`. Level `j` first steps at the tower's step `j + 1`.
//! 3. *The weights.* Level 0 steps `w` with its new hyperparameters and stores `g_t`.
//!
//! So the step at `t` uses hyperparameters already corrected by `g_t`, the gradient at the point
//! the previous step reached: exactly the paper's order (the default, [`Schedule::Exact`]).
//! Exactness costs a second pass over the weights' state: the hypergradient is a sum over all
//! parameters, known only after reading them all, before any of them may change. Any error in
//! phases 1-2 (a non-finite gradient or hypergradient, a coordinate leaving its range) returns
//! `Err` with nothing modified. A tower of height 0 runs the plain loop: bit for bit the plain
//! step.
//!
//! **The lagged schedule** ([`Schedule::Lagged`], `Tower::with_schedule`) trades that order for
//! one pass. Call `t`: (1) check `g_t`; (2) levels `1..=H` run phases 1-2 above on the base
//! hypergradient the *previous* call computed (the level-1 hypergradient and every update above
//! work as on the exact schedule, on that stream of base hypergradients); (3) one fused pass over
//! the weights computes the base hypergradient of the step the previous call took (from `g_t` and
//! the state before this pass overwrites it, exactly the closed forms above) and steps the weights
//! with the hyperparameters of (2). So a hypergradient reaches the weights one step later than on
//! the exact schedule: the step at `t` uses hyperparameters corrected by `g_{t-1}`, not `g_t`.
//! Errors in (1)-(2) return `Err` with nothing modified; (3) cannot fail. A non-finite base
//! hypergradient is reported by the next call (and every call after it, until the tower is
//! replaced).
//!
//! On this schedule Adam's state per parameter is `m`, `sqrt(v)` (not `v`: one square root per
//! element instead of two) and `g_k`; its per-element terms are the exact schedule's. A tower's
//! schedule is fixed once it has stepped.
//!
//! **Accuracy.** The hypergradient sums are accumulated in `f32` lanes flushed into `f64` every
//! 128 terms (SGD, momentum) or every 16 terms per lane (Adam's SIMD passes; the scalar fallback
//! adds each Adam term in `f64`), then rounded to `f32`; `harness/tests/hypergradients.rs`
//! checks them, on both schedules, against a 512-bit finite difference of the step
//! (`tessera_reference::optim`) within 64 u of the sum of operand magnitudes at height 1 and
//! 128 u at height 2 (`u = 2^-24`; observed: about 2 u).

mod adam;
mod adam_lr;
mod check;
mod level;
mod momentum;
mod optimizer;
mod reduce;
mod sgd;
mod sink;
mod tower;

#[cfg(feature = "cuda")]
pub use adam::HyperAdamTerms;
pub use adam::{adam_step, adam_step_mixed, adam_step_mixed_with, adam_step_with, AdamConfig};
pub use momentum::{
    momentum_step, momentum_step_mixed, momentum_step_mixed_with, momentum_step_with,
    MomentumConfig,
};
pub use optimizer::Optimizer;
pub use sgd::{sgd_step, sgd_step_mixed, sgd_step_mixed_with, sgd_step_with, SgdConfig};
pub use tower::{Learn, Schedule, Tower};
