//! What a hyperoptimizer costs in training: one whole training step (minibatch forward and
//! backward, then the optimizer step) with plain Adam against `Adam/Adam` towers, in one
//! criterion group per task.
//!
//! `cargo bench -p tessera-benches --bench train_step`. Tasks, initial weights and towers are the
//! hyperoptimizer study's (`tessera hyperopt`, `Plan::full`): the 16-64-64-8 MLP on minibatches
//! of 32 and the 2-layer, width-64 character transformer on 8 sequences of 64 tokens. Cases:
//! `plain` (the study's height-0 tower: the plain Adam step's own loop, bit for bit), `exact_h1`
//! and `lagged_h1` (its height-1 Adam tower on each schedule), all with base learning rate 1e-3.
//!
//! The forward and backward pass always run at the initial weights (each case with its own fresh
//! minibatch stream, the same sequence), and the optimizer steps a copy of them with that
//! gradient: the work of a training step, with the minibatch's cost the same in every case
//! (otherwise weights that drift apart, into subnormal activations say, would move it).

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use tessera_harness::hyperopt::{Family, Hyper, Plan, Task};
use tessera_kernels::optim::Schedule;

/// The base learning rate of every case.
const LR: f32 = 1e-3;

fn bench_tasks(c: &mut Criterion) {
    bench_task(c, "train_step_mlp", Task::Mlp);
    bench_task(c, "train_step_charlm", Task::CharLm);
}

fn bench_task(c: &mut Criterion, name: &str, task: Task) {
    let plan = Plan::full(0);
    let start = plan
        .init(plan.objective(task).expect("task").as_ref())
        .expect("initial weights");
    let mut g = vec![0.0f32; start.len()];
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));
    let cases = [
        ("plain", 0, Schedule::Exact),
        ("exact_h1", 1, Schedule::Exact),
        ("lagged_h1", 1, Schedule::Lagged),
    ];
    for (case, height, schedule) in cases {
        let plan = Plan {
            schedule,
            hyper: Hyper::both(Plan::adam_hyper()),
            ..Plan::full(0)
        };
        let mut objective = plan.objective(task).expect("task");
        let mut tower = plan.tower(Family::Adam, height, LR).expect("tower");
        let mut p = start.clone();
        let mut state = vec![0.0f32; tower.state_len(p.len()).expect("state length")];
        group.bench_function(case, |b| {
            b.iter(|| {
                objective.minibatch(&start, &mut g).expect("minibatch");
                tower.step(&mut p, &g, &mut state).expect("tower step");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tasks);
criterion_main!(benches);
