//! Adam learning only its learning rate at a tower's base ([`Learn::LearningRate`]: the paper's
//! `Adam^α`, Baydin et al.'s Adam-HD), with no state beyond plain Adam's.
//!
//! The learning-rate coordinate needs `Σ g q_k` (and `Σ g w` with weight decay), where
//! `q_k = m_k / (sqrt(v_k) c_k + eps)` is the direction the previous step scaled by its
//! `lr / (1 - beta1^k)`. So the base keeps `q_k` in place of `m_k`, and `sqrt(v_k)` in place of
//! `v_k`: two values per parameter, as plain Adam. Each step recovers
//! `m_k = q_k (sqrt(v_k) c_k + eps)` (the denominator step `k` divided by, recomputed to the
//! same bits: one fused multiply-add and one multiplication), squares `sqrt(v_k)` back, and takes
//! the Adam step; the hypergradient costs one multiply-add per element, and no square root or
//! division beyond the step's own.
//!
//! The recovered `m_k` is within about an ulp of the one the step formed, which `beta1`
//! carries into later moments: an `f32` rounding of the same order as the one `m` takes each
//! step anyway (the weights are checked against plain Adam's to `1e-5` in
//! `harness/tests/optim_lr_only.rs`). The hypergradient is that of the direction the step used.
//!
//! [`Learn::LearningRate`]: super::Learn::LearningRate

mod lanes;
mod scalars;

use super::adam::{lr_hypergradient, AdamConfig, AdamScalars, HyperScalars, LANE_BLOCK};
use super::reduce::{magnitude_bits, NON_FINITE_BITS};
use super::sink::Sink;
use crate::check::require;
use crate::simd::Backend;
use crate::{Error, Result};
use lanes::{adam_lr_step, adam_lr_sums, AdamLrSlices, LrTotals};

/// The hypergradient of the previous Adam step (`cfg`, its step number `k >= 1`) with respect to
/// its learning rate alone, as `[d lr, 0, 0]`, and the finiteness check of `grads`, in one
/// read-only pass on `backend`'s lanes. `q` is the direction that step saved, `params` the weights after it (read only
/// with weight decay). Errors: `NonFinite(what)`; `BadHyperparameter` when `1 - lr weight_decay`
/// is not positive (the previous weights cannot be recovered).
pub(crate) fn adam_lr_hypergradient(
    backend: Backend,
    what: &'static str,
    cfg: &AdamConfig,
    k: u32,
    params: &[f32],
    grads: &[f32],
    q: &[f32],
) -> Result<[f64; 3]> {
    let last = HyperScalars::new(cfg, k);
    let decay = cfg.weight_decay != 0.0;
    let params = if decay { params } else { &[] };
    let sums = adam_lr_sums(backend, grads, q, params)?;
    // NaN for a non-finite gradient, or infinite after an overflow: checked and summed again.
    let sums = if sums.iter().all(|s| s.is_finite()) {
        Some(sums)
    } else {
        checked_sums(grads, q, params)
    };
    let sums = sums.ok_or(Error::NonFinite(what))?;
    adam_lr_finish(cfg.weight_decay, &last, sums)
}

/// `[d lr, 0, 0]` from the two sums `[Σ g q, Σ g w]` over the state the step `last` left.
/// `Err` when `last` had weight decay with `1 - lr weight_decay <= 0`.
pub(crate) fn adam_lr_finish(
    weight_decay: f32,
    last: &HyperScalars,
    [gq, gw]: [f64; 2],
) -> Result<[f64; 3]> {
    // The previous weights are recovered by dividing by `1 - lr weight_decay`.
    require(
        weight_decay == 0.0 || last.s.decay > 0.0,
        "lr * weight_decay",
    )?;
    Ok([
        lr_hypergradient(weight_decay, last.c1, &last.s, gq, gw),
        0.0,
        0.0,
    ])
}

