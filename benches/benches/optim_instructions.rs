//! Instruction counts of the plain Adam step and the hyper-Adam steps (exact and lagged
//! schedules, heights 1 and 2, and `Adam^α/Adam`, learning the learning rate alone, on both),
//! under valgrind's callgrind
//! (deterministic, unlike time; it hides AVX-512, so this counts the AVX2 or generic paths).
//!
//! `cargo bench -p tessera-benches --bench optim_instructions`. The binary re-runs itself under
//! `valgrind --tool=callgrind` once with no step and once with `STEPS` steps per case (each run
//! after [`WARM`] steps of its own), and reports `(I_steps − I_0) / STEPS` per step: set-up,
//! process start and the towers' first steps, which have no hypergradient yet, cancel out.
//! Without valgrind it says so and exits successfully (criterion's `--bench optim` still times
//! the same cases).

use tessera_benches::{flag_value, instructions_per_step, valgrind_available};
use tessera_harness::data::{tensor, InputDistribution};
use tessera_kernels::optim::{adam_step, AdamConfig, Learn, Optimizer, Schedule, Tower};

/// Parameters per step: large enough that per-call overhead is noise.
const N: usize = 1 << 16;
/// Steps in the counted run.
const STEPS: u32 = 8;
/// Steps before the counted ones in every run: a tower of height `h` computes every level's
/// hypergradient from its step `h + 1` on.
const WARM: u32 = 3;
const CASES: [&str; 7] = [
    "plain",
    "hyper_h1",
    "hyper_h2",
    "lagged_h1",
    "lagged_h2",
    "lr_hyper_h1",
    "lr_lagged_h1",
];

fn run_case(case: &str, steps: u32) {
    let grads: Vec<f32> = tensor(InputDistribution::Normal, N, 11)
        .iter()
        .map(|g| g * 1e-2)
        .collect();
    let mut p = tensor(InputDistribution::Normal, N, 12);
    let cfg = AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    };
    if case == "plain" {
        let (mut m, mut v) = (vec![0.0f32; N], vec![0.0f32; N]);
        for t in 1..=WARM + steps {
            adam_step(&cfg, t, &mut p, &grads, &mut m, &mut v).expect("adam step");
        }
        return;
    }
    let levels = if case.ends_with("h1") { 1 } else { 2 };
    let mut tower: Tower = Tower::new(Optimizer::Adam(cfg)).expect("tower");
    for j in 0..levels {
        let lr = 1e-2 * 1e-2f32.powi(j);
        let level = Optimizer::Adam(AdamConfig {
            lr,
            ..AdamConfig::default()
        });
        tower = tower.stacked(level).expect("level");
    }
    if case.contains("lagged") {
        tower = tower.with_schedule(Schedule::Lagged).expect("schedule");
    }
    if case.starts_with("lr_") {
        tower = tower
            .with_learned(Learn::LearningRate)
            .expect("learned set");
    }
    let mut state = vec![0.0f32; tower.state_len(N).expect("state length")];
    for _ in 0..WARM + steps {
        tower.step(&mut p, &grads, &mut state).expect("tower step");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--case") {
        let case = flag_value(&args, "--case").unwrap_or("plain");
        let steps = flag_value(&args, "--steps")
            .and_then(|s| s.parse().ok())
            .unwrap_or(STEPS);
        run_case(case, steps);
        return;
    }
    if !valgrind_available() {
        eprintln!("optim_instructions: valgrind not found, nothing counted");
        return;
    }
    let exe = &args[0];
    println!("instructions per Adam step on {N} parameters (callgrind, {STEPS} steps minus none):");
    let mut plain = None;
    for case in CASES {
        let per_step = instructions_per_step(exe, &["--case", case], STEPS);
        match per_step {
            Ok(i) => {
                let base = *plain.get_or_insert(i);
                println!(
                    "  {case:12} {:>12.0} instructions/step  {:>6.2} per parameter  {:.2}x plain",
                    i,
                    i / N as f64,
                    i / base
                );
            }
            Err(e) => {
                eprintln!("optim_instructions: {e}");
                std::process::exit(1);
            }
        }
    }
}
