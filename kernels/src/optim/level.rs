//! One tower level: dispatch of the step and of the hypergradient pass over the three optimizer
//! kinds, on any slice (the model's weights at level 0, a few hyperparameters above).

use super::adam::{adam_hypergradient, adam_loop, AdamScalars};
use super::momentum::{momentum_hypergradient, momentum_loop};
use super::sgd::{sgd_hypergradient, sgd_loop};
use super::sink::Sink;
use super::Optimizer;
use crate::Result;

/// One step of `opt` (step number `t`) on `params`; `saved` receives each gradient, `copy` each
/// new parameter; `(first, second)` are the state slices (Adam's `m`, `v`; the momentum
/// velocity and an empty slice; two empty slices for SGD). Arguments must already be checked.
#[inline(always)]
pub(crate) fn level_step<A: Sink, B: Sink>(
    opt: &Optimizer,
    t: u32,
    params: &mut [f32],
    grads: &[f32],
    (first, second): (&mut [f32], &mut [f32]),
    saved: impl Iterator<Item = A>,
    copy: impl Iterator<Item = B>,
) {
    match opt {
        Optimizer::Sgd(c) => sgd_loop(c.lr, params, grads, saved, copy),
        Optimizer::Momentum(c) => {
            momentum_loop(c.lr, c.momentum, params, grads, first, saved, copy)
        }
        Optimizer::Adam(c) => {
            let s = AdamScalars::from_config(c, t);
            adam_loop(&s, params, grads, first, second, saved, copy)
        }
    }
}

/// The hypergradient of the previous step of `opt` (its step number `k`, its hyperparameters as
/// they were) with respect to its learned coordinates, given the gradient at the new point.
/// `params` are the parameters after that step, `[first, second, prev]` the state it left (as in
/// [`level_step`], plus the gradient it was given). Also checks that
/// `grads` is finite (`NonFinite(what)`).
pub(crate) fn level_hypergradient(
    what: &'static str,
    opt: &Optimizer,
    k: u32,
    params: &[f32],
    grads: &[f32],
    [first, second, prev]: [&[f32]; 3],
) -> Result<[f64; 3]> {
    match opt {
        Optimizer::Sgd(_) => sgd_hypergradient(what, grads, prev),
        Optimizer::Momentum(c) => {
            momentum_hypergradient(what, c.lr, c.momentum, grads, first, prev)
        }
        Optimizer::Adam(c) => adam_hypergradient(what, c, k, params, grads, [first, second, prev]),
    }
}
