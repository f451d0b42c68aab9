//! The lane kernels (every optimizer step, the dense layer, RMSNorm) on every backend the machine
//! has.
//!
//! Every backend runs the same loop over its lanes ([`Backend::Generic`] on the scalar lanes), so
//! every step must leave the same weights, copies and state, bit for bit, as the generic
//! backend, over several steps (towers: both schedules, heights 1 and 2, learning all
//! coordinates or the learning rate alone). [`every_backend_runs_every_lane_kernel`] fails if a
//! backend this CPU supports (by an independent probe) or one named in
//! `TESSERA_REQUIRE_BACKENDS` did not run every family.

mod backend_probe;

use backend_probe::{probed_backends, required_backends};
use tessera_kernels::nn::{
    linear_matmul_with, rms_norm_backward_with, rms_norm_forward_with, LinearShape,
};
use tessera_kernels::optim::{
    adam_step_mixed_with, adam_step_with, momentum_step_mixed_with, momentum_step_with,
    sgd_step_mixed_with, sgd_step_with, AdamConfig, Learn, MomentumConfig, Optimizer, Schedule,
    SgdConfig, Tower,
};
use tessera_kernels::simd::{available_backends, Backend};
use tessera_kernels::{bf16, Error};

/// Parameters: whole blocks of 1024, chunks of 16 and a tail.
const N: usize = 2 * 1024 + 16 * 3 + 7;
/// Steps per run.
const STEPS: u32 = 4;