/// The two sums, each product formed and added in `f64` (so no finite gradient overflows);
/// `None` when a gradient is not finite: the slow path of a lane sum that is not finite.
fn checked_sums(grads: &[f32], q: &[f32], params: &[f32]) -> Option<[f64; 2]> {
    let mut sums = [0.0f64; 2];
    let mut max = 0u32;
    let weights = params.iter().chain(core::iter::repeat(&0.0));
    for ((&g, &qi), &w) in grads.iter().zip(q).zip(weights) {
        max = max.max(magnitude_bits(g));
        sums[0] += g as f64 * qi as f64;
        sums[1] += g as f64 * w as f64;
    }
    (max < NON_FINITE_BITS).then_some(sums)
}

/// The step with `now` (`last`: the step that left the state; any step's scalars when the state
/// is still zero) on the direction state `[q, root]`, putting each new parameter into `copy`, on
/// `backend`'s lanes (`lanes::adam_lr_step`) in blocks (a multiple of the summation's flush
/// period), each followed by its sinks. With `sums` (the lagged schedule) it also returns
/// `[Σ g q, Σ g w]` over the state before the step, else `[0, 0]`. `decay`: there is weight decay
/// (the same at both steps; without it the second sum is 0 and the weights are not scaled). The
/// gradient and the backend must already be checked.
pub(crate) fn adam_lr_loop<B: Sink>(
    backend: Backend,
    scalars: [&AdamScalars; 2],
    flags: (bool, bool),
    params: &mut [f32],
    grads: &[f32],
    [q, root]: [&mut [f32]; 2],
    mut copy: impl Iterator<Item = B>,
) -> Result<[f64; 2]> {
    let mut totals: LrTotals = Default::default();
    let blocks = params
        .chunks_mut(LANE_BLOCK)
        .zip(grads.chunks(LANE_BLOCK))
        .zip(q.chunks_mut(LANE_BLOCK).zip(root.chunks_mut(LANE_BLOCK)));
    for ((params, grads), (q, root)) in blocks {
        let x = AdamLrSlices {
            params: &mut *params,
            grads,
            q,
            root,
        };
        adam_lr_step(backend, scalars, flags, x, &mut totals)?;
        for (&pi, c) in params.iter().zip(copy.by_ref()) {
            c.put(pi);
        }
    }
    Ok(totals.map(|t| t.iter().sum()))
}

#[cfg(test)]
mod tests {
    use super::scalars::adam_direction_update;
    use super::*;
    use crate::simd::available_backends;

    /// The step one element at a time, its sums added in `f64`: the reference of the lanes.
    fn scalar_loop(
        [last, now]: [&AdamScalars; 2],
        (sums, decay): (bool, bool),
        params: &mut [f32],
        grads: &[f32],
        [q, root]: [&mut [f32]; 2],
    ) -> [f64; 2] {
        let mut totals = [0.0f64; 2];
        let state = q.iter_mut().zip(root.iter_mut());
        for ((p, &g), (q, root)) in params.iter_mut().zip(grads).zip(state) {
            if sums {
                totals[0] += (g * *q) as f64;
                totals[1] += (if decay { g * *p } else { 0.0 }) as f64;
            }
            [*p, *q, *root] = adam_direction_update(last, now, [*p, g, *q, *root]);
        }
        totals
    }
    use crate::optim::sink::nowhere;

    // Interpreted under Miri: a tail and a few lane blocks of the scalar fallback suffice.
    const N: usize = if cfg!(miri) {
        16 * 3 + 5
    } else {
        2 * 1024 + 37
    };

    fn bits<const K: usize>(x: &[f32; K]) -> [u32; K] {
        x.map(f32::to_bits)
    }

    fn val(i: usize, k: u32) -> f32 {
        ((i as f32 * 0.37 + k as f32).sin()) * 0.1
    }

