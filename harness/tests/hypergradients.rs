//! The kernels' closed-form hypergradients against the high-precision reference.
//!
//! Each case runs a random tower (SGD, momentum or Adam at every level, height 1 or 2) for a few
//! steps on random gradients, then rebuilds the step the tower took before its last one from
//! snapshots and differentiates it at 512 bits (`tessera_reference::optim`). The kernel's
//! hypergradients of the last step must agree.
//!
//! # Tolerance
//!
//! A hypergradient is a sum over parameters of products of `f32` state and gradients, so its
//! error is bounded relative to the same sum over the magnitudes of every operand
//! (`hypergradient_scale`), not relative to the (possibly cancelling) value. With `u = 2^-24`:
//!
//! - level 0 (height 1), [`TOL_BASE`] = 64 u. The longest per-element path (Adam's `beta2`
//!   term) rounds about 20 times: the stored moments (3-4 u each, since the reference recomputes
//!   them exactly from the previous state), `sqrt`, the denominator, two reciprocals, the
//!   differences `m - g`, `v - g^2`, four products; the lane sums add at most 17 u (16 `f32`
//!   terms per lane before the `f64` flush, see `optim::reduce`), the final rounding 1 u. The
//!   first-order total is under 40 u; 64 u leaves room for second-order terms.
//! - level 1 (height 2), [`TOL_LEVEL1`] = 128 u: it is the level-0 hypergradient (within 64 u of
//!   its scale) dotted with level 1's own direction (within 40 u of its magnitude), plus a 3-term
//!   sum: under 110 u of the chained scale.
//!
//! These are fixed from that count; a failure is a bug to find, not a tolerance to raise.
//!
//! # The lagged schedule
//!
//! [`Schedule::Lagged`] computes the same hypergradients in the pass that steps the weights
//! (its Adam state holds `sqrt(v)`, squared here for the reference). Level 0 is checked as on
//! the exact schedule. A level above receives the hypergradient one step late, so its own is
//! checked as the derivative of its last step against the gradient it was given (the
//! level-below hypergradient the tower reported one step earlier), with the one-step
//! reference and [`TOL_BASE`] on top of the given gradient's magnitudes.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_kernels::optim::{
    AdamConfig, Learn, MomentumConfig, Optimizer, Schedule, SgdConfig, Tower,
};
use tessera_reference::optim::{hypergradient, hypergradient_scale, OptimizerKind, StepRecord};

const U: f64 = 1.0 / 16_777_216.0;
/// Tolerance of a level-0 hypergradient, relative to its scale (see the module docs).
const TOL_BASE: f64 = 64.0 * U;
/// Tolerance of a level-1 hypergradient, relative to its scale.
const TOL_LEVEL1: f64 = 128.0 * U;

/// A base optimizer with random, learnable hyperparameters.
fn base_optimizer(kind: usize, rng: &mut ChaCha8Rng) -> Optimizer {
    let lr = 10f32.powf(rng.random_range(-4.0..-1.0));
    match kind {
        0 => Optimizer::Sgd(SgdConfig { lr }),
        1 => Optimizer::Momentum(MomentumConfig {
            lr,
            momentum: rng.random_range(0.1..0.99),
        }),
        _ => Optimizer::Adam(AdamConfig {
            lr,
            beta1: rng.random_range(0.5..0.99),
            beta2: rng.random_range(0.9..0.9999),
            eps: 1e-8,
            weight_decay: if rng.random::<bool>() { 0.0 } else { 0.01 },
        }),
    }
}

