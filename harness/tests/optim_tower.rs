//! Behaviour of the optimizer kernels that needs no reference: height 0 is the plain optimizer
//! bit for bit, a frozen hyperoptimizer changes nothing, bad input changes nothing, and the
//! SGD hypergradient is the paper's (and Baydin et al.'s) `g_t · g_{t-1}` rule.

use half::bf16;
use tessera_kernels::optim::{
    adam_step, adam_step_mixed, momentum_step, momentum_step_mixed, sgd_step, sgd_step_mixed,
    AdamConfig, MomentumConfig, Optimizer, Schedule, SgdConfig, Tower,
};
use tessera_kernels::Error;

mod optim_fixtures;
use optim_fixtures::{
    assert_mixed_steps_round_the_master, bits, grads, optimizers, plain_step, start, N,
};

#[test]
fn height_zero_is_the_plain_optimizer_bit_for_bit() {
    for opt in optimizers() {
        let mut tower: Tower = Tower::new(opt).unwrap();
        let (mut a, mut b) = (start(), start());
        let mut ts = vec![0.0; tower.state_len(N).unwrap()];
        let mut ps = vec![0.0; ts.len()];
        for t in 1..=25 {
            let g = grads(t);
            tower.step(&mut a, &g, &mut ts).unwrap();
            plain_step(&opt, t, &mut b, &g, &mut ps);
            assert_eq!(bits(&a), bits(&b), "{} step {t}", opt.name());
            assert_eq!(bits(&ts), bits(&ps), "{} state, step {t}", opt.name());
        }
        assert_eq!(tower.level(0), Some(opt));
    }
}

#[test]
fn a_frozen_hyperoptimizer_changes_nothing() {
    // A top level with learning rate 0 never moves the hyperparameters below: the weights follow
    // the plain optimizer bit for bit, at heights 1, 2 and 3.
    let frozen = Optimizer::Sgd(SgdConfig { lr: 0.0 });
    let mid = Optimizer::Adam(AdamConfig {
        lr: 0.0,
        ..AdamConfig::default()
    });
    for opt in optimizers() {
        for height in 1..=3 {
            let mut tower: Tower = Tower::new(opt).unwrap();
            for _ in 1..height {
                tower = tower.stacked(mid).unwrap();
            }
            tower = tower.stacked(frozen).unwrap();
            let (mut a, mut b) = (start(), start());
            let mut ts = vec![0.0; tower.state_len(N).unwrap()];
            let mut ps = vec![0.0; N * opt.state_per_param(false)];
            for t in 1..=12 {
                let g = grads(t);
                tower.step(&mut a, &g, &mut ts).unwrap();
                plain_step(&opt, t, &mut b, &g, &mut ps);
                assert_eq!(
                    bits(&a),
                    bits(&b),
                    "{} height {height} step {t}",
                    opt.name()
                );
            }
            assert_eq!(tower.level(0), Some(opt));
            assert!(tower.hypergradient(0).unwrap().iter().any(|h| *h != 0.0));
        }
    }
}

#[test]
fn mixed_steps_write_the_rounded_master() {
    for opt in optimizers() {
        let mut tower: Tower = Tower::new(opt).unwrap();
        let mut master = start();
        let mut copy = vec![bf16::from_f32(f32::NAN); N];
        let mut state = vec![0.0; tower.state_len(N).unwrap()];
        let (mut plain, mut plain_copy) = (start(), vec![bf16::from_f32(f32::NAN); N]);
        let mut ps = vec![0.0; state.len()];
        for t in 1..=5 {
            let g = grads(t);
            tower
                .step_mixed(&mut master, &mut copy, &g, &mut state)
                .unwrap();
            match &opt {
                Optimizer::Sgd(c) => sgd_step_mixed(c, &mut plain, &mut plain_copy, &g).unwrap(),
                Optimizer::Momentum(c) => {
                    momentum_step_mixed(c, &mut plain, &mut plain_copy, &g, &mut ps).unwrap()
                }
                Optimizer::Adam(c) => {
                    let (m, v) = ps.split_at_mut(N);
                    adam_step_mixed(c, t, &mut plain, &mut plain_copy, &g, m, v).unwrap()
                }
            }
            for i in 0..N {
                assert_eq!(copy[i], bf16::from_f32(master[i]), "{} i {i}", opt.name());
                assert_eq!(plain_copy[i], copy[i]);
            }
        }
        assert_eq!(bits(&master), bits(&plain));
    }
}

