//! Tables, SVG plots and the Markdown report of the hyperoptimizer study.

use super::{spreads, Plan, Record, Spread};
use crate::plot::{Plot, Scale, Series};
use std::fmt::Write as _;
use std::path::Path;
use tessera_kernels::optim::{Learn, Schedule};

fn keys(records: &[Record]) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in records {
        if !out.contains(&(r.task, r.optimizer)) {
            out.push((r.task, r.optimizer));
        }
    }
    out
}

fn distinct<T: PartialEq + Copy>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn cell_text(r: &Record) -> String {
    let mut s = format!("{:.3}", r.final_loss);
    if let Some(a) = r.final_accuracy {
        let _ = write!(s, " ({:.0}%)", 100.0 * a);
    }
    if let Some(at) = r.diverged_at {
        let _ = write!(s, " div@{at}");
    }
    s
}

/// Final held-out loss (and accuracy) per cell: one table per task and optimizer, rows are
/// heights, columns initial learning rates.
pub fn results_table(records: &[Record]) -> String {
    let mut out = String::new();
    for (task, opt) in keys(records) {
        let rs: Vec<&Record> = records
            .iter()
            .filter(|r| r.task == task && r.optimizer == opt)
            .collect();
        let lrs = distinct(rs.iter().map(|r| r.init_lr.to_bits()));
        let heights = distinct(rs.iter().map(|r| r.height));
        let _ = writeln!(
            out,
            "\n**{task}, {opt}**: final held-out loss (accuracy) by initial learning rate\n"
        );
        let _ = write!(out, "| tower |");
        for lr in &lrs {
            let _ = write!(out, " {:.0e} |", f64::from_bits(*lr));
        }
        let _ = write!(out, "\n|---|");
        out.push_str(&"---|".repeat(lrs.len()));
        out.push('\n');
        for h in heights {
            let name = rs
                .iter()
                .find(|r| r.height == h)
                .map_or(String::new(), |r| r.tower.clone());
            let _ = write!(out, "| {name} (h={h}) |");
            for lr in &lrs {
                match rs
                    .iter()
                    .find(|r| r.height == h && r.init_lr.to_bits() == *lr)
                {
                    Some(r) => {
                        let _ = write!(out, " {} |", cell_text(r));
                    }
                    None => out.push_str(" |"),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The spread of final losses across initial learning rates, per task, optimizer and height.
pub fn spread_table(spread: &[Spread]) -> String {
    let mut out = String::from(
        "\n| task | optimizer | height | best | worst | spread (worst - best) | std | diverged |\n|---|---|---|---|---|---|---|---|\n",
    );
    for s in spread {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3} | **{:.3}** | {:.3} | {}/{} |",
            s.task, s.optimizer, s.height, s.best, s.worst, s.range, s.std, s.diverged, s.runs
        );
    }
    out
}

/// For each task and optimizer: the height-0 spread and the largest spread at height >= 1.
fn verdicts(spread: &[Spread]) -> Vec<(&'static str, &'static str, f64, f64, usize)> {
    let mut out = Vec::new();
    for s0 in spread.iter().filter(|s| s.height == 0) {
        let above = spread
            .iter()
            .filter(|s| s.task == s0.task && s.optimizer == s0.optimizer && s.height >= 1);
        let (worst, at) = above.fold((f64::NEG_INFINITY, 0), |(w, at), s| {
            if s.range > w {
                (s.range, s.height)
            } else {
                (w, at)
            }
        });
        out.push((s0.task, s0.optimizer, s0.range, worst, at));
    }
    out
}

fn final_loss_plot(records: &[Record], task: &str, opt: &str) -> Plot {
    let heights = distinct(
        records
            .iter()
            .filter(|r| r.task == task && r.optimizer == opt)
            .map(|r| r.height),
    );
    Plot {
        title: format!("{task}, {opt}: final loss vs initial learning rate"),
        x_label: "initial learning rate".into(),
        y_label: "final held-out loss (capped at chance)".into(),
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        series: heights
            .into_iter()
            .map(|h| {
                let rs = records
                    .iter()
                    .filter(|r| r.task == task && r.optimizer == opt && r.height == h);
                Series {
                    label: format!("height {h}"),
                    points: rs.map(|r| (r.init_lr, r.final_loss)).collect(),
                    dashed: h == 0,
                }
            })
            .collect(),
    }
}

/// Learned base learning rate over training, for decade initial learning rates, at height 1
/// (solid) and the largest height (dashed).
fn lr_plot(records: &[Record], task: &str, opt: &str) -> Plot {
    let rs: Vec<&Record> = records
        .iter()
        .filter(|r| r.task == task && r.optimizer == opt)
        .collect();
    let top = rs.iter().map(|r| r.height).max().unwrap_or(0);
    let decade = |lr: f64| (lr.log10() - lr.log10().round()).abs() < 1e-6;
    let mut series = Vec::new();
    for h in distinct([1, top].into_iter())
        .into_iter()
        .filter(|&h| h >= 1)
    {
        for r in rs.iter().filter(|r| r.height == h && decade(r.init_lr)) {
            series.push(Series {
                label: format!("h={h}, lr0={:.0e}", r.init_lr),
                points: r.trajectory.iter().map(|p| (p.step as f64, p.lr)).collect(),
                dashed: h != 1,
            });
        }
    }
    Plot {
        title: format!("{task}, {opt}: learned learning rate"),
        x_label: "step".into(),
        y_label: "base learning rate (log; non-positive values not drawn)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        series,
    }
}

/// Adam's learned `1 - beta1` and `1 - beta2` at height 1, for decade initial learning rates.
fn beta_plot(records: &[Record], task: &str) -> Plot {
    let decade = |lr: f64| (lr.log10() - lr.log10().round()).abs() < 1e-6;
    let mut series = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.task == task && r.optimizer == "Adam" && r.height == 1 && decade(r.init_lr))
    {
        for (which, dashed) in [(0, false), (1, true)] {
            series.push(Series {
                label: format!("1-beta{} lr0={:.0e}", which + 1, r.init_lr),
                points: r
                    .trajectory
                    .iter()
                    .filter_map(|p| {
                        p.betas
                            .map(|b| (p.step as f64, 1.0 - if which == 0 { b.0 } else { b.1 }))
                    })
                    .collect(),
                dashed,
            });
        }
    }
    Plot {
        title: format!("{task}, Adam / Adam: learned 1 - beta (height 1)"),
        x_label: "step".into(),
        y_label: "1 - beta (log)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        series,
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
    let spread = spreads(records);
    let write =
        |name: &str, text: &str| crate::fsutil::write_atomic(&dir.join(name), text.as_bytes());
    let mut plots = Vec::new();
    for (task, opt) in keys(records) {
        let base = format!("hyperopt_{task}_{}", opt.to_lowercase());
        write(
            &format!("{base}_final.svg"),
            &final_loss_plot(records, task, opt).to_svg(),
        )?;
        plots.push(format!("{base}_final.svg"));
        write(
            &format!("{base}_lr.svg"),
            &lr_plot(records, task, opt).to_svg(),
        )?;
        plots.push(format!("{base}_lr.svg"));
        // The betas move only where they are learned.
        if opt == "Adam" && plan.learn == Learn::All {
            write(
                &format!("hyperopt_{task}_adam_betas.svg"),
                &beta_plot(records, task).to_svg(),
            )?;
            plots.push(format!("hyperopt_{task}_adam_betas.svg"));
        }
    }
    let json = serde_json::json!({ "command": command, "plan": plan, "spreads": spread, "records": records });
    // Compact: the trajectories make the pretty-printed file several megabytes.
    write("hyperopt.json", &serde_json::to_string(&json)?)?;
    write(
        "hyperopt.md",
        &markdown(plan, records, &spread, command, &plots),
    )?;
    Ok(())
}

fn markdown(
    plan: &Plan,
    records: &[Record],
    spread: &[Spread],
    command: &str,
    plots: &[String],
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Hyperoptimizer towers: sensitivity to the initial learning rate\n"
    );
    let _ = writeln!(
        md,
        "Written by `{command}` (seed {}, {} cells, {:.0} s of training).\n",
        plan.seed,
        records.len(),
        records.iter().map(|r| r.seconds).sum::<f64>()
    );
    let _ = writeln!(
        md,
        "*Gradient Descent: The Ultimate Optimizer* (Chandra et al., NeurIPS 2022) claims that as \
         towers of hyperoptimizers grow, the final result becomes much less sensitive to the initial \
         hyperparameters. This study trains each task from the same initial weights on the same \
         minibatches with the base optimizer's learning rate started at {} values spanning four \
         orders of magnitude (SGD {:.0e} to {:.0e}; Adam {:.0e} to {:.0e}), plain (height 0) and \
         under towers of height {}, and compares the spread of the final held-out loss across the \
         initial learning rates.\n",
        plan.sgd_lrs.len(),
        plan.sgd_lrs.first().copied().unwrap_or(0.0),
        plan.sgd_lrs.last().copied().unwrap_or(0.0),
        plan.adam_lrs.first().copied().unwrap_or(0.0),
        plan.adam_lrs.last().copied().unwrap_or(0.0),
        plan.heights.iter().filter(|&&h| h > 0).map(|h| h.to_string()).collect::<Vec<_>>().join(", "),
    );
    let _ = writeln!(md, "## Verdict\n");
    let _ = writeln!(
        md,
        "| task | optimizer | spread at height 0 | spread at height 1, 2, ... (ratio to height 0) | runs diverged at height >= 1 | sensitivity |\n|---|---|---|---|---|---|"
    );
    for (task, opt, s0, _, _) in verdicts(spread) {
        let above: Vec<&Spread> = spread
            .iter()
            .filter(|s| s.task == task && s.optimizer == opt && s.height >= 1)
            .collect();
        let cells: Vec<String> = above
            .iter()
            .map(|s| format!("{:.3} ({:.2})", s.range, s.range / s0))
            .collect();
        let diverged: usize = above.iter().map(|s| s.diverged).sum();
        let runs: usize = above.iter().map(|s| s.runs).sum();
        let worst_ratio = above.iter().map(|s| s.range / s0).fold(0.0f64, f64::max);
        let word = if diverged > 0 {
            "runs diverged: a small spread can mean all at chance"
        } else if worst_ratio < 0.5 {
            "falls at every height, as the paper claims"
        } else if above.iter().any(|s| s.range / s0 < 0.5) {
            "falls at some heights"
        } else {
            "does not fall"
        };
        let _ = writeln!(
            md,
            "| {task} | {opt} | {s0:.3} | {} | {diverged}/{runs} | {word} |",
            cells.join(", ")
        );
    }
    let _ = writeln!(md, "\nSpread = worst minus best final loss over the initial learning rates (diverged runs count as the chance loss).\n");
    let _ = writeln!(md, "## Discussion\n");
    for (task, opt, s0, _, _) in verdicts(spread) {
        let rows: Vec<&Spread> = spread
            .iter()
            .filter(|s| s.task == task && s.optimizer == opt)
            .collect();
        let (Some(h0), Some(h1), Some(top)) = (
            rows.iter().find(|s| s.height == 0),
            rows.iter().find(|s| s.height == 1),
            rows.last(),
        ) else {
            continue;
        };
        let above: Vec<&&Spread> = rows.iter().filter(|s| s.height >= 1).collect();
        let monotone = above.windows(2).all(|w| w[1].range <= w[0].range);
        let listed: Vec<String> = above.iter().map(|s| format!("{:.3}", s.range)).collect();
        let trend = if top.height > 1 && monotone && top.range < 0.8 * h1.range {
            format!(
                "and keeps falling as the tower grows ({})",
                listed.join(", ")
            )
        } else if top.height > 1 {
            format!(
                "but does not keep falling with height (heights 1..{}: {}): the paper's steady \
                 trend with height is not reproduced here",
                top.height,
                listed.join(", ")
            )
        } else {
            String::new()
        };
        let towers: Vec<&Record> = records
            .iter()
            .filter(|r| r.task == task && r.optimizer == opt && r.height >= 1)
            .collect();
        let best_above = towers
            .iter()
            .map(|r| r.final_loss)
            .fold(f64::INFINITY, f64::min);
        let worst = towers
            .iter()
            .copied()
            .max_by(|a, b| a.final_loss.total_cmp(&b.final_loss));
        let worst_text = worst.map_or(String::new(), |r| {
            format!("{} from {:.0e} ({:.3})", r.tower, r.init_lr, r.final_loss)
        });
        let _ = writeln!(
            md,
            "- {task}, {opt}: the spread drops from {s0:.3} at height 0 to {:.3} at height 1 \
             {trend}. The best plain run (a well-chosen learning rate) reaches {:.3}, the worst \
             plain run {:.3}; the best tower run reaches {best_above:.3} ({}), the worst is \
             {worst_text}.",
            h1.range,
            h0.best,
            h0.worst,
            if best_above <= h0.best {
                "as good as the tuned plain run"
            } else {
                "worse than the tuned plain run: here the towers buy robustness, not a better optimum"
            }
        );
    }
    let _ = writeln!(
        md,
        "- The first step of every run uses the initial learning rate unchanged: a hypergradient \
         needs the gradient at the point the first step reached. A learning rate that ruins the \
         network in one step cannot be rescued. Adam moves every weight by about its learning rate \
         on that step whatever the gradient, so its grid sits a decade lower than SGD's; in a trial \
         run with Adam at 1e0 the MLP's ReLUs died on step 1, the hypergradients were zero from \
         then on, and every height ended at chance.\n\
         - How the hyperoptimizer levels were chosen: once, on the quick MLP study, from four \
         settings: Adam at 1e-2 on every level (spread at height 3 rose to 0.37 for SGD and 1.09 \
         for Adam: a level-2 step of 1e-2 moves level 1's learning rate of 1e-2 by 100% per \
         step), Adam 1e-2/1e-4/1e-6 (kept), Adam 3e-3/3e-5/3e-7 (spreads 0.03-0.28) and SGD at \
         1e-2 on every level (most runs at height >= 2 diverged: an SGD hyperoptimizer's step grows \
         with the hypergradient, which is large exactly when training is unstable). The same \
         levels are then used for every cell and both tasks.\n"
    );
    let _ = writeln!(md, "## Setup\n");
    let hyper: Vec<String> = plan
        .hyper
        .iter()
        .map(|o| format!("{} (lr {:e})", o.name(), o.lr()))
        .collect();
    let _ = writeln!(
        md,
        "- Towers: base / level 1 / level 2 / level 3 with levels {} (PyTorch-default betas), the \
         same for every cell; the base is SGD or Adam (betas 0.9, 0.999, eps 1e-8) at the cell's \
         learning rate. {} the top level is fixed. Kernels: `tessera_kernels::optim::Tower`, \
         whose hypergradients are checked against a 512-bit reference (`harness/tests/hypergradients.rs`). \
         Schedule: {} (`Exact`: the paper's order; `Lagged`: one fused pass per step, each \
         hypergradient applied one step later; what each costs: `docs/results/hyperopt-cost.md`).",
        hyper.join(" / "),
        match plan.learn {
            Learn::All => "A level learns the learning rate of the level below and, for Adam, its \
                           betas (through their logits);",
            Learn::LearningRate => "A level learns only the learning rate of the level below \
                                    (`--learn lr`: the paper's `Adam^α`; the betas stay 0.9, 0.999);",
        },
        match plan.schedule {
            Schedule::Exact => "Exact",
            Schedule::Lagged => "Lagged",
        }
    );
    let _ = writeln!(
        md,
        "- (a) `mlp`: a 16-64-64-8 ReLU MLP (the harness's own f32 forward/backward), synthetic \
         classification (labels from a random teacher network, 5% label noise), {} training and {} \
         test examples, minibatch {}, {} steps; chance loss ln 8 = 2.079.",
        plan.mlp_train, plan.mlp_test, plan.mlp_batch, plan.mlp_steps
    );
    let _ = writeln!(
        md,
        "- (b) `charlm`: the character transformer of `harness/src/train` ({} layers, width {}, \
         sequences of {} tokens, batch {}, last-exit loss only, no layer dropout) on the synthetic \
         corpus ({} characters), {} steps; loss on {} validation windows; chance loss ln(vocabulary).",
        plan.lm.layers, plan.lm.dim, plan.lm.seq_len, plan.lm.batch, plan.lm.corpus_chars, plan.lm_steps, plan.lm.eval_windows
    );
    let _ = writeln!(
        md,
        "\n## Spread across initial learning rates\n{}",
        spread_table(spread)
    );
    let _ = writeln!(md, "## Final loss per cell\n{}", results_table(records));
    let _ = writeln!(md, "\n## Learned hyperparameters\n");
    let _ = writeln!(
        md,
        "Final base learning rate per cell (initial -> final):\n"
    );
    for (task, opt) in keys(records) {
        let _ = write!(md, "- {task}, {opt}:");
        for r in records
            .iter()
            .filter(|r| r.task == task && r.optimizer == opt && r.height > 0)
        {
            let _ = write!(md, " h{} {:.0e}->{:.2e};", r.height, r.init_lr, r.final_lr);
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\nFull trajectories (learning rate, betas, level-1 learning rate, minibatch loss) are in `hyperopt.json`.\n");
    let _ = writeln!(md, "## Plots\n");
    for p in plots {
        let _ = writeln!(md, "![{p}]({p})\n");
    }
    md
}
