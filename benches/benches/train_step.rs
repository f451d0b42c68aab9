//! What a hyperoptimizer costs in training: one whole training step (minibatch forward and
//! backward, then the optimizer step) with plain Adam against `Adam/Adam` towers, in one
//! criterion group per task.
//!
//! `cargo bench -p tessera-benches --bench train_step`. Tasks are the hyperoptimizer study's
//! (`tessera hyperopt`, its full sizes): the 16-64-64-8 MLP on minibatches of 32 and the 2-layer,
//! width-64 character transformer on 8 sequences of 64 tokens. Cases: `plain` (`adam_step`),
//! `exact_h1` and `lagged_h1` (`Tower` of `Adam/Adam`, level 1 at lr 1e-2, as in the study).
//!
//! The forward and backward pass always run at the initial weights (each case with its own fresh
//! minibatch stream, the same sequence), and the optimizer steps a copy of them with that
//! gradient: the work of a training step, with the minibatch's cost the same in every case
//! (otherwise weights that drift apart, into subnormal activations say, would move it).

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use tessera_harness::hyperopt::lm::{LmSize, LmTask};
use tessera_harness::hyperopt::mlp::MlpTask;
use tessera_harness::hyperopt::Objective;
use tessera_kernels::optim::{adam_step, AdamConfig, Optimizer, Schedule, Tower};

const LM: LmSize = LmSize {
    layers: 2,
    dim: 64,
    seq_len: 64,
    batch: 8,
    corpus_chars: 60_000,
    eval_windows: 32,
};

fn bench_tasks(c: &mut Criterion) {
    bench_task(c, "train_step_mlp", &|| {
        Ok(Box::new(MlpTask::new(8192, 2048, 32, 0, 1)))
    });
    bench_task(c, "train_step_charlm", &|| {
        Ok(Box::new(LmTask::new(LM, 0, 1)?))
    });
}

type Make = dyn Fn() -> Result<Box<dyn Objective>, String>;

fn bench_task(c: &mut Criterion, name: &str, make: &Make) {
    let cfg = AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    };
    let start = make().expect("task").init(0).expect("initial weights");
    let n = start.len();
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));

    let mut task = make().expect("task");
    let (mut p, mut g) = (start.clone(), vec![0.0f32; n]);
    let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
    let mut t = 0u32;
    group.bench_function("plain", |b| {
        b.iter(|| {
            task.minibatch(&start, &mut g).expect("minibatch");
            t += 1;
            adam_step(&cfg, t, &mut p, &g, &mut m, &mut v).expect("adam step");
        })
    });
    for (case, schedule) in [
        ("exact_h1", Schedule::Exact),
        ("lagged_h1", Schedule::Lagged),
    ] {
        let mut task = make().expect("task");
        let mut tower: Tower = Tower::new(Optimizer::Adam(cfg))
            .and_then(|t| {
                t.stacked(Optimizer::Adam(AdamConfig {
                    lr: 1e-2,
                    ..AdamConfig::default()
                }))
            })
            .and_then(|t| t.with_schedule(schedule))
            .expect("tower");
        let mut p = start.clone();
        let mut state = vec![0.0f32; tower.state_len(n).expect("state length")];
        group.bench_function(case, |b| {
            b.iter(|| {
                task.minibatch(&start, &mut g).expect("minibatch");
                tower.step(&mut p, &g, &mut state).expect("tower step");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tasks);
criterion_main!(benches);