/// A hyperoptimizer with random hyperparameters sized for learning rates and logits.
fn hyper_optimizer(kind: usize, rng: &mut ChaCha8Rng) -> Optimizer {
    match kind {
        0 => Optimizer::Sgd(SgdConfig {
            lr: 10f32.powf(rng.random_range(-6.0..-2.0)),
        }),
        1 => Optimizer::Momentum(MomentumConfig {
            lr: 10f32.powf(rng.random_range(-6.0..-2.0)),
            momentum: rng.random_range(0.1..0.9),
        }),
        _ => Optimizer::Adam(AdamConfig {
            lr: 10f32.powf(rng.random_range(-5.0..-2.0)),
            beta1: rng.random_range(0.5..0.95),
            beta2: rng.random_range(0.9..0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }),
    }
}

/// A random gradient: normal-ish entries at a random scale, some of them zero.
fn gradient(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let scale = 10f32.powf(rng.random_range(-3.0..1.0));
    (0..n)
        .map(|_| {
            if rng.random::<f32>() < 0.05 {
                0.0
            } else {
                scale * (rng.random::<f32>() - 0.5) * 2.0
            }
        })
        .collect()
}

fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// The record of a step: `opt` with the hyperparameters it used, its step number `t`, the
/// parameters and state before it and the gradient it was given.
fn record(opt: Optimizer, t: u32, params: &[f32], grads: &[f32], state: [&[f32]; 2]) -> StepRecord {
    record_with(opt, t, params, grads, state, false)
}

/// [`record`]; `root`: the second state slice holds `sqrt(v)` (Adam on the lagged schedule).
fn record_with(
    opt: Optimizer,
    t: u32,
    params: &[f32],
    grads: &[f32],
    state: [&[f32]; 2],
    root: bool,
) -> StepRecord {
    let n = params.len();
    let (kind, decay1, decay2, eps, weight_decay) = match opt {
        Optimizer::Sgd(_) => (OptimizerKind::Sgd, 0.0, 0.0, 0.0, 0.0),
        Optimizer::Momentum(c) => (OptimizerKind::Momentum, c.momentum, 0.0, 0.0, 0.0),
        Optimizer::Adam(c) => (OptimizerKind::Adam, c.beta1, c.beta2, c.eps, c.weight_decay),
    };
    let used = |s: &[f32], on: bool| if on { wide(&s[..n]) } else { Vec::new() };
    StepRecord {
        kind,
        lr: opt.lr() as f64,
        decay1: decay1 as f64,
        decay2: decay2 as f64,
        eps: eps as f64,
        weight_decay: weight_decay as f64,
        t,
        params: wide(params),
        grads: wide(grads),
        first: used(state[0], kind != OptimizerKind::Sgd),
        second: match used(state[1], kind == OptimizerKind::Adam) {
            v if root => v.iter().map(|r| r * r).collect(),
            v => v,
        },
    }
}

/// `Err` with a message unless every `got[c]` is within `tol * scale[c]` of `want[c]`.
fn check(what: &str, got: &[f32], want: &[f64], scale: &[f64], tol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, reference has {}",
            got.len(),
            want.len()
        ));
    }
    for (c, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (g as f64 - w).abs();
        let within = err <= tol * s; // false for NaN
        if !within {
            return Err(format!(
                "{what}[{c}]: kernel {g:e}, reference {w:e}, error {err:e} > {tol:e} x scale {s:e} \
                 ({:.1} u of scale)",
                err / s / U
            ));
        }
    }
    Ok(())
}

/// One case: a tower of `kinds.len() - 1` levels above the base (the last kind is the fixed top),
/// `steps` steps on `n` parameters, then the comparison of every fresh hypergradient.
fn run_case(kinds: &[usize], n: usize, steps: u32, seed: u64) -> Result<(), String> {
    run_case_on(Schedule::Exact, kinds, n, steps, seed)
}

/// [`run_case`] on `schedule`.
fn run_case_on(
    schedule: Schedule,
    kinds: &[usize],
    n: usize,
    steps: u32,
    seed: u64,
) -> Result<(), String> {
    run_case_learning(schedule, Learn::All, kinds, n, steps, seed)
}

/// `x` followed by zeros up to `len` values: a level's learned coordinates (or their
/// hypergradient, or its state) under [`Learn::LearningRate`] as the reference's chain takes
/// them, every coordinate of the level below. The zeros are exact: a level above given a zero
/// gradient with zero state leaves that coordinate where it is, so it moves no hyperparameter.
fn padded(x: &[f32], len: usize) -> Vec<f32> {
    let mut v = x.to_vec();
    v.resize(len.max(x.len()), 0.0);
    v
}