    /// The sums' error bound against their terms added in `f64`: each lane adds 16 terms in
    /// `f32` with fused multiply-adds before the `f64` flush (`optim::reduce`).
    fn assert_sums(got: [f64; 2], terms: &[[f32; 2]]) {
        for c in 0..2 {
            let want: f64 = terms.iter().map(|t| t[c] as f64).sum();
            let scale: f64 = terms.iter().map(|t| (t[c] as f64).abs()).sum();
            let err = (got[c] - want).abs();
            assert!(
                err <= 20.0 * f32::EPSILON as f64 / 2.0 * scale,
                "sum {c}: {err:e}"
            );
        }
    }

    /// The step (SIMD where this CPU has it) against `adam_direction_update` and against the
    /// scalar loop: the same new `p`, `q`, `sqrt(v)` bit for bit over two blocks and a tail, some
    /// `sqrt(v) = 0`, with and without weight decay and the sums; the sums within 20 u of their
    /// scale.
    #[test]
    fn step_equals_its_scalar_element() {
        for wd in [0.0, 0.01] {
            let cfg = AdamConfig {
                lr: 2e-3,
                weight_decay: wd,
                ..AdamConfig::default()
            };
            let (last, now) = (
                AdamScalars::from_config(&cfg, 4),
                AdamScalars::from_config(&cfg, 5),
            );
            for sums in [false, true] {
                let mut p: [f32; N] = core::array::from_fn(|i| val(i, 1));
                let g: [f32; N] = core::array::from_fn(|i| val(i, 2));
                let mut q: [f32; N] = core::array::from_fn(|i| val(i, 3));
                let mut root: [f32; N] = core::array::from_fn(|i| val(i, 4).abs());
                for i in (0..N).step_by(97) {
                    root[i] = 0.0;
                }
                let (p0, q0, r0) = (p, q, root);
                for backend in available_backends() {
                    (p, q, root) = (p0, q0, r0);
                    let st = [&mut q[..], &mut root[..]];
                    let flags = (sums, wd != 0.0);
                    let got =
                        adam_lr_loop(backend, [&last, &now], flags, &mut p, &g, st, nowhere())
                            .expect("available backend");
                    // One element at a time: the same bits, its sums too.
                    let (mut ps, mut qs, mut rs) = (p0, q0, r0);
                    let st = [&mut qs[..], &mut rs[..]];
                    let scalar = scalar_loop([&last, &now], flags, &mut ps, &g, st);
                    assert_eq!(bits(&ps), bits(&p), "p");
                    assert_eq!(bits(&qs), bits(&q), "q");
                    assert_eq!(bits(&rs), bits(&root), "root");
                    let mut terms = [[0.0f32; 2]; N];
                    for i in 0..N {
                        let [pe, qe, re] =
                            adam_direction_update(&last, &now, [p0[i], g[i], q0[i], r0[i]]);
                        assert_eq!(p[i].to_bits(), pe.to_bits(), "p[{i}]");
                        assert_eq!(q[i].to_bits(), qe.to_bits(), "q[{i}]");
                        assert_eq!(root[i].to_bits(), re.to_bits(), "root[{i}]");
                        let w = if wd != 0.0 { p0[i] } else { 0.0 };
                        terms[i] = [g[i] * q0[i], g[i] * w];
                    }
                    if sums {
                        assert_sums(got, &terms);
                        assert_sums(scalar, &terms);
                    } else {
                        assert_eq!((got, scalar), ([0.0, 0.0], [0.0, 0.0]));
                    }
                }
            }
        }
    }

