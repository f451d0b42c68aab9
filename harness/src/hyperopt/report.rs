//! Tables, SVG plots and the Markdown report of the hyperoptimizer study. Every verdict is
//! computed from the records ([`Trend`]); the fixed text names the setting, not the outcome.

use super::{summaries, Plan, Record, Summary, Trend};
use crate::plot::{Plot, Scale, Series};
use std::fmt::Write as _;
use std::path::Path;
use tessera_kernels::optim::{Learn, Optimizer, Schedule};

fn keys(records: &[Record]) -> Vec<(&'static str, &'static str)> {
    distinct(records.iter().map(|r| (r.task, r.optimizer)))
}

fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n.max(1) as f64
}

/// The headline statistic of a cell: test error where there is one, else the final loss.
fn headline(r: &Record) -> f64 {
    r.final_error.unwrap_or(r.final_loss)
}

/// Mean over seeds of each cell's final test error (final loss for the LM): one table per task
/// and optimizer, rows are heights, columns initial learning rates; `(d/n)` marks cells where
/// `d` of the `n` seeds diverged.
pub fn results_table(records: &[Record]) -> String {
    let mut out = String::new();
    for (task, opt) in keys(records) {
        let rs: Vec<&Record> = records
            .iter()
            .filter(|r| r.task == task && r.optimizer == opt)
            .collect();
        let lrs = distinct(rs.iter().map(|r| r.init_lr.to_bits()));
        let what = if rs.iter().all(|r| r.final_error.is_some()) {
            "test error"
        } else {
            "held-out loss"
        };
        let _ = writeln!(
            out,
            "\n**{task}, {opt}**: final {what}, mean over seeds, by initial learning rate\n"
        );
        let _ = write!(out, "| tower |");
        for lr in &lrs {
            let _ = write!(out, " {:.0e} |", f64::from_bits(*lr));
        }
        let _ = write!(out, "\n|---|");
        out.push_str(&"---:|".repeat(lrs.len()));
        out.push('\n');
        for h in distinct(rs.iter().map(|r| r.height)) {
            let name = rs
                .iter()
                .find(|r| r.height == h)
                .map_or(String::new(), |r| r.tower.clone());
            let _ = write!(out, "| {name} (h={h}) |");
            for lr in &lrs {
                let cell: Vec<&&Record> = rs
                    .iter()
                    .filter(|r| r.height == h && r.init_lr.to_bits() == *lr)
                    .collect();
                let div = cell.iter().filter(|r| r.diverged_at.is_some()).count();
                let _ = write!(out, " {:.3}", mean(cell.iter().map(|r| headline(r))));
                if div > 0 {
                    let _ = write!(out, " ({div}/{} div)", cell.len());
                }
                out.push_str(" |");
            }
            out.push('\n');
        }
    }
    out
}

fn pm(s: Option<super::OverSeeds>) -> String {
    s.map_or("-".into(), |s| {
        format!("{:.3} ± {:.3} [{:.3}, {:.3}]", s.mean, s.std, s.min, s.max)
    })
}

/// Every (task, optimizer, height): the spreads across initial learning rates, mean ± standard
/// deviation over seeds [smallest, largest].
pub fn summary_table(summary: &[Summary]) -> String {
    let mut out = String::from(
        "\n| task | optimizer | tower (height) | seeds | test-error spread | final-loss spread | best test error | worst test error | diverged |\n|---|---|---|---:|---|---|---|---|---:|\n",
    );
    for s in summary {
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}) | {} | {} | {} | {} | {} | {}/{} |",
            s.task,
            s.optimizer,
            s.tower,
            s.height,
            s.seeds,
            pm(s.error_range),
            pm(Some(s.loss_range)),
            pm(s.best_error),
            pm(s.worst_error),
            s.diverged,
            s.runs
        );
    }
    out
}