/// [`run_case_on`] with the tower learning the hyperparameters `learn` names; under
/// [`Learn::LearningRate`] only each level's learning-rate entry is compared.
fn run_case_learning(
    schedule: Schedule,
    learn: Learn,
    kinds: &[usize],
    n: usize,
    steps: u32,
    seed: u64,
) -> Result<(), String> {
    let lagged = schedule == Schedule::Lagged;
    let lr_only = learn == Learn::LearningRate;
    // The entries compared: all of them, or the learning rate's.
    let keep = |v: Vec<f64>| if lr_only { v[..1].to_vec() } else { v };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let base = base_optimizer(kinds[0], &mut rng);
    let mut tower: Tower = Tower::new(base).map_err(|e| e.to_string())?;
    for &k in &kinds[1..] {
        let opt = hyper_optimizer(k, &mut rng);
        tower = tower.stacked(opt).map_err(|e| e.to_string())?;
    }
    tower = tower.with_schedule(schedule).map_err(|e| e.to_string())?;
    tower = tower.with_learned(learn).map_err(|e| e.to_string())?;
    let height = tower.height();
    let mut w: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let mut state = vec![0.0f32; tower.state_len(n).map_err(|e| e.to_string())?];
    // Snapshots before each step: tower, weights, state, gradient.
    let mut history = Vec::new();
    for _ in 0..steps {
        let g = gradient(n, &mut rng);
        history.push((tower, w.clone(), state.clone(), g.clone()));
        tower
            .step(&mut w, &g, &mut state)
            .map_err(|e| format!("step: {e}"))?;
    }
    let [.., (before_prev, w_prev, state_prev, g_prev), (before_last, _, _, g_last)] = &history[..]
    else {
        return Err("need two steps".into());
    };
    let next = wide(g_last);

    // Level 0: the step before the last one.
    let opt0 = before_last.level(0).ok_or("level 0")?;
    let t0 = before_last.steps(0).ok_or("steps")?;
    let st = [&state_prev[..n], state_prev.get(n..).unwrap_or(&[])];
    let rec0 = match opt0 {
        // The direction state `(q, sqrt(v))`: `m = q (sqrt(v) c + eps)` with the denominator of
        // the step before (its number `t0 - 1`; zero state before the first).
        Optimizer::Adam(c) if lr_only => {
            let k = t0.saturating_sub(1) as i32;
            let ibc = 1.0 / (1.0 - (c.beta2 as f64).powi(k)).sqrt();
            let (q, root) = (st[0], &st[1][..n]);
            let m: Vec<f32> = q
                .iter()
                .zip(root)
                .map(|(&q, &r)| {
                    if k == 0 {
                        0.0
                    } else {
                        (q as f64 * (r as f64 * ibc + c.eps as f64)) as f32
                    }
                })
                .collect();
            record_with(opt0, t0, w_prev, g_prev, [&m, root], true)
        }
        // Adam's lagged state holds `sqrt(v)`.
        _ => record_with(opt0, t0, w_prev, g_prev, st, lagged),
    };
    let got0 = tower.hypergradient(0).ok_or("no level-0 hypergradient")?;
    let want0 = keep(hypergradient(std::slice::from_ref(&rec0), &next));
    let scale0 = keep(hypergradient_scale(std::slice::from_ref(&rec0), &next));
    let k0 = opt0.learned_count();
    check(
        &format!("height {height}, level 0 ({})", opt0.name()),
        got0,
        &want0,
        &scale0,
        TOL_BASE,
    )?;

    if lagged && height >= 2 {
        // Level 1's step at the call before the last, against the gradient the last call gave
        // it: the level-0 hypergradient the tower reported after that call.
        let given = (
            before_prev.hypergradient(0),
            before_prev.coordinates(0),
            before_prev.level_state(1),
            before_last.hypergradient(0),
        );
        let (Some(g1), Some(x), Some(st), Some(next1)) = given else {
            return Err("level 1 has not stepped twice".into());
        };
        let opt1 = before_last.level(1).ok_or("level 1")?;
        let t1 = before_last.steps(1).ok_or("steps")?;
        let (x, g1) = (padded(x, k0), padded(g1, k0));
        let st = st.map(|s| padded(s, k0));
        let rec1 = record(opt1, t1, &x, &g1, [&st[0], &st[1]]);
        let got1 = tower.hypergradient(1).ok_or("no level-1 hypergradient")?;
        let next1 = wide(&padded(next1, k0));
        let want1 = keep(hypergradient(std::slice::from_ref(&rec1), &next1));
        let scale1 = keep(hypergradient_scale(std::slice::from_ref(&rec1), &next1));
        let what = format!("lagged, level 1 ({} on {})", opt1.name(), opt0.name());
        check(&what, got1, &want1, &scale1, TOL_BASE)?;
    }
    if !lagged && height >= 2 && steps >= 3 {
        // Level 1's step before the last one: on level 0's coordinates, with the level-0
        // hypergradient of that step as its gradient.
        let opt1 = before_last.level(1).ok_or("level 1")?;
        let t1 = before_last.steps(1).ok_or("steps")?;
        let x = before_prev.coordinates(0).ok_or("coordinates")?;
        let g1 = before_last
            .hypergradient(0)
            .ok_or("previous level-0 hypergradient")?;
        let st = before_prev.level_state(1).ok_or("level-1 state")?;
        let (x, g1) = (padded(x, k0), padded(g1, k0));
        let st = st.map(|s| padded(s, k0));
        let rec1 = record(opt1, t1, &x, &g1, [&st[0], &st[1]]);
        let got1 = tower.hypergradient(1).ok_or("no level-1 hypergradient")?;
        let chain = [rec0, rec1];
        let want1 = keep(hypergradient(&chain, &next));
        let scale1 = keep(hypergradient_scale(&chain, &next));
        let what = format!(
            "height {height}, level 1 ({} on {})",
            opt1.name(),
            opt0.name()
        );
        check(&what, got1, &want1, &scale1, TOL_LEVEL1)?;
    }
    Ok(())
}