#[test]
fn non_finite_gradients_modify_nothing() {
    let hyper = Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    });
    for opt in optimizers() {
        for height in 0..=2 {
            for schedule in [Schedule::Exact, Schedule::Lagged] {
                let mut tower: Tower = Tower::new(opt).unwrap();
                for _ in 0..height {
                    tower = tower.stacked(hyper).unwrap();
                }
                tower = tower.with_schedule(schedule).unwrap();
                let mut w = start();
                let mut state = vec![0.0; tower.state_len(N).unwrap()];
                for t in 1..=6 {
                    tower.step(&mut w, &grads(t), &mut state).unwrap();
                }
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut g = grads(7);
                    g[N - 3] = bad;
                    let (t0, w0, s0) = (tower, w.clone(), state.clone());
                    let r = tower.step(&mut w, &g, &mut state);
                    assert_eq!(
                        r,
                        Err(Error::NonFinite("grads")),
                        "{} height {height} {schedule:?}",
                        opt.name()
                    );
                    assert_eq!(tower, t0);
                    assert_eq!(bits(&w), bits(&w0));
                    assert_eq!(bits(&state), bits(&s0));
                }
            }
        }
    }
}

#[test]
fn plain_steps_refuse_non_finite_gradients() {
    let mut g = grads(1);
    g[5] = f32::NAN;
    let (mut p, mut s1, mut s2) = (start(), vec![0.5; N], vec![0.25; N]);
    let (p0, a0, b0) = (p.clone(), s1.clone(), s2.clone());
    assert!(sgd_step(&SgdConfig::default(), &mut p, &g).is_err());
    assert!(momentum_step(&MomentumConfig::default(), &mut p, &g, &mut s1).is_err());
    assert!(adam_step(&AdamConfig::default(), 2, &mut p, &g, &mut s1, &mut s2).is_err());
    assert_eq!(
        (bits(&p), bits(&s1), bits(&s2)),
        (bits(&p0), bits(&a0), bits(&b0))
    );
}

#[test]
fn sgd_over_sgd_is_the_hypergradient_descent_rule() {
    // alpha_t = alpha_{t-1} + kappa g_t · g_{t-1} (Baydin et al.'s SGD-HD), then w -= alpha_t g_t.
    let (alpha0, kappa) = (0.05f32, 0.01f32);
    let mut tower: Tower = Tower::new(Optimizer::Sgd(SgdConfig { lr: alpha0 }))
        .unwrap()
        .stacked(Optimizer::Sgd(SgdConfig { lr: kappa }))
        .unwrap();
    let mut w = start();
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    let (mut alpha, mut w64): (f64, Vec<f64>) =
        (alpha0 as f64, start().iter().map(|&x| x as f64).collect());
    let mut prev: Option<Vec<f32>> = None;
    for t in 1..=10 {
        let g = grads(t);
        tower.step(&mut w, &g, &mut state).unwrap();
        if let Some(p) = &prev {
            let dot: f64 = g.iter().zip(p).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (tower.hypergradient(0).unwrap()[0] as f64 + dot).abs()
                    <= 1e-6 * dot.abs().max(1e-3)
            );
            alpha += kappa as f64 * dot;
        } else {
            assert_eq!(
                tower.hypergradient(0),
                None,
                "no hypergradient before the second step"
            );
        }
        for (x, gi) in w64.iter_mut().zip(&g) {
            *x -= alpha * *gi as f64;
        }
        let lr = tower.level(0).unwrap().lr() as f64;
        assert!(
            (lr - alpha).abs() <= 1e-6 * alpha.abs(),
            "step {t}: lr {lr} vs {alpha}"
        );
        prev = Some(g);
    }
    for (a, b) in w.iter().zip(&w64) {
        assert!((*a as f64 - b).abs() <= 1e-5, "{a} vs {b}");
    }
}

