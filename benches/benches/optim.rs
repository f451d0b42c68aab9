//! The hyper Adam step against the plain Adam step on 1M parameters, in one criterion group.
//!
//! `cargo bench -p tessera-benches --bench optim`. Cases:
//! - `plain`: `adam_step` (a read-only pass that checks the gradient, then the fused update);
//! - `tower_h0`: a height-0 [`Tower`] (the same loop through the tower's dispatch);
//! - `hyper_h1`: `Adam / Adam` (height 1): the pass that checks the gradient also computes the
//!   three hypergradients (re-deriving `1/(sqrt(v)+eps)` and `1/sqrt(v)` per parameter), a
//!   scalar update of the learning rate and betas, then the fused update, which also saves the
//!   gradient (the one extra `f32` of state per parameter);
//! - `hyper_h2`: `Adam / Adam / Adam` (the levels above the base cost nothing per parameter).
//!
//! The ratio to report is `hyper_h1 / plain`. Gradients and weights come from
//! `tessera_harness::data`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_kernels::optim::{adam_step, AdamConfig, Optimizer, Tower};

const N: usize = 1 << 20;

fn adam(lr: f32) -> Optimizer {
    Optimizer::Adam(AdamConfig {
        lr,
        ..AdamConfig::default()
    })
}

fn bench_adam(c: &mut Criterion) {
    let grads: Vec<f32> = tensor(InputDistribution::Normal, N, 11)
        .iter()
        .map(|g| g * 1e-2)
        .collect();
    let start = tensor(InputDistribution::Normal, N, 12);
    let cfg = AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    };

    let mut group = c.benchmark_group("adam_step_1M");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));

    {
        let mut p = start.clone();
        let (mut m, mut v) = (vec![0.0f32; N], vec![0.0f32; N]);
        let mut t = 0u32;
        group.bench_function("plain", |b| {
            b.iter(|| {
                t += 1;
                adam_step(&cfg, t, &mut p, &grads, &mut m, &mut v).expect("adam step");
            })
        });
    }
    for (name, levels) in [("tower_h0", 0usize), ("hyper_h1", 1), ("hyper_h2", 2)] {
        let mut tower: Tower = Tower::new(Optimizer::Adam(cfg)).expect("tower");
        for j in 0..levels {
            tower = tower
                .stacked(adam(1e-2 * 1e-2f32.powi(j as i32)))
                .expect("level");
        }
        let mut p = start.clone();
        let mut state = vec![0.0f32; tower.state_len(N).expect("state length")];
        group.bench_function(name, |b| {
            b.iter(|| tower.step(&mut p, &grads, &mut state).expect("tower step"))
        });
        assert_eq!(tower.height(), levels);
        if levels > 0 {
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
