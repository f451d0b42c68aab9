//! What a hyperoptimizer adds to a training step, in instructions: one whole training step
//! (minibatch forward and backward, then the optimizer step) of the hyperoptimizer study's two
//! tasks with plain Adam against `Adam/Adam` and `Adam^α/Adam` towers, under valgrind's callgrind (deterministic,
//! unlike time; it hides AVX-512, so this counts the AVX2 or generic paths).
//!
//! `cargo bench -p tessera-benches --bench train_instructions`. The cases are `train_step`'s
//! (same tasks, initial weights, towers and base learning rate, the minibatch always at the
//! initial weights so that its cost is the same in every case), plus `minibatch`: the forward and
//! backward pass alone. The binary re-runs itself under callgrind once with no step and once with
//! some steps per case, each run after [`WARM`] steps of its own, and reports the difference per
//! step: set-up and the tower's first steps, which have no hypergradient yet, cancel out. Without
//! valgrind it says so and exits successfully.

use tessera_benches::{flag_value, instructions_per_step, valgrind_available};
use tessera_harness::hyperopt::{Family, Plan, Task};
use tessera_kernels::optim::{Learn, Schedule};

/// The base learning rate of every case (as in `train_step`).
const LR: f32 = 1e-3;
/// A tower: its height, schedule and learned set.
type Optim = (usize, Schedule, Learn);
/// The cases: the optimizer's tower, or none (`minibatch`).
const CASES: [(&str, Option<Optim>); 6] = [
    ("minibatch", None),
    ("plain", Some((0, Schedule::Exact, Learn::All))),
    ("exact_h1", Some((1, Schedule::Exact, Learn::All))),
    ("lagged_h1", Some((1, Schedule::Lagged, Learn::All))),
    (
        "lr_exact_h1",
        Some((1, Schedule::Exact, Learn::LearningRate)),
    ),
    (
        "lr_lagged_h1",
        Some((1, Schedule::Lagged, Learn::LearningRate)),
    ),
];
/// Steps before the counted ones in every run (a height-1 tower computes its hypergradient from
/// its second step on).
const WARM: u32 = 2;
/// The tasks, with the steps counted of each (the transformer's step is ~250x the MLP's).
const TASKS: [(&str, Task, u32); 2] = [("mlp", Task::Mlp, 8), ("charlm", Task::CharLm, 2)];

/// Runs `steps` training steps of one case (under callgrind, from `main`).
fn run_case(task: Task, optimizer: Option<Optim>, steps: u32) -> anyhow::Result<()> {
    let plan = Plan::full(0);
    let mut objective = plan.objective(task)?;
    let start = plan.init(objective.as_ref())?;
    let mut g = vec![0.0f32; start.len()];
    let mut p = start.clone();
    let mut tower = match optimizer {
        Some((height, schedule, learn)) => {
            let plan = Plan {
                schedule,
                learn,
                ..plan
            };
            Some(plan.tower(Family::Adam, height, LR)?)
        }
        None => None,
    };
    let state_len = match &tower {
        Some(t) => t.state_len(p.len())?,
        None => 0,
    };
    let mut state = vec![0.0f32; state_len];
    for _ in 0..WARM + steps {
        objective.minibatch(&start, &mut g)?;
        if let Some(t) = tower.as_mut() {
            t.step(&mut p, &g, &mut state)?;
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(task), Some(case)) = (flag_value(&args, "--task"), flag_value(&args, "--case")) {
        let task = TASKS.iter().find(|t| t.0 == task).map(|t| t.1);
        let case = CASES.iter().find(|c| c.0 == case).map(|c| c.1);
        let steps = flag_value(&args, "--steps").and_then(|s| s.parse().ok());
        let (Some(task), Some(case), Some(steps)) = (task, case, steps) else {
            eprintln!("train_instructions: bad --task, --case or --steps in {args:?}");
            std::process::exit(2);
        };
        if let Err(e) = run_case(task, case, steps) {
            eprintln!("train_instructions: {e}");
            std::process::exit(1);
        }
        return;
    }
    if !valgrind_available() {
        eprintln!("train_instructions: valgrind not found, nothing counted");
        return;
    }
    let exe = &args[0];
    println!("instructions per training step (callgrind, the steps minus none):");
    for (task, _, steps) in TASKS {
        println!("  {task} ({steps} steps):");
        let (mut minibatch, mut plain) = (None, None);
        for (case, _) in CASES {
            let i = match instructions_per_step(exe, &["--task", task, "--case", case], steps) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("train_instructions: {e}");
                    std::process::exit(1);
                }
            };
            print!("    {case:12} {i:>14.0}");
            match (minibatch, plain) {
                (None, _) => minibatch = Some(i),
                (Some(mb), None) => {
                    plain = Some(i);
                    print!(
                        "  optimizer {:.0} ({:.2}% of the step)",
                        i - mb,
                        100.0 * (i - mb) / i
                    );
                }
                (Some(mb), Some(base)) => print!(
                    "  optimizer {:.0} ({:.2}x plain's); step {:.4}x plain's",
                    i - mb,
                    (i - mb) / (base - mb),
                    i / base
                ),
            }
            println!();
        }
    }
}
