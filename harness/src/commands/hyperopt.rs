//! `tessera hyperopt`: sensitivity of training to the initial learning rate, for towers of
//! hyperoptimizers of height 0-4 over SGD and Adam, on the paper's MLP on the UCI digits (and
//! optionally a synthetic MLP and the character LM), over several seeds.
//!
//! ```text
//! tessera hyperopt [--quick] [--json FILE] [--out-dir DIR] [--seed N] [--seeds K]
//!                  [--tasks digits,mlp,charlm] [--data FILE] [--steps N]
//!                  [--hyper KIND:LR,...] [--sgd-hyper KIND:LR,...] [--adam-hyper KIND:LR,...]
//!                  [--schedule exact|lagged] [--learn all|lr] [--threads N]
//! ```

use super::CliResult;
use crate::fsutil::check_outputs;
use crate::hyperopt::{report, run_plan, Family, Hyper, Plan, Task};
use anyhow::{bail, ensure, Context};
use std::path::PathBuf;
use tessera_kernels::optim::{AdamConfig, Learn, MomentumConfig, Optimizer, Schedule, SgdConfig};

/// Arguments of `tessera hyperopt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The quick study (digits, heights 0-2, three learning rates, one seed, 150 steps: seconds).
    #[arg(long)]
    pub quick: bool,
    /// Also write every record as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write hyperopt.md, hyperopt_*.svg and hyperopt.json here (default: docs/results for the
    /// full study, nothing for --quick).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// First seed of initial weights and minibatch order (seeds N, N+1, ...).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of seeds (default: 3 for the full study, 1 for --quick).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// The digits data set (default ../shared/data/digits.csv).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training steps of the digits task (default: 1500, --quick 150).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Cells trained in parallel (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Comma-separated tasks: digits, mlp, charlm (default digits).
    #[arg(long)]
    pub tasks: Option<String>,
    /// Comma-separated hyperoptimizer levels 1, 2, ... above both bases, as KIND:LR with KIND
    /// sgd, momentum or adam (default: SGD stacks, sgd:1e-2,sgd:1e-4,... above SGD and
    /// sgd:1e-5,sgd:1e-10,... above Adam).
    #[arg(long)]
    pub hyper: Option<String>,
    /// The levels above an SGD base only (as --hyper).
    #[arg(long)]
    pub sgd_hyper: Option<String>,
    /// The levels above an Adam base only (as --hyper).
    #[arg(long)]
    pub adam_hyper: Option<String>,
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
            "digits" => Ok(Task::Digits),
            "mlp" => Ok(Task::Mlp),
            "charlm" | "lm" => Ok(Task::CharLm),
            other => bail!("unknown task `{other}` (digits, mlp, charlm)"),
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
        plan.hyper = Hyper::both(parse_hyper(h)?);
    }
    if let Some(h) = &args.sgd_hyper {
        plan.hyper.sgd = parse_hyper(h)?;
    }
    if let Some(h) = &args.adam_hyper {
        plan.hyper.adam = parse_hyper(h)?;
    }
    if let Some(k) = args.seeds {
        ensure!(k != 0, "--seeds must be at least 1");
        plan.seeds = (0..k as u64).map(|i| args.seed + i).collect();
    }
    if let Some(path) = &args.data {
        plan.digits_path = path.clone();
    }
    if let Some(n) = args.steps {
        ensure!(n != 0, "--steps must be at least 1");
        plan.digits_steps = n;
    }
    plan.schedule = parse_schedule(&args.schedule)?;
    plan.learn = parse_learn(&args.learn)?;
    ensure!(args.threads != 0, "--threads must be at least 1");
    plan.threads = args.threads;
    let max_height = plan.heights.iter().copied().max().unwrap_or(0);
    for family in [Family::Sgd, Family::Adam] {
        let levels = plan.hyper.of(family).len();
        ensure!(
            levels >= max_height,
            "the towers over {} need {max_height} hyperoptimizer levels, got {levels}",
            family.name()
        );
    }
    if plan.tasks.contains(&Task::Digits) {
        // Read the data set now: a missing file is a clear error before any work.
        crate::hyperopt::digits::load(&plan.digits_path)?;
    }
    let out_dir = args
        .out_dir
        .clone()
        .or((!args.quick).then(|| PathBuf::from("docs/results")));
    check_outputs(args.json.as_deref(), out_dir.as_deref())?;
    eprintln!(
        "tessera hyperopt: {} cells ({} tasks x SGD, Adam x heights {:?} x {} initial learning rates x {} seeds)",
        plan.cells(),
        plan.tasks.len(),
        plan.heights,
        plan.sgd_lrs.len(),
        plan.seeds.len()
    );
    let records = run_plan(&plan, true)?;
    println!("{}", report::results_table(&records));
    println!(
        "{}",
        report::summary_table(&crate::hyperopt::summaries(&records))
    );
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
    if let Some(k) = args.seeds {
        c.push_str(&format!(" --seeds {k}"));
    }
    if let Some(n) = args.steps {
        c.push_str(&format!(" --steps {n}"));
    }
    if let Some(d) = &args.data {
        c.push_str(&format!(" --data {}", d.display()));
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
    if let Some(h) = &args.sgd_hyper {
        c.push_str(&format!(" --sgd-hyper {h}"));
    }
    if let Some(h) = &args.adam_hyper {
        c.push_str(&format!(" --adam-hyper {h}"));
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
            parse_tasks("digits,mlp,charlm").unwrap(),
            vec![Task::Digits, Task::Mlp, Task::CharLm]
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
