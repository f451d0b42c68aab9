//! The hyper Adam step against the plain Adam step, in one criterion group per size.
//!
//! `cargo bench -p tessera-benches --bench optim`. Sizes: 16K parameters (inside the L2), 1M
//! (16 MB of weights and moments: inside this machine's 32 MB L3) and 8M (the 12 x 256 LayerSkip
//! model's size, beyond it). Cases:
//! - `plain`: `adam_step` (a read-only pass that checks the gradient, then the fused update);
//! - `lr_exact_h1`, `lr_lagged_h1`: `Adam^α / Adam` (`Learn::LearningRate`: the base learns only
//!   its learning rate, keeps its step's direction and `sqrt(v)` in place of `m` and `v`, and
//!   sums `g · q` for the hypergradient) on each schedule;
//! - `tower_h0`: a height-0 [`Tower`] (the same loops through the tower's dispatch);
//! - `exact_h1`: `Adam / Adam` on the exact schedule: the pass that checks the gradient also
//!   computes the three hypergradients, a scalar update of the learning rate and betas, then the
//!   fused update, which also saves the gradient (the one extra `f32` of state per parameter);
//! - `exact_h2`: `Adam / Adam / Adam` (the levels above the base cost nothing per parameter);
//! - `lagged_h1`, `lagged_h2`: the same towers on `Schedule::Lagged`: the gradient check, then
//!   one pass that computes the hypergradients and steps the weights.
//!
//! The ratios to report are each case's time over `plain`'s. Gradients and weights come from
//! `tessera_harness::data`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_kernels::optim::{adam_step, AdamConfig, Learn, Optimizer, Schedule, Tower};

fn adam(lr: f32) -> Optimizer {
    Optimizer::Adam(AdamConfig {
        lr,
        ..AdamConfig::default()
    })
}

fn bench_adam(c: &mut Criterion) {
    for (name, n) in [
        ("adam_step_16K", 1usize << 14),
        ("adam_step_1M", 1 << 20),
        ("adam_step_8M", 1 << 23),
    ] {
        bench_size(c, name, n);
    }
}

fn bench_size(c: &mut Criterion, name: &str, n: usize) {
    let grads: Vec<f32> = tensor(InputDistribution::Normal, n, 11)
        .iter()
        .map(|g| g * 1e-2)
        .collect();
    let start = tensor(InputDistribution::Normal, n, 12);
    let cfg = AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    };

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));

    // Every case runs on the same two buffers (weights; state, which the plain step splits into
    // `m` and `v`), reset before it: where the allocator happens to place a buffer moves a
    // memory-bound step by up to a fifth here, which would otherwise land in the ratios.
    let mut p = start.clone();
    let mut state = vec![0.0f32; 3 * n];
    {
        let (m, v) = state.split_at_mut(n);
        let v = &mut v[..n];
        let mut t = 0u32;
        group.bench_function("plain", |b| {
            b.iter(|| {
                t += 1;
                adam_step(&cfg, t, &mut p, &grads, m, v).expect("adam step");
            })
        });
    }
    let (all, lr) = (Learn::All, Learn::LearningRate);
    // The cases nearest 1x run right after `plain`: on a shared machine the speed drifts over
    // the seconds each case takes, and adjacent cases drift least apart (`optim_pairs` times
    // them in interleaved rounds instead).
    let cases = [
        ("lr_exact_h1", 1usize, Schedule::Exact, lr),
        ("lr_lagged_h1", 1, Schedule::Lagged, lr),
        ("tower_h0", 0, Schedule::Exact, all),
        ("exact_h1", 1, Schedule::Exact, all),
        ("exact_h2", 2, Schedule::Exact, all),
        ("lagged_h1", 1, Schedule::Lagged, all),
        ("lagged_h2", 2, Schedule::Lagged, all),
    ];
    for (case, levels, schedule, learn) in cases {
        let mut tower: Tower = Tower::new(Optimizer::Adam(cfg)).expect("tower");
        for j in 0..levels {
            tower = tower
                .stacked(adam(1e-2 * 1e-2f32.powi(j as i32)))
                .expect("level");
        }
        tower = tower.with_schedule(schedule).expect("schedule");
        tower = tower.with_learned(learn).expect("learned set");
        p.copy_from_slice(&start);
        let state = &mut state[..tower.state_len(n).expect("state length")];
        state.fill(0.0);
        group.bench_function(case, |b| {
            b.iter(|| tower.step(&mut p, &grads, state).expect("tower step"))
        });
        assert_eq!(tower.height(), levels);
        // A case left out by a name filter never stepped.
        if levels > 0 && tower.steps(0) > Some(1) {
            assert!(
                tower.hypergradient(0).is_some(),
                "the hypergradient pass ran"
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_adam);
criterion_main!(benches);