const KIND_NAMES: [&str; 3] = ["SGD", "Momentum", "Adam"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Height 1, every base optimizer: SGD lr; momentum lr and momentum; Adam lr, beta1, beta2.
    #[test]
    fn height_one_hypergradients_match_the_reference(
        base in 0usize..3, top in 0usize..3, n in 1usize..24, steps in 2u32..7, seed in any::<u64>()
    ) {
        let r = run_case(&[base, top], n, steps, seed);
        prop_assert!(r.is_ok(), "{} / {}: {}", KIND_NAMES[base], KIND_NAMES[top], r.unwrap_err());
    }

    /// Height 2: the base's hypergradient and level 1's, for every pair of learned optimizers.
    #[test]
    fn height_two_hypergradients_match_the_reference(
        base in 0usize..3, mid in 0usize..3, top in 0usize..3,
        n in 1usize..24, steps in 3u32..8, seed in any::<u64>()
    ) {
        let r = run_case(&[base, mid, top], n, steps, seed);
        prop_assert!(
            r.is_ok(), "{}/{}/{}: {}", KIND_NAMES[base], KIND_NAMES[mid], KIND_NAMES[top], r.unwrap_err()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The lagged schedule, height 1: the hypergradient its one pass computes.
    #[test]
    fn lagged_height_one_hypergradients_match_the_reference(
        base in 0usize..3, top in 0usize..3, n in 1usize..40, steps in 2u32..7, seed in any::<u64>()
    ) {
        let r = run_case_on(Schedule::Lagged, &[base, top], n, steps, seed);
        prop_assert!(
            r.is_ok(), "lagged {} / {}: {}", KIND_NAMES[base], KIND_NAMES[top], r.unwrap_err()
        );
    }

    /// The lagged schedule, height 2: level 0 end to end, level 1 against what it was given.
    #[test]
    fn lagged_height_two_hypergradients_match_the_reference(
        base in 0usize..3, mid in 0usize..3, top in 0usize..3,
        n in 1usize..40, steps in 4u32..8, seed in any::<u64>()
    ) {
        let r = run_case_on(Schedule::Lagged, &[base, mid, top], n, steps, seed);
        prop_assert!(
            r.is_ok(), "lagged {}/{}/{}: {}",
            KIND_NAMES[base], KIND_NAMES[mid], KIND_NAMES[top], r.unwrap_err()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// [`Learn::LearningRate`] at heights 1 and 2 on both schedules: each level's learning-rate
    /// hypergradient (an Adam base's from the direction it saved instead of the gradient).
    #[test]
    fn learning_rate_only_hypergradients_match_the_reference(
        base in 0usize..3, mid in 0usize..3, top in 0usize..3, tall in any::<bool>(),
        lagged in any::<bool>(), n in 1usize..40, steps in 4u32..8, seed in any::<u64>()
    ) {
        let schedule = if lagged { Schedule::Lagged } else { Schedule::Exact };
        let kinds = if tall { vec![base, mid, top] } else { vec![base, top] };
        let r = run_case_learning(schedule, Learn::LearningRate, &kinds, n, steps, seed);
        prop_assert!(r.is_ok(), "learning rate only {schedule:?} {kinds:?}: {}", r.unwrap_err());
    }
}

/// Every base and level-1 kind is covered at least once, whatever proptest draws.
#[test]
fn every_optimizer_pair_is_checked_at_height_two() {
    for (base, base_name) in KIND_NAMES.iter().enumerate() {
        for (mid, mid_name) in KIND_NAMES.iter().enumerate() {
            for seed in 0..3 {
                let r = run_case(&[base, mid, 2], 12, 5, seed);
                assert!(r.is_ok(), "{base_name}/{mid_name}: {}", r.unwrap_err());
                // 37 parameters: two SIMD chunks and a tail.
                let r = run_case_on(Schedule::Lagged, &[base, mid, 2], 37, 5, seed);
                assert!(
                    r.is_ok(),
                    "lagged {base_name}/{mid_name}: {}",
                    r.unwrap_err()
                );
                for schedule in [Schedule::Exact, Schedule::Lagged] {
                    let lr = Learn::LearningRate;
                    let r = run_case_learning(schedule, lr, &[base, mid, 2], 37, 5, seed);
                    assert!(
                        r.is_ok(),
                        "learning rate only, {schedule:?} {base_name}/{mid_name}: {}",
                        r.unwrap_err()
                    );
                }
            }
        }
    }
}

/// The comparison has teeth: a hypergradient off by 0.1% of its scale, or one computed with the
/// wrong gradient, is rejected.
#[test]
fn the_check_rejects_wrong_hypergradients() {
    let want = [2.0, -3.0];
    let scale = [4.0, 5.0];
    let off = [(2.0 + 0.004) as f32, -3.0];
    assert!(check("off", &off, &want, &scale, TOL_BASE).is_err());
    assert!(check("exact", &[2.0, -3.0], &want, &scale, TOL_BASE).is_ok());

    // SGD/SGD: the kernel against the reference fed g_{t-1} instead of g_t as the next gradient.
    let mut tower: Tower = Tower::new(Optimizer::Sgd(SgdConfig { lr: 0.1 }))
        .unwrap()
        .stacked(Optimizer::Sgd(SgdConfig { lr: 0.01 }))
        .unwrap();
    let mut w = vec![1.0f32, 2.0, 3.0];
    let mut state = vec![0.0; tower.state_len(3).unwrap()];
    let g1 = [0.5f32, -1.0, 0.25];
    let g2 = [0.75f32, 0.5, -0.5];
    tower.step(&mut w, &g1, &mut state).unwrap();
    tower.step(&mut w, &g2, &mut state).unwrap();
    let rec = StepRecord::sgd(0.1, 1, vec![1.0, 2.0, 3.0], wide(&g1));
    let got = tower.hypergradient(0).unwrap();
    let right = check(
        "right",
        got,
        &hypergradient(std::slice::from_ref(&rec), &wide(&g2)),
        &hypergradient_scale(std::slice::from_ref(&rec), &wide(&g2)),
        TOL_BASE,
    );
    assert!(right.is_ok(), "{right:?}");
    let wrong = check(
        "wrong",
        got,
        &hypergradient(std::slice::from_ref(&rec), &wide(&g1)),
        &hypergradient_scale(&[rec], &wide(&g1)),
        TOL_BASE,
    );
    assert!(wrong.is_err());
}
