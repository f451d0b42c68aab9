//! `tessera hyperopt`: sensitivity of training to the initial learning rate, for towers of
//! hyperoptimizers of height 0-3 over SGD and Adam, on an MLP and the character LM.
//!
//! ```text
//! tessera hyperopt [--quick] [--json FILE] [--out-dir DIR] [--seed N] [--tasks mlp,charlm]
//!                  [--hyper adam:1e-2,adam:1e-4,adam:1e-6] [--schedule exact|lagged]
//!                  [--learn all|lr] [--threads N]
//! ```

use super::CliResult;
use crate::fsutil::check_outputs;
use crate::hyperopt::{report, run_plan, spreads, Plan, Task};
use anyhow::{bail, ensure, Context};
use std::path::PathBuf;
use tessera_kernels::optim::{AdamConfig, Learn, MomentumConfig, Optimizer, Schedule, SgdConfig};

/// Arguments of `tessera hyperopt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The quick study (five learning rates, short runs, a tiny LM; under two minutes on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Also write every record as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write hyperopt.md, hyperopt_*.svg and hyperopt.json here (default: docs/results for the
    /// full study, nothing for --quick).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Seed of data, initial weights and minibatch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cells trained in parallel (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Comma-separated tasks: mlp, charlm (default both).
    #[arg(long)]
    pub tasks: Option<String>,
    /// Comma-separated hyperoptimizer levels 1, 2, 3 as KIND:LR with KIND sgd, momentum or adam
    /// (default adam:1e-2,adam:1e-4,adam:1e-6).
    #[arg(long)]
    pub hyper: Option<String>,
    /// When hypergradients reach the weights: `exact` (the paper's order, two passes per step) or
    /// `lagged` (one fused pass, hyperparameters one step behind).
    #[arg(long, default_value = "exact")]
    pub schedule: String,
    /// What the levels below the top learn: `all` (the learning rate and Adam's betas) or `lr`
    /// (the learning rate alone: the paper's `Adam^α`, with no state beyond plain Adam's).
    #[arg(long, default_value = "all")]
    pub learn: String,
}

fn parse_learn(s: &str) -> anyhow::Result<Learn> {
    match s {
        "all" => Ok(Learn::All),
        "lr" => Ok(Learn::LearningRate),
        other => bail!("unknown --learn `{other}` (all, lr)"),
    }
}

fn parse_schedule(s: &str) -> anyhow::Result<Schedule> {
    match s {
        "exact" => Ok(Schedule::Exact),
        "lagged" => Ok(Schedule::Lagged),
        other => bail!("unknown schedule `{other}` (exact, lagged)"),
    }
}

fn parse_tasks(s: &str) -> anyhow::Result<Vec<Task>> {
    s.split(',')
        .map(|t| match t.trim() {
            "mlp" => Ok(Task::Mlp),
            "charlm" | "lm" => Ok(Task::CharLm),
            other => bail!("unknown task `{other}` (mlp, charlm)"),
        })
        .collect()
}

fn parse_hyper(s: &str) -> anyhow::Result<Vec<Optimizer>> {
    s.split(',')
        .map(|spec| {
            let (kind, lr) = spec
                .trim()
                .split_once(':')
                .with_context(|| format!("`{spec}`: expected KIND:LR"))?;
            let lr: f32 = lr.parse().with_context(|| format!("`{spec}`"))?;
            let opt = match kind {
                "sgd" => Optimizer::Sgd(SgdConfig { lr }),
                "momentum" => Optimizer::Momentum(MomentumConfig { lr, momentum: 0.9 }),
                "adam" => Optimizer::Adam(AdamConfig {
                    lr,
                    ..AdamConfig::default()
                }),
                other => bail!("unknown optimizer `{other}` (sgd, momentum, adam)"),
            };
            opt.validate().with_context(|| format!("`{spec}`"))?;
            Ok(opt)
        })
        .collect()
}

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    let mut plan = if args.quick {
        Plan::quick(args.seed)
    } else {
        Plan::full(args.seed)
    };
    if let Some(t) = &args.tasks {
        plan.tasks = parse_tasks(t)?;
    }
    if let Some(h) = &args.hyper {
        plan.hyper = parse_hyper(h)?;
    }
    plan.schedule = parse_schedule(&args.schedule)?;
    plan.learn = parse_learn(&args.learn)?;
    ensure!(args.threads != 0, "--threads must be at least 1");
    plan.threads = args.threads;
    let max_height = plan.heights.iter().copied().max().unwrap_or(0);
    ensure!(
        plan.hyper.len() >= max_height,
        "--hyper needs {max_height} levels, got {}",
        plan.hyper.len()
    );
    let out_dir = args
        .out_dir
        .clone()
        .or((!args.quick).then(|| PathBuf::from("docs/results")));
    check_outputs(args.json.as_deref(), out_dir.as_deref())?;
    eprintln!(
        "tessera hyperopt: {} cells ({} tasks x SGD, Adam x heights {:?} x {} initial learning rates)",
        plan.cells(),
        plan.tasks.len(),
        plan.heights,
        plan.sgd_lrs.len()
    );
    let records = run_plan(&plan, true)?;
    let spread = spreads(&records);
    println!("{}", report::results_table(&records));
    println!("{}", report::spread_table(&spread));
    if let Some(path) = &args.json {
        crate::fsutil::write_json(path, &records)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = out_dir {
        report::write_report(&plan, &records, &dir, &command_line(&args))?;
        eprintln!(
            "wrote hyperopt.md, hyperopt_*.svg and hyperopt.json under {}",
            dir.display()
        );
    }
    Ok(())
}

fn command_line(args: &Args) -> String {
    let mut c = String::from("cargo run --release -- hyperopt");
    if args.quick {
        c.push_str(" --quick");
    }
    if args.seed != 0 {
        c.push_str(&format!(" --seed {}", args.seed));
    }
    if let Some(t) = &args.tasks {
        c.push_str(&format!(" --tasks {t}"));
    }
    if args.schedule != "exact" {
        c.push_str(&format!(" --schedule {}", args.schedule));
    }
    if args.learn != "all" {
        c.push_str(&format!(" --learn {}", args.learn));
    }
    if let Some(h) = &args.hyper {
        c.push_str(&format!(" --hyper {h}"));
    }
    if let Some(dir) = &args.out_dir {
        c.push_str(&format!(" --out-dir {}", dir.display()));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tasks_and_hyperoptimizers() {
        assert_eq!(
            parse_tasks("mlp,charlm").unwrap(),
            vec![Task::Mlp, Task::CharLm]
        );
        assert!(parse_tasks("mnist").is_err());
        let h = parse_hyper("sgd:0.01, adam:1e-3").unwrap();
        assert_eq!(h[0], Optimizer::Sgd(SgdConfig { lr: 0.01 }));
        assert_eq!(h[1].lr(), 1e-3);
        assert!(parse_hyper("adam").is_err());
        assert!(parse_hyper("sgd:-1").is_err());
        assert!(parse_hyper("rmsprop:0.1").is_err());
        assert_eq!(parse_schedule("lagged").ok(), Some(Schedule::Lagged));
        assert_eq!(parse_schedule("exact").ok(), Some(Schedule::Exact));
        assert!(parse_schedule("late").is_err());
        assert_eq!(parse_learn("lr").ok(), Some(Learn::LearningRate));
        assert_eq!(parse_learn("all").ok(), Some(Learn::All));
        assert!(parse_learn("betas").is_err());
    }
}