#[test]
fn levels_start_one_step_apart() {
    let adam = Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    });
    let mut tower: Tower = Tower::new(adam)
        .unwrap()
        .stacked(adam)
        .unwrap()
        .stacked(adam)
        .unwrap();
    let mut w = start();
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    assert_eq!(state.len(), 3 * N);
    for t in 1..=4u32 {
        tower.step(&mut w, &grads(t), &mut state).unwrap();
        assert_eq!(tower.steps(0), Some(t));
        assert_eq!(tower.steps(1), Some(t.saturating_sub(1)));
        assert_eq!(tower.steps(2), Some(t.saturating_sub(2)));
        assert_eq!(tower.hypergradient(0).is_some(), t >= 2);
        assert_eq!(tower.hypergradient(1).is_some(), t >= 3);
        assert_eq!(tower.hypergradient(2), None, "the top level is fixed");
    }
    assert_eq!(tower.level(2), Some(adam));
    assert_ne!(tower.level(1), Some(adam));
    assert_ne!(tower.level(0), Some(adam));
}

#[test]
fn a_tower_raises_a_tiny_learning_rate() {
    // f(w) = |w|^2 / 2 from lr 1e-4: the hypergradient says "larger" every step.
    let mut tower: Tower = Tower::new(Optimizer::Sgd(SgdConfig { lr: 1e-4 }))
        .unwrap()
        .stacked(Optimizer::Adam(AdamConfig {
            lr: 1e-2,
            ..AdamConfig::default()
        }))
        .unwrap();
    let mut w = start();
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    for _ in 0..30 {
        let g = w.clone();
        tower.step(&mut w, &g, &mut state).unwrap();
    }
    let lr = tower.level(0).unwrap().lr();
    assert!(lr > 0.1, "lr {lr}");
    assert!(w.iter().all(|x| x.abs() < 0.2), "{w:?}");
}

#[test]
fn bad_arguments_are_errors_and_change_nothing() {
    let adam = Optimizer::Adam(AdamConfig::default());
    // Stacking on an optimizer whose decay rate cannot be learned (logit(0) is infinite).
    let plain_beta = Optimizer::Adam(AdamConfig {
        beta1: 0.0,
        ..AdamConfig::default()
    });
    let r: Result<Tower, _> = Tower::new(plain_beta).and_then(|t| t.stacked(adam));
    assert_eq!(r, Err(Error::BadHyperparameter("beta1")));
    let r: Result<Tower, _> = Tower::new(Optimizer::Momentum(MomentumConfig {
        lr: 0.1,
        momentum: 0.0,
    }))
    .and_then(|t| t.stacked(adam));
    assert_eq!(r, Err(Error::BadHyperparameter("momentum")));
    // Capacity.
    let r: Result<Tower<2>, _> = Tower::new(adam)
        .and_then(|t| t.stacked(adam))
        .and_then(|t| t.stacked(adam));
    assert_eq!(r, Err(Error::BadHyperparameter("tower height")));
    // Lengths.
    let mut tower: Tower = Tower::new(adam).unwrap().stacked(adam).unwrap();
    let mut w = start();
    let mut state = vec![0.0; tower.state_len(N).unwrap() - 1];
    assert!(matches!(
        tower.step(&mut w, &grads(1), &mut state),
        Err(Error::LengthMismatch { what: "state", .. })
    ));
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    assert!(matches!(
        tower.step(&mut w, &grads(1)[1..], &mut state),
        Err(Error::LengthMismatch { what: "grads", .. })
    ));
    let mut copy = vec![bf16::ZERO; N - 1];
    assert!(tower
        .step_mixed(&mut w, &mut copy, &grads(1), &mut state)
        .is_err());
    assert_eq!(bits(&w), bits(&start()));
    assert_eq!(tower.steps(0), Some(0));
    // Plain configs.
    let (mut p, g) = (start(), grads(1));
    assert_eq!(
        sgd_step(&SgdConfig { lr: -1.0 }, &mut p, &g),
        Err(Error::BadHyperparameter("lr"))
    );
    assert_eq!(
        sgd_step(&SgdConfig { lr: f32::NAN }, &mut p, &g),
        Err(Error::BadHyperparameter("lr"))
    );
    let mut v = vec![0.0; N];
    let bad = MomentumConfig {
        lr: 0.1,
        momentum: 1.0,
    };
    assert_eq!(
        momentum_step(&bad, &mut p, &g, &mut v),
        Err(Error::BadHyperparameter("momentum"))
    );
}