/// The verdict on one (task, optimizer): the trend of the mean spreads with height, and whether
/// the top's difference from height 0 exceeds the seeds' variation.
struct Verdict {
    task: &'static str,
    optimizer: &'static str,
    /// Error spread (or loss spread for the LM) mean and std per height, height order.
    means: Vec<(usize, f64, f64)>,
    trend: Trend,
    loss_trend: Trend,
    /// `|top - h0|` larger than the sum of their standard deviations over seeds.
    beyond_seeds: bool,
    diverged_above: usize,
    runs_above: usize,
}

fn verdicts(summary: &[Summary]) -> Vec<Verdict> {
    let pairs = distinct(summary.iter().map(|s| (s.task, s.optimizer)));
    pairs
        .into_iter()
        .map(|(task, optimizer)| {
            let rows: Vec<&Summary> = summary
                .iter()
                .filter(|s| s.task == task && s.optimizer == optimizer)
                .collect();
            let stat = |s: &Summary| s.error_range.unwrap_or(s.loss_range);
            let means: Vec<(usize, f64, f64)> = rows
                .iter()
                .map(|s| (s.height, stat(s).mean, stat(s).std))
                .collect();
            let m: Vec<f64> = means.iter().map(|x| x.1).collect();
            let l: Vec<f64> = rows.iter().map(|s| s.loss_range.mean).collect();
            let beyond_seeds = match (means.first(), means.last()) {
                (Some(a), Some(b)) => (a.1 - b.1).abs() > a.2 + b.2,
                _ => false,
            };
            let above = rows.iter().filter(|s| s.height >= 1);
            Verdict {
                task,
                optimizer,
                trend: Trend::of(&m),
                loss_trend: Trend::of(&l),
                beyond_seeds,
                diverged_above: above.clone().map(|s| s.diverged).sum(),
                runs_above: above.map(|s| s.runs).sum(),
                means,
            }
        })
        .collect()
}

fn final_plot(records: &[Record], task: &str, opt: &str) -> Plot {
    let rs: Vec<&Record> = records
        .iter()
        .filter(|r| r.task == task && r.optimizer == opt)
        .collect();
    let classifier = rs.iter().all(|r| r.final_error.is_some());
    let series = distinct(rs.iter().map(|r| r.height))
        .into_iter()
        .map(|h| {
            let lrs = distinct(
                rs.iter()
                    .filter(|r| r.height == h)
                    .map(|r| r.init_lr.to_bits()),
            );
            Series {
                label: format!("height {h}"),
                points: lrs
                    .into_iter()
                    .map(|lr| {
                        let cell = rs
                            .iter()
                            .filter(|r| r.height == h && r.init_lr.to_bits() == lr);
                        (f64::from_bits(lr), mean(cell.map(|r| headline(r))))
                    })
                    .collect(),
                dashed: h == 0,
            }
        })
        .collect();
    Plot {
        title: format!("{task}, {opt} stacks: final result vs initial learning rate"),
        x_label: "initial learning rate".into(),
        y_label: if classifier {
            "final test error (mean over seeds)".into()
        } else {
            "final held-out loss (mean over seeds)".into()
        },
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        series,
    }
}

/// Learned base learning rate over training (first seed), for decade initial learning rates, at
/// height 1 (solid) and the largest height (dashed).
fn lr_plot(records: &[Record], task: &str, opt: &str) -> Plot {
    let rs: Vec<&Record> = records
        .iter()
        .filter(|r| r.task == task && r.optimizer == opt)
        .collect();
    let first_seed = rs.first().map_or(0, |r| r.seed);
    let top = rs.iter().map(|r| r.height).max().unwrap_or(0);
    let decade = |lr: f64| (lr.log10() - lr.log10().round()).abs() < 1e-6;
    let mut series = Vec::new();
    for h in distinct([1, top].into_iter())
        .into_iter()
        .filter(|&h| h >= 1)
    {
        for r in rs
            .iter()
            .filter(|r| r.height == h && r.seed == first_seed && decade(r.init_lr))
        {
            series.push(Series {
                label: format!("h={h}, lr0={:.0e}", r.init_lr),
                points: r.trajectory.iter().map(|p| (p.step as f64, p.lr)).collect(),
                dashed: h != 1,
            });
        }
    }
    Plot {
        title: format!("{task}, {opt}: learned learning rate (seed {first_seed})"),
        x_label: "step".into(),
        y_label: "base learning rate (log; non-positive values not drawn)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        series,
    }
}

