//! `tessera deviation`: the flash-vs-baseline numeric deviation study.

use super::CliResult;
use crate::deviation::{compare, headline_table, run_plan, write_report, Plan};
use anyhow::ensure;
use std::path::PathBuf;

/// Arguments of `tessera deviation`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The quick sweep (N from 256 to 16384, d = 64, normal inputs, the tile experiments at
    /// N = 4096; about a minute on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Also write the comparisons as JSON to this file: one record per flash run and baseline
    /// model of the same format and N, with `model`, `baseline_model`, `format`, `seq_len`, and
    /// the `flash` and `baseline` max abs deviations.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write tables, plots and JSON here (default: docs/results for the full sweep, nothing for
    /// --quick).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Seed of the inputs (the first of `--seeds`).
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Input seeds, 1..=16: `seed`, `seed + 1`, ... Every configuration runs on each.
    #[arg(long, default_value_t = crate::deviation::DEFAULT_SEEDS,
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=16))]
    pub seeds: u64,
    /// Sampled query rows per configuration, 1..=4096 (default 8 quick, 16 full). Each row is an
    /// exact multi-precision computation per input group: 4096 already takes hours.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_ROWS as u64))]
    pub rows: Option<usize>,
}

/// The most `--rows` a sweep takes (see its help).
pub const MAX_ROWS: usize = 4096;

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    let mut plan = if args.quick {
        Plan::quick(args.seed)
    } else {
        Plan::full(args.seed)
    };
    if let Some(rows) = args.rows {
        ensure!(
            (1..=MAX_ROWS).contains(&rows),
            "--rows {rows} is outside 1..={MAX_ROWS}"
        );
        plan.rows = rows;
    }
    plan.seeds = args.seeds;
    let out_dir = args
        .out_dir
        .clone()
        .or((!args.quick).then(|| PathBuf::from("docs/results")));
    crate::fsutil::check_outputs(args.json.as_deref(), out_dir.as_deref())?;
    let records = run_plan(&plan, true)?;
    println!("{}", headline_table(&records));
    if let Some(path) = &args.json {
        crate::fsutil::write_json(path, &compare(&records))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = out_dir {
        let command = command_line(&args);
        write_report(&records, &dir, &command)?;
        eprintln!("wrote tables, plots and JSON under {}", dir.display());
    }
    Ok(())
}

fn command_line(args: &Args) -> String {
    let mut c = String::from("cargo run --release -- deviation");
    if args.quick {
        c.push_str(" --quick");
    }
    if args.seed != 2024 {
        c.push_str(&format!(" --seed {}", args.seed));
    }
    if let Some(rows) = args.rows {
        c.push_str(&format!(" --rows {rows}"));
    }
    if args.seeds != crate::deviation::DEFAULT_SEEDS {
        c.push_str(&format!(" --seeds {}", args.seeds));
    }
    if let Some(dir) = &args.out_dir {
        c.push_str(&format!(" --out-dir {}", dir.display()));
    }
    c
}

/// The default job of `cargo run --release`: the quick sweep, its headline table on stdout.
pub fn default_job() -> CliResult {
    eprintln!("tessera: quick deviation study (flash vs baseline vs the exact oracle); see --help");
    main(Args {
        quick: true,
        json: None,
        out_dir: None,
        seed: 2024,
        seeds: crate::deviation::DEFAULT_SEEDS,
        rows: None,
    })
}