/// A tower of height `height` over `opt` whose top level never moves (learning rate 0).
fn frozen_tower(opt: Optimizer, height: usize, schedule: Schedule) -> Tower {
    let mid = Optimizer::Adam(AdamConfig {
        lr: 0.0,
        ..AdamConfig::default()
    });
    let mut tower: Tower = Tower::new(opt).unwrap();
    for _ in 1..height {
        tower = tower.stacked(mid).unwrap();
    }
    tower = tower
        .stacked(Optimizer::Sgd(SgdConfig { lr: 0.0 }))
        .unwrap();
    tower.with_schedule(schedule).unwrap()
}

#[test]
fn lagged_pass_computes_the_exact_schedules_hypergradient() {
    // With the hyperparameters frozen both schedules take the same steps, and the lagged pass
    // at call t computes what the exact schedule's read-only pass computes at call t (only
    // applied a call later): the same sums bit for bit for SGD and momentum (the same loops);
    // for Adam, whose lagged state keeps sqrt(v) and whose terms are folded differently, the
    // learning-rate coordinate to 1e-4.
    for opt in optimizers() {
        let mut exact = frozen_tower(opt, 1, Schedule::Exact);
        let mut lagged = frozen_tower(opt, 1, Schedule::Lagged);
        let (mut we, mut wl) = (start(), start());
        let mut se = vec![0.0; exact.state_len(N).unwrap()];
        let mut sl = vec![0.0; lagged.state_len(N).unwrap()];
        for t in 1..=12 {
            let g = grads(t);
            exact.step(&mut we, &g, &mut se).unwrap();
            lagged.step(&mut wl, &g, &mut sl).unwrap();
            let (got, want) = (lagged.hypergradient(0), exact.hypergradient(0));
            assert_eq!(got.is_some(), want.is_some(), "{} call {t}", opt.name());
            if let (Some(e), Some(l)) = (want, got) {
                for (c, (a, b)) in e.iter().zip(l).enumerate() {
                    if let Optimizer::Adam(_) = opt {
                        if c > 0 {
                            // The beta terms cancel (exactly, at the first step); they are
                            // checked against their scale in `hypergradients.rs`.
                            continue;
                        }
                        let tol = 1e-4 * a.abs();
                        assert!(
                            (a - b).abs() <= tol,
                            "{} call {t} [{c}]: {a} vs {b}",
                            opt.name()
                        );
                    } else {
                        assert_eq!(a.to_bits(), b.to_bits(), "{} call {t} [{c}]", opt.name());
                    }
                }
            }
            match opt {
                Optimizer::Adam(_) => {
                    for (a, b) in we.iter().zip(&wl) {
                        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
                    }
                }
                _ => assert_eq!(bits(&we), bits(&wl), "{} call {t}", opt.name()),
            }
        }
        assert_eq!(lagged.level(0), Some(opt));
    }
}

