//! Towers that learn only their learning rates (`Learn::LearningRate`, the paper's `Adam^α`):
//! with the hyperparameters frozen they take the plain optimizer's steps on both schedules (SGD
//! and momentum bit for bit; Adam, which keeps its direction and `sqrt(v)` in place of `m` and
//! `v`, to rounding), with no more state than plain Adam; their learning-rate hypergradient is
//! the full tower's; they learn; mixed-precision steps write the rounded master; bad input
//! changes nothing. (Against the high-precision reference: `hypergradients.rs`.)

use tessera_kernels::optim::{AdamConfig, Learn, Optimizer, Schedule, SgdConfig, Tower};
use tessera_kernels::Error;

mod optim_fixtures;
use optim_fixtures::{
    assert_mixed_steps_round_the_master, bits, grads, optimizers, plain_step, start, N,
};

const SCHEDULES: [Schedule; 2] = [Schedule::Exact, Schedule::Lagged];

/// `base / hyper` learning the base's learning rate alone, on `schedule`.
fn learning_rate_tower(base: Optimizer, hyper: Optimizer, schedule: Schedule) -> Tower {
    Tower::new(base)
        .and_then(|t| t.stacked(hyper))
        .and_then(|t| t.with_schedule(schedule))
        .and_then(|t| t.with_learned(Learn::LearningRate))
        .unwrap()
}

/// A tower of height `height` over `opt` whose top level never moves (learning rate 0).
fn frozen(opt: Optimizer, height: usize, schedule: Schedule, learn: Learn) -> Tower {
    let mid = Optimizer::Adam(AdamConfig {
        lr: 0.0,
        ..AdamConfig::default()
    });
    let mut tower: Tower = Tower::new(opt).unwrap();
    for _ in 1..height {
        tower = tower.stacked(mid).unwrap();
    }
    let top = Optimizer::Sgd(SgdConfig { lr: 0.0 });
    let tower = tower.stacked(top).unwrap().with_schedule(schedule).unwrap();
    tower.with_learned(learn).unwrap()
}

#[test]
fn a_frozen_learning_rate_tower_takes_the_plain_steps() {
    // At heights 1 to 3, on both schedules: SGD's and momentum's weights and state bit for bit;
    // Adam's weights to 1e-5 (it recovers `m` from its direction each step, within an ulp) and
    // its state, `(q, sqrt(v))`, as long as plain Adam's `(m, v)`. One learned coordinate per
    // level, with a hypergradient.
    for opt in optimizers() {
        for schedule in SCHEDULES {
            for height in 1..=3 {
                let mut tower = frozen(opt, height, schedule, Learn::LearningRate);
                let (mut a, mut b) = (start(), start());
                let mut ts = vec![0.0; tower.state_len(N).unwrap()];
                let mut ps = vec![0.0; N * opt.state_per_param(false)];
                let adam = matches!(opt, Optimizer::Adam(_));
                assert_eq!(ts.len(), if adam { ps.len() } else { ps.len() + N });
                for t in 1..=12 {
                    let g = grads(t);
                    tower.step(&mut a, &g, &mut ts).unwrap();
                    plain_step(&opt, t, &mut b, &g, &mut ps);
                    let what = format!("{} {schedule:?} height {height} step {t}", opt.name());
                    if adam {
                        for (x, y) in a.iter().zip(&b) {
                            assert!(
                                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                                "{what}: {x} vs {y}"
                            );
                        }
                        // `sqrt(v)` squared back is `v` to rounding.
                        for (r, v) in ts[N..].iter().zip(&ps[N..]) {
                            assert!((r * r - v).abs() <= 1e-5 * v, "{what}: {r}^2 vs {v}");
                        }
                    } else {
                        assert_eq!(bits(&a), bits(&b), "{what}");
                        assert_eq!(bits(&ts[..ps.len()]), bits(&ps), "{what}: state");
                    }
                }
                assert_eq!(tower.level(0), Some(opt));
                assert_eq!(tower.learned(), Learn::LearningRate);
                assert_eq!(tower.coordinates(0), Some(&[opt.lr()][..]));
                let h = tower.hypergradient(0).unwrap();
                assert!(h.len() == 1 && h[0] != 0.0, "{h:?}");
            }
        }
    }
}

#[test]
fn height_zero_is_the_plain_optimizer_bit_for_bit() {
    // A tower with nothing above its base is the plain optimizer whatever it would learn.
    for opt in optimizers() {
        let tower: Tower = Tower::new(opt).unwrap();
        let mut tower = tower.with_learned(Learn::LearningRate).unwrap();
        let (mut a, mut b) = (start(), start());
        let mut ts = vec![0.0; tower.state_len(N).unwrap()];
        let mut ps = vec![0.0; N * opt.state_per_param(false)];
        assert_eq!(ts.len(), ps.len());
        for t in 1..=12 {
            let g = grads(t);
            tower.step(&mut a, &g, &mut ts).unwrap();
            plain_step(&opt, t, &mut b, &g, &mut ps);
            assert_eq!(bits(&a), bits(&b), "{} step {t}", opt.name());
            assert_eq!(bits(&ts), bits(&ps), "{} state, step {t}", opt.name());
        }
    }
}