/// The spread over initial learning rates against height, mean over seeds, one line per
/// (task, optimizer).
fn spread_plot(verdicts: &[Verdict]) -> Plot {
    Plot {
        title: "spread over initial learning rates vs tower height".into(),
        x_label: "tower height".into(),
        y_label: "test-error spread, worst - best (mean over seeds)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        series: verdicts
            .iter()
            .map(|v| Series {
                label: format!("{}, {}", v.task, v.optimizer),
                points: v.means.iter().map(|m| (m.0 as f64, m.1)).collect(),
                dashed: v.optimizer == "Adam",
            })
            .collect(),
    }
}

/// Writes `hyperopt.md`, `hyperopt_*.svg` and `hyperopt.json` under `dir`.
pub fn write_report(
    plan: &Plan,
    records: &[Record],
    dir: &Path,
    command: &str,
) -> anyhow::Result<()> {
    crate::fsutil::prepare_output_dir(dir)?;
    let summary = summaries(records);
    let write =
        |name: &str, text: &str| crate::fsutil::write_atomic(&dir.join(name), text.as_bytes());
    let mut plots = vec!["hyperopt_spread.svg".to_string()];
    write(
        plots[0].as_str(),
        &spread_plot(&verdicts(&summary)).to_svg(),
    )?;
    for (task, opt) in keys(records) {
        let base = format!("hyperopt_{task}_{}", opt.to_lowercase());
        write(
            &format!("{base}_final.svg"),
            &final_plot(records, task, opt).to_svg(),
        )?;
        plots.push(format!("{base}_final.svg"));
        write(
            &format!("{base}_lr.svg"),
            &lr_plot(records, task, opt).to_svg(),
        )?;
        plots.push(format!("{base}_lr.svg"));
    }
    let spreads = super::spreads(records);
    let json = serde_json::json!({
        "command": command, "plan": plan, "summaries": summary, "spreads": spreads,
        "records": records,
    });
    // Compact: the trajectories make the pretty-printed file several megabytes.
    write("hyperopt.json", &serde_json::to_string(&json)?)?;
    write(
        "hyperopt.md",
        &super::report_text::markdown(plan, records, &summary, command, &plots),
    )?;
    Ok(())
}

/// The verdict section, computed from the summaries.
pub(super) fn verdict_section(summary: &[Summary]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| task | stacks | test-error spread by height (mean ± std over seeds) | trend of the mean | top vs height 0 | final-loss spread trend | runs diverged at height >= 1 |\n|---|---|---|---|---|---|---|"
    );
    for v in verdicts(summary) {
        let cells: Vec<String> = v
            .means
            .iter()
            .map(|m| format!("h{}: {:.3} ± {:.3}", m.0, m.1, m.2))
            .collect();
        let sep = if v.beyond_seeds {
            "differ by more than the seeds' spread"
        } else {
            "within the seeds' spread"
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | **{}** | {sep} | {} | {}/{} |",
            v.task,
            v.optimizer,
            cells.join("; "),
            v.trend.words(),
            v.loss_trend.words(),
            v.diverged_above,
            v.runs_above
        );
    }
    md
}

/// `SGD (kappa 1e-2) / SGD (1e-4) / ...` for the report.
pub(super) fn levels_text(levels: &[Optimizer]) -> String {
    levels
        .iter()
        .map(|o| format!("{} {:.0e}", o.name(), o.lr()))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `Exact` or `Lagged`, and what the levels learn.
pub(super) fn setting_words(plan: &Plan) -> (&'static str, &'static str) {
    (
        match plan.schedule {
            Schedule::Exact => "exact (the paper's order)",
            Schedule::Lagged => "lagged (one fused pass; hyperparameters one step behind)",
        },
        match plan.learn {
            Learn::All => "the learning rate and, for Adam, both betas",
            Learn::LearningRate => "the learning rate alone (`Adam^α`)",
        },
    )
}