    /// The element step is Adam's: the moment it recovers from `q` is within an ulp of the one
    /// the previous step formed, and from the recovered state it takes the `f64` Adam step.
    #[test]
    fn the_direction_state_is_adam() {
        let cfg = AdamConfig::default();
        let (last, now) = (
            AdamScalars::from_config(&cfg, 7),
            AdamScalars::from_config(&cfg, 8),
        );
        for i in 0..500 {
            let (m, v, g, p) = (val(i, 1), val(i, 2).abs() * 0.1, val(i, 3), val(i, 4));
            let root = libm::sqrtf(v);
            let q = m / libm::fmaf(root, last.inv_sqrt_bc2, last.eps);
            let recovered = q * libm::fmaf(root, last.inv_sqrt_bc2, last.eps);
            assert!(
                (recovered - m).abs() <= 2.0 * f32::EPSILON * m.abs(),
                "{recovered} vs {m}"
            );
            let [p1, q1, r1] = adam_direction_update(&last, &now, [p, g, q, root]);
            let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
            let m1 = b1 * m as f64 + (1.0 - b1) * g as f64;
            let v1 = b2 * (root as f64).powi(2) + (1.0 - b2) * (g as f64).powi(2);
            let (c1, c2) = (1.0 - b1.powi(8), 1.0 - b2.powi(8));
            let q64 = m1 / (v1.sqrt() / c2.sqrt() + cfg.eps as f64);
            let p64 = p as f64 - cfg.lr as f64 / c1 * q64;
            assert!(
                (q1 as f64 - q64).abs() <= 1e-5 * q64.abs().max(1e-3),
                "q {q1} vs {q64}"
            );
            assert!(
                (r1 as f64 - v1.sqrt()).abs() <= 1e-6 * v1.sqrt(),
                "root {r1}"
            );
            assert!((p1 as f64 - p64).abs() <= 1e-6, "p {p1} vs {p64}");
        }
    }

    /// The exact schedule's read-only pass: its sums against the scalar pass, with and without
    /// the weight term; a NaN or infinite gradient in a chunk or in the tail (also where `q` is
    /// 0) is an error, a finite one whose products overflow is not.
    #[test]
    fn exact_pass_sums_match_the_scalar_pass() {
        let q: [f32; N] = core::array::from_fn(|i| val(i, 5));
        let p: [f32; N] = core::array::from_fn(|i| val(i, 1));
        let next: [f32; N] = core::array::from_fn(|i| val(i, 6));
        for params in [&p[..], &[]] {
            let scalar = checked_sums(&next, &q, params).expect("finite");
            let terms: [[f32; 2]; N] = core::array::from_fn(|i| {
                [
                    next[i] * q[i],
                    next[i] * params.get(i).copied().unwrap_or(0.0),
                ]
            });
            assert_sums(scalar, &terms);
            for backend in available_backends() {
                assert_sums(adam_lr_sums(backend, &next, &q, params).unwrap(), &terms);
            }
        }
        // Where `q = 0` an infinite gradient's product is NaN.
        let mut q = q;
        (q[12], q[N - 5]) = (0.0, 0.0);
        let bad_grads = [
            (5, f32::NAN),
            (N - 3, f32::INFINITY),
            (N / 2, f32::NEG_INFINITY),
            (12, f32::INFINITY),
            (N - 5, f32::NEG_INFINITY),
        ];
        for (bad, x) in bad_grads {
            let mut next = next;
            next[bad] = x;
            assert_eq!(checked_sums(&next, &q, &[]), None);
            let cfg = AdamConfig::default();
            for backend in available_backends() {
                let lanes = adam_lr_sums(backend, &next, &q, &[]).unwrap();
                assert!(!lanes[0].is_finite(), "{x} at {bad}: {lanes:?}");
                let r = adam_lr_hypergradient(backend, "grads", &cfg, 3, &p, &next, &q);
                assert_eq!(r, Err(Error::NonFinite("grads")));
            }
        }
        // Finite gradients whose products overflow `f32`: summed again in `f64`, no error.
        let mut next = next;
        next[9] = f32::MAX;
        next[10] = -f32::MAX;
        (q[9], q[10]) = (4.0, 4.0);
        for backend in available_backends() {
            let cfg = AdamConfig::default();
            let h = adam_lr_hypergradient(backend, "grads", &cfg, 3, &p, &next, &q);
            assert!(h.is_ok_and(|h| h[0].is_finite()), "{h:?}");
        }
    }
}