#[test]
fn the_learning_rate_hypergradient_is_the_full_towers() {
    // Frozen, both towers take the plain steps; the learning-rate entry of the full tower's
    // hypergradient (Adam: from `m`, `v` and the saved gradient) and the one an Adam base forms
    // from its direction agree to 1e-5 (the same sum over states equal to rounding); SGD and
    // momentum run the same loops, so bit for bit.
    for opt in optimizers() {
        for schedule in SCHEDULES {
            let mut full = frozen(opt, 1, schedule, Learn::All);
            let mut lr = frozen(opt, 1, schedule, Learn::LearningRate);
            let (mut wf, mut wl) = (start(), start());
            let mut sf = vec![0.0; full.state_len(N).unwrap()];
            let mut sl = vec![0.0; lr.state_len(N).unwrap()];
            for t in 1..=12 {
                let g = grads(t);
                full.step(&mut wf, &g, &mut sf).unwrap();
                lr.step(&mut wl, &g, &mut sl).unwrap();
                let (Some(a), Some(b)) = (full.hypergradient(0), lr.hypergradient(0)) else {
                    assert_eq!(full.hypergradient(0), None);
                    assert_eq!(lr.hypergradient(0), None);
                    continue;
                };
                let (a, b) = (a[0], b[0]);
                let what = format!("{} {schedule:?} call {t}: {a} vs {b}", opt.name());
                match opt {
                    Optimizer::Adam(_) => assert!((a - b).abs() <= 1e-5 * a.abs(), "{what}"),
                    _ => assert_eq!(a.to_bits(), b.to_bits(), "{what}"),
                }
            }
        }
    }
}

#[test]
fn an_adam_learning_rate_tower_raises_a_tiny_learning_rate() {
    // f(w) = |w|^2 / 2 from lr 1e-5: Adam^α/Adam learns a larger step and gets close to the
    // minimum on both schedules, while the betas it does not learn stay where they were.
    let base = AdamConfig {
        lr: 1e-5,
        ..AdamConfig::default()
    };
    let hyper = Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    });
    for schedule in SCHEDULES {
        let mut tower = learning_rate_tower(Optimizer::Adam(base), hyper, schedule);
        let mut w = start();
        let mut state = vec![0.0; tower.state_len(N).unwrap()];
        for _ in 0..200 {
            let g = w.clone();
            tower.step(&mut w, &g, &mut state).unwrap();
        }
        let Some(Optimizer::Adam(learned)) = tower.level(0) else {
            panic!("level 0 is Adam");
        };
        assert!(learned.lr > 1e-4, "{schedule:?}: lr {}", learned.lr);
        assert_eq!((learned.beta1, learned.beta2), (base.beta1, base.beta2));
        assert!(w.iter().all(|x| x.abs() < 0.5), "{schedule:?}: {w:?}");
    }
}

#[test]
fn bad_input_changes_nothing() {
    // A NaN gradient (in a SIMD chunk and in the tail) is refused on both schedules, before and
    // after the hypergradient passes start, and nothing moves; the learned set and the levels
    // are fixed once the tower has stepped (the state's layout depends on both).
    let hyper = Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    });
    for opt in optimizers() {
        for schedule in SCHEDULES {
            let mut tower = learning_rate_tower(opt, hyper, schedule);
            let mut w = start();
            let mut state = vec![0.0; tower.state_len(N).unwrap()];
            for t in 1..=4 {
                for bad in [3, N - 2] {
                    let mut g = grads(t);
                    g[bad] = f32::NAN;
                    let before = (tower, w.clone(), state.clone());
                    let r = tower.step(&mut w, &g, &mut state);
                    assert_eq!(r, Err(Error::NonFinite("grads")), "{}", opt.name());
                    assert_eq!((tower, w.clone(), state.clone()), before);
                }
                tower.step(&mut w, &grads(t), &mut state).unwrap();
            }
            assert_eq!(
                tower.with_learned(Learn::LearningRate).map(|t| t.learned()),
                Ok(Learn::LearningRate)
            );
            assert_eq!(
                tower.with_learned(Learn::All),
                Err(Error::BadHyperparameter(
                    "learned set of a tower that has stepped"
                ))
            );
            assert_eq!(
                tower.stacked(hyper),
                Err(Error::BadHyperparameter(
                    "level stacked on a tower that has stepped"
                ))
            );
        }
    }
}

#[test]
fn mixed_steps_write_the_rounded_master() {
    // `step_mixed` on both schedules: the bf16 copy is the rounded master after every step, and
    // the master takes the same steps as `step` on an f32 twin.
    let hyper = Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    });
    for opt in optimizers() {
        for schedule in SCHEDULES {
            let tower = learning_rate_tower(opt, hyper, schedule);
            assert_mixed_steps_round_the_master(tower, &format!("{} {schedule:?}", opt.name()));
        }
    }
}