fn val(i: usize, k: u32) -> f32 {
    ((i as f32 * 0.37 + k as f32 * 1.3).sin()) * 0.1
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// What a run leaves: weights, their bf16 copy (if written) and the state slices.
type Run = (Vec<u32>, Vec<u16>, Vec<u32>);

/// One optimizer family run on `backend` for [`STEPS`] steps from fixed weights and gradients.
fn run(family: &str, backend: Backend) -> Result<Run, Error> {
    let mut p: Vec<f32> = (0..N).map(|i| val(i, 0)).collect();
    let mut copy = vec![bf16::ZERO; N];
    let mut state = vec![0.0f32; 3 * N];
    let adam = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let sgd = SgdConfig { lr: 0.05 };
    let mom = MomentumConfig {
        lr: 0.05,
        momentum: 0.9,
    };
    let tower = |base: Optimizer, schedule: Schedule, learn: Learn, height: usize| {
        let mut t = Tower::<4>::new(base)?
            .with_schedule(schedule)?
            .with_learned(learn)?;
        for _ in 0..height {
            t = t.stacked(Optimizer::Sgd(SgdConfig { lr: 1e-4 }))?;
        }
        Ok::<_, Error>(t)
    };
    let mut towers = match family {
        "tower_sgd_exact" => Some(tower(Optimizer::Sgd(sgd), Schedule::Exact, Learn::All, 1)?),
        "tower_mom_lagged" => Some(tower(
            Optimizer::Momentum(mom),
            Schedule::Lagged,
            Learn::All,
            2,
        )?),
        "tower_adam_exact" => Some(tower(
            Optimizer::Adam(adam),
            Schedule::Exact,
            Learn::All,
            2,
        )?),
        "tower_adam_lagged" => Some(tower(
            Optimizer::Adam(adam),
            Schedule::Lagged,
            Learn::All,
            1,
        )?),
        "tower_adam_lr_exact" => Some(tower(
            Optimizer::Adam(adam),
            Schedule::Exact,
            Learn::LearningRate,
            1,
        )?),
        "tower_adam_lr_lagged" => Some(tower(
            Optimizer::Adam(adam),
            Schedule::Lagged,
            Learn::LearningRate,
            1,
        )?),
        _ => None,
    };
    if let Some(t) = &towers {
        state.truncate(t.state_len(N)?);
    }
    for k in 1..=STEPS {
        let g: Vec<f32> = (0..N).map(|i| val(i, k) + 0.01 * p[i]).collect();
        let half = N.min(state.len());
        let (m, v) = state.split_at_mut(half);
        let v = v.get_mut(..N).unwrap_or_default();
        match family {
            "sgd" => sgd_step_with(backend, &sgd, &mut p, &g)?,
            "sgd_mixed" => sgd_step_mixed_with(backend, &sgd, &mut p, &mut copy, &g)?,
            "momentum" => momentum_step_with(backend, &mom, &mut p, &g, m)?,
            "momentum_mixed" => momentum_step_mixed_with(backend, &mom, &mut p, &mut copy, &g, m)?,
            "adam" => adam_step_with(backend, &adam, k, &mut p, &g, m, v)?,
            "adam_mixed" => adam_step_mixed_with(backend, &adam, k, &mut p, &mut copy, &g, m, v)?,
            _ => match &mut towers {
                Some(t) if k % 2 == 0 => {
                    t.step_mixed_with(backend, &mut p, &mut copy, &g, &mut state)?
                }
                Some(t) => t.step_with(backend, &mut p, &g, &mut state)?,
                None => panic!("unknown family {family}"),
            },
        }
    }
    let copy = copy.iter().map(|c| c.to_bits()).collect();
    Ok((bits(&p), copy, bits(&state)))
}

const FAMILIES: [&str; 12] = [
    "sgd",
    "sgd_mixed",
    "momentum",
    "momentum_mixed",
    "adam",
    "adam_mixed",
    "tower_sgd_exact",
    "tower_mom_lagged",
    "tower_adam_exact",
    "tower_adam_lagged",
    "tower_adam_lr_exact",
    "tower_adam_lr_lagged",
];

/// The dense layer on `backend`: a batch of 5 rows (a group of 4 and one alone).
fn dense(backend: Backend) -> Result<Vec<u32>, Error> {
    let (rows, k, n) = (5, 16 * 5 + 3, 9);
    let x: Vec<f32> = (0..rows * k).map(|i| val(i, 7)).collect();
    let w: Vec<bf16> = (0..n * k).map(|i| bf16::from_f32(val(i, 8))).collect();
    let mut y = vec![f32::NAN; rows * n];
    linear_matmul_with(backend, LinearShape::new(rows, k, n), &x, &w, &mut y)?;
    Ok(bits(&y))
}

/// RMSNorm forward and backward on `backend`: 3 rows of 16·2 + 5 features, bf16 gains.
fn norm(backend: Backend) -> Result<Vec<u32>, Error> {
    let (rows, dim) = (3, 37);
    let x: Vec<f32> = (0..rows * dim).map(|i| val(i, 9)).collect();
    let g: Vec<bf16> = (0..dim).map(|i| bf16::from_f32(1.0 + val(i, 10))).collect();
    let dy: Vec<f32> = (0..rows * dim).map(|i| val(i, 11)).collect();
    let mut y = vec![f32::NAN; rows * dim];
    rms_norm_forward_with(backend, dim, 1e-5, &x, &g, &mut y)?;
    let (mut dx, mut dg) = (vec![f32::NAN; rows * dim], vec![0.25f32; dim]);
    rms_norm_backward_with(backend, dim, 1e-5, &x, &g, &dy, &mut dx, &mut dg)?;
    Ok(bits(&[y, dx, dg].concat()))
}

/// Runs every family on every available backend against the generic backend; returns the
/// backends that ran every family.
fn check_all() -> Vec<Backend> {
    let mut ran = Vec::new();
    for backend in available_backends() {
        for family in FAMILIES {
            let want = run(family, Backend::Generic).expect("generic");
            let got = run(family, backend).expect("available backend");
            assert_eq!(got.0, want.0, "{family} weights on {}", backend.name());
            assert_eq!(got.1, want.1, "{family} copy on {}", backend.name());
            assert_eq!(got.2, want.2, "{family} state on {}", backend.name());
        }
        let want = norm(Backend::Generic).expect("generic");
        assert_eq!(
            norm(backend).expect("available"),
            want,
            "norm on {}",
            backend.name()
        );
        // The SIMD backends share one order (a fused multiply-add chain); the generic one
        // rounds products and sums separately, so only SIMD backends are compared with each
        // other here (the attention tests bound generic against them).
        if backend != Backend::Generic {
            let want = dense(Backend::best()).expect("best backend");
            assert_eq!(
                dense(backend).expect("available"),
                want,
                "dense on {}",
                backend.name()
            );
        }
        ran.push(backend);
    }
    ran
}

#[test]
fn every_backend_runs_every_lane_kernel() {
    let ran = check_all();
    eprintln!(
        "lane kernels ran on {:?}",
        ran.iter().map(|b| b.name()).collect::<Vec<_>>()
    );
    for b in probed_backends() {
        assert!(
            ran.contains(&b),
            "`{}` is supported but was not run",
            b.name()
        );
    }
    for backend in required_backends() {
        assert!(
            ran.contains(&backend),
            "TESSERA_REQUIRE_BACKENDS requires `{}`, which did not run",
            backend.name()
        );
    }
}

#[test]
fn unavailable_backends_are_refused_and_nothing_changes() {
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_available()) {
        for family in FAMILIES {
            assert_eq!(
                run(family, backend),
                Err(Error::BackendUnavailable(backend)),
                "{family} on {}",
                backend.name()
            );
        }
        assert_eq!(norm(backend), Err(Error::BackendUnavailable(backend)));
        // Nothing is written before the refusal.
        let mut p = vec![1.0f32; 40];
        let g = vec![0.5f32; 40];
        let (mut m, mut v) = (vec![0.0; 40], vec![0.0; 40]);
        let r = adam_step_with(
            backend,
            &AdamConfig::default(),
            1,
            &mut p,
            &g,
            &mut m,
            &mut v,
        );
        assert_eq!(r, Err(Error::BackendUnavailable(backend)));
        assert!(p.iter().all(|&x| x == 1.0) && m.iter().chain(&v).all(|&x| x == 0.0));
    }
}

#[test]
fn every_backend_refuses_a_non_finite_gradient() {
    for backend in available_backends() {
        for at in [0, 17, N - 1] {
            let mut p = vec![1.0f32; N];
            let mut g = vec![0.5f32; N];
            g[at] = f32::NAN;
            let (mut m, mut v) = (vec![0.0; N], vec![0.0; N]);
            let r = adam_step_with(
                backend,
                &AdamConfig::default(),
                1,
                &mut p,
                &g,
                &mut m,
                &mut v,
            );
            assert_eq!(
                r,
                Err(Error::NonFinite("grads")),
                "{} at {at}",
                backend.name()
            );
            assert_eq!(
                sgd_step_with(backend, &SgdConfig::default(), &mut p, &g),
                Err(Error::NonFinite("grads"))
            );
            assert!(p.iter().all(|&x| x == 1.0));
        }
    }
}
