//! The hyper Adam steps against the plain Adam step, timed in interleaved rounds.
//!
//! `cargo bench -p tessera-benches --bench optim_pairs [-- --rounds N]` (default 31 rounds,
//! about a minute). The criterion group `optim` times each case for seconds on end, one case
//! after another; on a shared machine whose speed drifts by 10-25% over such spans, that drift
//! lands in the ratios. Here every round times every case once, back to back, on the same
//! buffers (weights reset, state zeroed, a fresh tower, two untimed steps, then a timed batch of
//! steps); a case's ratio in a round is its time over plain Adam's in the same round, and the
//! table reports the median ratio over the rounds with the middle half of them (the quartiles).
//! The case order rotates from round to round so that none always runs first.
//!
//! Cases as in `optim.rs`: `plain` (`adam_step`), `tower_h0`, `Adam/Adam` on both schedules
//! (`exact_h1`, `lagged_h1`: learning `lr`, `beta1`, `beta2`), and `Adam^α/Adam` on both
//! (`lr_exact_h1`, `lr_lagged_h1`: `Learn::LearningRate`).

use std::time::Instant;
use tessera_benches::flag_value;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_kernels::optim::{adam_step, AdamConfig, Learn, Optimizer, Schedule, Tower};

/// A case: plain Adam (`None`), or a tower template (copied fresh each round).
type Case = Option<Tower>;

fn cases(cfg: AdamConfig) -> Vec<(&'static str, Case)> {
    let hyper = Optimizer::Adam(AdamConfig {
        lr: 1e-2,
        ..AdamConfig::default()
    });
    let tower = |levels: usize, schedule, learn| {
        let mut t: Tower = Tower::new(Optimizer::Adam(cfg)).expect("tower");
        for _ in 0..levels {
            t = t.stacked(hyper).expect("level");
        }
        let t = t.with_schedule(schedule).expect("schedule");
        Some(t.with_learned(learn).expect("learned set"))
    };
    let (all, lr) = (Learn::All, Learn::LearningRate);
    let (exact, lagged) = (Schedule::Exact, Schedule::Lagged);
    vec![
        ("plain", None),
        ("tower_h0", tower(0, exact, all)),
        ("exact_h1", tower(1, exact, all)),
        ("lagged_h1", tower(1, lagged, all)),
        ("lr_exact_h1", tower(1, exact, lr)),
        ("lr_lagged_h1", tower(1, lagged, lr)),
    ]
}

/// Seconds per step of `case`: two untimed steps, then `steps` timed ones.
fn time_case(
    case: Case,
    cfg: &AdamConfig,
    p: &mut [f32],
    grads: &[f32],
    state: &mut [f32],
    steps: u32,
) -> f64 {
    let n = p.len();
    state.fill(0.0);
    match case {
        None => {
            let (m, v) = state.split_at_mut(n);
            let v = &mut v[..n];
            let mut t = 0;
            timed(steps, || {
                t += 1;
                adam_step(cfg, t, p, grads, m, v).expect("adam step");
            })
        }
        Some(mut tower) => {
            let state = &mut state[..tower.state_len(n).expect("state length")];
            timed(steps, || tower.step(p, grads, state).expect("tower step"))
        }
    }
}

/// Seconds per call of `step`: two untimed calls, then `steps` timed ones.
fn timed(steps: u32, mut step: impl FnMut()) -> f64 {
    step();
    step();
    let clock = Instant::now();
    for _ in 0..steps {
        step();
    }
    clock.elapsed().as_secs_f64() / steps as f64
}

/// The `q`-quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn run_size(name: &str, n: usize, rounds: usize) {
    let grads: Vec<f32> = tensor(InputDistribution::Normal, n, 11)
        .iter()
        .map(|g| g * 1e-2)
        .collect();
    let start = tensor(InputDistribution::Normal, n, 12);
    let cfg = AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    };
    let cases = cases(cfg);
    // About 4M parameter-steps per timed batch: 256 steps at 16K, 4 at 1M, 3 at 8M.
    let steps = ((1usize << 22) / n).clamp(3, 256) as u32;
    let mut p = start.clone();
    let mut state = vec![0.0f32; 3 * n];
    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..rounds {
        for k in 0..cases.len() {
            let c = (k + round) % cases.len();
            p.copy_from_slice(&start);
            let t = time_case(cases[c].1, &cfg, &mut p, &grads, &mut state, steps);
            times[c].push(t);
        }
    }
    println!("\n{name}: {n} parameters, {rounds} rounds of {steps} timed steps per case");
    println!("| case | median time per step | ratio to plain: median | quartiles |");
    println!("|---|---|---|---|");
    let plain = &times[0];
    for ((label, _), t) in cases.iter().zip(&times) {
        let mut ratios: Vec<f64> = t.iter().zip(plain).map(|(a, b)| a / b).collect();
        ratios.sort_by(f64::total_cmp);
        let mut sorted = t.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "| {label} | {:.2} µs | {:.3} | {:.3} - {:.3} |",
            quantile(&sorted, 0.5) * 1e6,
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs each bench once with `--bench` absent: keep that short.
    let quick = !args.iter().any(|a| a == "--bench");
    let rounds = match flag_value(&args, "--rounds").map(str::parse::<usize>) {
        Some(Ok(r)) if r > 0 => r,
        Some(_) => {
            eprintln!("optim_pairs: --rounds needs a positive integer");
            std::process::exit(2);
        }
        None if quick => 1,
        None => 31,
    };
    let sizes: &[(&str, usize)] = if quick {
        &[("adam_step_16K", 1 << 14)]
    } else {
        &[
            ("adam_step_16K", 1 << 14),
            ("adam_step_1M", 1 << 20),
            ("adam_step_8M", 1 << 23),
        ]
    };
    for &(name, n) in sizes {
        run_size(name, n, rounds);
    }
}