#[test]
fn lagged_sgd_over_sgd_applies_each_hypergradient_one_step_late() {
    // Call t: alpha += kappa g_{t-1} · g_{t-2} (the hypergradient the previous pass computed),
    // then w -= alpha g_t in the pass that computes -g_t · g_{t-1}.
    let (alpha0, kappa) = (0.05f32, 0.01f32);
    let mut tower: Tower = Tower::new(Optimizer::Sgd(SgdConfig { lr: alpha0 }))
        .unwrap()
        .stacked(Optimizer::Sgd(SgdConfig { lr: kappa }))
        .unwrap()
        .with_schedule(Schedule::Lagged)
        .unwrap();
    let mut w = start();
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    let mut alpha = alpha0 as f64;
    let mut w64: Vec<f64> = start().iter().map(|&x| x as f64).collect();
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum() };
    for t in 1..=10u32 {
        let g = grads(t);
        if t >= 3 {
            alpha += kappa as f64 * dot(&grads(t - 1), &grads(t - 2));
        }
        tower.step(&mut w, &g, &mut state).unwrap();
        let lr = tower.level(0).unwrap().lr() as f64;
        assert!(
            (lr - alpha).abs() <= 1e-6 * alpha.abs(),
            "call {t}: lr {lr} vs {alpha}"
        );
        for (x, gi) in w64.iter_mut().zip(&g) {
            *x -= alpha * *gi as f64;
        }
        if t >= 2 {
            let want = -dot(&g, &grads(t - 1));
            let got = tower.hypergradient(0).unwrap()[0] as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "{got} vs {want}"
            );
        }
    }
    for (a, b) in w.iter().zip(&w64) {
        assert!((*a as f64 - b).abs() <= 1e-5, "{a} vs {b}");
    }
}

#[test]
fn a_tower_that_has_stepped_keeps_its_schedule() {
    let adam = Optimizer::Adam(AdamConfig::default());
    let tower: Tower = Tower::new(adam).unwrap().stacked(adam).unwrap();
    assert_eq!(tower.schedule(), Schedule::Exact);
    let mut tower = tower.with_schedule(Schedule::Lagged).unwrap();
    let mut w = start();
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    tower.step(&mut w, &grads(1), &mut state).unwrap();
    assert_eq!(
        tower.with_schedule(Schedule::Lagged).map(|t| t.schedule()),
        Ok(Schedule::Lagged)
    );
    assert_eq!(
        tower.with_schedule(Schedule::Exact),
        Err(Error::BadHyperparameter(
            "schedule of a tower that has stepped"
        ))
    );
}

#[test]
fn a_lagged_tower_raises_a_tiny_learning_rate() {
    let mut tower: Tower = Tower::new(Optimizer::Adam(AdamConfig {
        lr: 1e-5,
        ..AdamConfig::default()
    }))
    .unwrap()
    .stacked(Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    }))
    .unwrap()
    .with_schedule(Schedule::Lagged)
    .unwrap();
    let mut w = start();
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    for _ in 0..200 {
        let g = w.clone();
        tower.step(&mut w, &g, &mut state).unwrap();
    }
    let lr = tower.level(0).unwrap().lr();
    assert!(lr > 1e-4, "lr {lr}");
    assert!(w.iter().all(|x| x.abs() < 0.5), "{w:?}");
}

#[test]
fn lagged_mixed_steps_write_the_rounded_master() {
    let hyper = Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    });
    for opt in optimizers() {
        let tower: Tower = Tower::new(opt)
            .unwrap()
            .stacked(hyper)
            .unwrap()
            .with_schedule(Schedule::Lagged)
            .unwrap();
        assert_mixed_steps_round_the_master(tower, opt.name());
    }
}
