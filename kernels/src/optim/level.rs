//! One tower level: dispatch of the step and of the hypergradient pass over the three optimizer
//! kinds, on any slice (the model's weights at level 0, a few hyperparameters above).

use super::adam::{
    adam_fused_loop, adam_hyper_finish, adam_hypergradient, adam_loop, AdamScalars, HyperScalars,
    Keep,
};
use super::adam_lr::{adam_lr_finish, adam_lr_hypergradient, adam_lr_loop};
use super::momentum::{momentum_fused_loop, momentum_hypergradient, momentum_loop};
use super::sgd::{sgd_fused_loop, sgd_hypergradient, sgd_loop};
use super::sink::{nowhere, Sink};
use super::Optimizer;
use crate::check::require;
use crate::simd::Backend;
use crate::{Error, Result};

/// One step of `opt` (step number `t`) on `params`; `saved` (as long as `grads`) receives the
/// gradient, `copy` each new parameter; `(first, second)` are the state slices (Adam's `m`, `v`,
/// or with [`Keep::Direction`] its direction `q` and `sqrt(v)`, `saved` then unused; the
/// momentum velocity and an empty slice; two empty slices for SGD). Arguments must already be
/// checked.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn level_step<B: Sink>(
    backend: Backend,
    opt: &Optimizer,
    t: u32,
    params: &mut [f32],
    grads: &[f32],
    (first, second): (&mut [f32], &mut [f32]),
    (saved, keep): (Option<&mut [f32]>, Keep),
    copy: impl Iterator<Item = B>,
) -> Result<()> {
    match (opt, saved) {
        (Optimizer::Sgd(c), Some(sv)) => sgd_loop(c.lr, params, grads, sv.iter_mut(), copy),
        (Optimizer::Sgd(c), None) => sgd_loop(c.lr, params, grads, nowhere(), copy),
        (Optimizer::Momentum(c), Some(sv)) => {
            momentum_loop(c.lr, c.momentum, params, grads, first, sv.iter_mut(), copy)
        }
        (Optimizer::Momentum(c), None) => {
            momentum_loop(c.lr, c.momentum, params, grads, first, nowhere(), copy)
        }
        (Optimizer::Adam(c), _) if keep == Keep::Direction => {
            // Only the learning rate changes between steps: the previous step's denominator
            // (its `beta2` and `eps`) is this configuration's at step `t - 1`.
            let last = AdamScalars::from_config(c, t.saturating_sub(1).max(1));
            let now = AdamScalars::from_config(c, t);
            let flags = (false, c.weight_decay != 0.0);
            adam_lr_loop(
                backend,
                [&last, &now],
                flags,
                params,
                grads,
                [first, second],
                copy,
            )?;
        }
        (Optimizer::Adam(c), saved) => {
            let s = AdamScalars::from_config(c, t);
            adam_loop(backend, &s, params, grads, first, second, saved, copy)?
        }
    }
    Ok(())
}

/// The hypergradient of the previous step of `opt` (its step number `k`, its hyperparameters as
/// they were) with respect to its learned coordinates, given the gradient at the new point.
/// `params` are the parameters after that step, `[first, second, prev]` the state it left (as in
/// [`level_step`], plus the gradient it saved; with [`Keep::Direction`], Adam's `first` is its
/// direction `q`, and only the learning rate's hypergradient is computed, the others are 0).
/// Also checks that `grads` is finite (`NonFinite(what)`).
pub(crate) fn level_hypergradient(
    backend: Backend,
    what: &'static str,
    (opt, keep): (&Optimizer, Keep),
    k: u32,
    params: &[f32],
    grads: &[f32],
    [first, second, prev]: [&[f32]; 3],
) -> Result<[f64; 3]> {
    match opt {
        Optimizer::Adam(c) if keep == Keep::Direction => {
            adam_lr_hypergradient(backend, what, c, k, params, grads, first)
        }
        Optimizer::Sgd(_) => sgd_hypergradient(what, grads, prev),
        Optimizer::Momentum(c) => {
            momentum_hypergradient(what, c.lr, c.momentum, grads, first, prev)
        }
        Optimizer::Adam(c) => {
            adam_hypergradient(backend, what, c, k, params, grads, [first, second, prev])
        }
    }
}

/// The lagged schedule's one pass over a learned base level: the hypergradient of the step
/// `last` took (its step number `k`, read from `[first, second, prev]` as that step left them;
/// `None` when `k = 0`, there was none) and the step of `now` (step number `k + 1`), which
/// overwrites them and saves `grads` into `prev`. `last` and `now` are the same optimizer kind;
/// the gradient must already be checked. Adam's `second` holds `sqrt(v)` on this schedule; with
/// [`Keep::Direction`] `first` holds its direction `q`, `prev` is unused, and only the learning
/// rate's hypergradient is computed (the others are 0).
/// `Err` (nothing written) for a kind mismatch or AdamW's `lr * weight_decay >= 1` in `last`
/// (both refused earlier, when the hyperparameters were set).
#[allow(clippy::too_many_arguments)]
pub(crate) fn level_fused<B: Sink>(
    backend: Backend,
    (last, keep): (&Optimizer, Keep),
    k: u32,
    now: &Optimizer,
    params: &mut [f32],
    grads: &[f32],
    [first, second, prev]: [&mut [f32]; 3],
    copy: impl Iterator<Item = B>,
) -> Result<Option<[f64; 3]>> {
    let h = match (last, now) {
        (Optimizer::Sgd(_), Optimizer::Sgd(c)) => sgd_fused_loop(c.lr, params, grads, prev, copy),
        (Optimizer::Momentum(a), Optimizer::Momentum(c)) => momentum_fused_loop(
            [a.lr, a.momentum],
            [c.lr, c.momentum],
            params,
            grads,
            first,
            prev,
            copy,
        ),
        (Optimizer::Adam(a), Optimizer::Adam(c)) if keep == Keep::Direction => {
            let t = k.checked_add(1).ok_or(Error::Overflow)?;
            let sl = HyperScalars::new(a, k.max(1));
            let sn = AdamScalars::from_config(c, t);
            let decay = a.weight_decay != 0.0;
            require(!decay || sl.s.decay > 0.0, "lr * weight_decay")?;
            let st = [first, second];
            let flags = (true, decay);
            let sums = adam_lr_loop(backend, [&sl.s, &sn], flags, params, grads, st, copy)?;
            adam_lr_finish(a.weight_decay, &sl, sums)?
        }
        (Optimizer::Adam(a), Optimizer::Adam(c)) => {
            let t = k.checked_add(1).ok_or(Error::Overflow)?;
            // Before the first step the state is zero and every term is 0 whatever `last`'s
            // scalars are; those of step 1 keep them finite.
            let sl = HyperScalars::new(a, k.max(1));
            let sn = AdamScalars::from_config(c, t);
            let decay = a.weight_decay != 0.0;
            // The previous weights are recovered by dividing by `1 - lr weight_decay`.
            require(!decay || sl.s.decay > 0.0, "lr * weight_decay")?;
            let st = [first, second, prev];
            let sums = adam_fused_loop(backend, &sl, &sn, decay, params, grads, st, copy)?;
            adam_hyper_finish(a.weight_decay, &sl, sums)
        }
        _ => return Err(Error::BadHyperparameter("tower level kind")),
    };
    Ok((k > 0).then_some(h))
}
