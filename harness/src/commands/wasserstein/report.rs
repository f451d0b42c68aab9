//! The analysis and report of `tessera wasserstein`: each arm's rate of change, intervals across
//! seeds, the paper's ratios with computed verdicts, and wasserstein.md, JSON and SVG plots.
//!
//! The rate of change is the least-squares slope of the distance against the training step over
//! every logged step of the run, step 0 included. A slope in distance per step is what "grows 2-5
//! times more slowly" compares: the ratio of two such slopes says how many times faster one
//! distance grows than the other, whatever its level at the start (the other initialisation starts
//! far away; the others start at 0).

use super::{Args, ArmKind, DistanceRecord, SeedResult, Setting, ARMS, MATRICES, NORM_GAINS, RUNS};
use crate::plot::{Plot, Scale, Series};
use crate::stats::{least_squares_slope, Interval};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// The two metrics, as named in the JSON.
const METRICS: [&str; 2] = ["w1", "max_diff"];

/// The paper's ratio of the precision reference's rate to flash's.
const PAPER_PRECISION_RATIO: (f64, f64) = (2.0, 5.0);

/// The ratios the paper reports: (numerator arm, denominator arm), both indices into [`ARMS`].
const RATIOS: [(usize, usize); 6] = [(0, 3), (1, 3), (1, 4), (0, 4), (2, 3), (2, 4)];

fn metric(r: &DistanceRecord, m: &str) -> f64 {
    if m == "w1" {
        r.w1
    } else {
        r.max_diff
    }
}

/// One arm's rate of change for one group and metric.
#[derive(Clone, Debug, Serialize)]
pub struct SlopeRow {
    /// The arm.
    pub arm: &'static str,
    /// [`MATRICES`], [`NORM_GAINS`] or a tensor.
    pub tensor: String,
    /// `w1` or `max_diff`.
    pub metric: &'static str,
    /// Distance per training step, one per seed (seed order).
    pub per_seed: Vec<f64>,
    /// Mean with its 95% t-interval across seeds.
    pub interval: Option<Interval>,
    /// The distance at the last step, mean over seeds.
    pub final_mean: f64,
}

/// A ratio of two arms' rates, seed by seed, with its interval and the verdict against the paper.
#[derive(Clone, Debug, Serialize)]
pub struct RatioRow {
    /// Numerator arm (a reference).
    pub numerator: &'static str,
    /// Denominator arm (flash vs baseline).
    pub denominator: &'static str,
    /// Pooled group.
    pub tensor: &'static str,
    /// Metric.
    pub metric: &'static str,
    /// The ratio of the two slopes of each seed.
    pub per_seed: Vec<f64>,
    /// Geometric mean with the exp of the t-interval of the log ratios (when every ratio is
    /// positive), else the arithmetic mean and its t-interval.
    pub interval: Option<Interval>,
    /// `geometric` or `arithmetic`.
    pub interval_kind: &'static str,
    /// What the paper reports for it.
    pub paper: &'static str,
    /// The verdict computed from the interval.
    pub verdict: String,
}

/// Per seed: the runs' final losses and the fp16 run's loss scaling.
#[derive(Clone, Debug, Serialize)]
pub struct SeedSummary {
    /// The seed.
    pub seed: u64,
    /// Final training loss per run (`RUNS` order).
    pub final_loss: Vec<(&'static str, f64)>,
    /// Steps the fp16 run skipped on overflow.
    pub fp16_skipped_steps: usize,
    /// The fp16 run's final loss scale.
    pub fp16_final_scale: f32,
}

/// The whole study as written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Study {
    /// The command that made it.
    pub command: String,
    /// The setting, in words and numbers.
    pub setting: serde_json::Value,
    /// Per seed.
    pub seeds: Vec<SeedSummary>,
    /// Rates of change of the pooled groups.
    pub slopes: Vec<SlopeRow>,
    /// Rates of change per tensor (Wasserstein-1 only).
    pub tensor_slopes: Vec<SlopeRow>,
    /// The paper's ratios.
    pub ratios: Vec<RatioRow>,
    /// Every distance.
    pub records: Vec<DistanceRecord>,
}

fn slope_row(
    records: &[DistanceRecord],
    seeds: &[u64],
    arm: &'static str,
    tensor: &str,
    metric_name: &'static str,
) -> SlopeRow {
    let mut per_seed = Vec::new();
    let mut finals = Vec::new();
    for &seed in seeds {
        let pts: Vec<&DistanceRecord> = records
            .iter()
            .filter(|r| r.seed == seed && r.arm == arm && r.tensor == tensor)
            .collect();
        let x: Vec<f64> = pts.iter().map(|r| r.step as f64).collect();
        let y: Vec<f64> = pts.iter().map(|r| metric(r, metric_name)).collect();
        per_seed.push(least_squares_slope(&x, &y).unwrap_or(f64::NAN));
        finals.push(y.last().copied().unwrap_or(f64::NAN));
    }
    SlopeRow {
        arm,
        tensor: tensor.into(),
        metric: metric_name,
        interval: Interval::t(&per_seed),
        final_mean: finals.iter().sum::<f64>() / finals.len().max(1) as f64,
        per_seed,
    }
}

fn verdict(numerator: &str, i: Option<Interval>) -> (&'static str, String) {
    let Some(i) = i else {
        return ("", "no interval (a slope was not finite)".into());
    };
    let faster = if i.lo > 1.0 {
        "flash's distance grows more slowly than this reference's (interval above 1)"
    } else if i.hi < 1.0 {
        "flash's distance grows faster than this reference's (interval below 1)"
    } else {
        "no difference resolved (interval contains 1)"
    };
    if numerator == ARMS[2].name {
        return ("flash's rate <= other init's (ratio >= 1)", faster.into());
    }
    let (lo, hi) = PAPER_PRECISION_RATIO;
    let range = if i.hi < lo {
        format!("below the paper's {lo}-{hi}x (whole interval)")
    } else if i.lo > hi {
        format!("above the paper's {lo}-{hi}x (whole interval)")
    } else if i.lo >= lo && i.hi <= hi {
        format!("inside the paper's {lo}-{hi}x (whole interval)")
    } else if i.mean >= lo && i.mean <= hi {
        format!("estimate inside the paper's {lo}-{hi}x, interval wider than it")
    } else {
        format!("estimate outside the paper's {lo}-{hi}x, interval overlaps it")
    };
    ("2-5x (fp16 vs fp32)", format!("{range}; {faster}"))
}

impl Study {
    /// Analyses the seeds' records.
    pub fn new(s: &Setting, args: &Args, results: Vec<SeedResult>) -> anyhow::Result<Study> {
        let seeds: Vec<u64> = results.iter().map(|r| r.seed).collect();
        let mut records = Vec::new();
        let mut summaries = Vec::new();
        for r in results {
            summaries.push(SeedSummary {
                seed: r.seed,
                final_loss: RUNS.iter().map(|x| x.name).zip(r.final_loss).collect(),
                fp16_skipped_steps: r.fp16_skipped_steps,
                fp16_final_scale: r.fp16_final_scale,
            });
            records.extend(r.records);
        }
        let mut slopes = Vec::new();
        for group in [MATRICES, NORM_GAINS] {
            for m in METRICS {
                for arm in &ARMS {
                    slopes.push(slope_row(&records, &seeds, arm.name, group, m));
                }
            }
        }
        let names = crate::train::tensor_names(&s.base.model);
        let mut tensor_slopes = Vec::new();
        for (name, _) in &names {
            for arm in &ARMS {
                tensor_slopes.push(slope_row(&records, &seeds, arm.name, name, "w1"));
            }
        }
        let mut ratios = Vec::new();
        for group in [MATRICES, NORM_GAINS] {
            for m in METRICS {
                for &(n, d) in &RATIOS {
                    let find = |arm: &str| {
                        slopes
                            .iter()
                            .find(|r| r.arm == arm && r.tensor == group && r.metric == m)
                    };
                    let (Some(a), Some(b)) = (find(ARMS[n].name), find(ARMS[d].name)) else {
                        continue;
                    };
                    let per_seed: Vec<f64> = a
                        .per_seed
                        .iter()
                        .zip(&b.per_seed)
                        .map(|(x, y)| x / y)
                        .collect();
                    let (interval, kind) = match Interval::t_log(&per_seed) {
                        Some(i) => (Some(i), "geometric"),
                        None => (Interval::t(&per_seed), "arithmetic"),
                    };
                    let (paper, v) = verdict(ARMS[n].name, interval);
                    ratios.push(RatioRow {
                        numerator: ARMS[n].name,
                        denominator: ARMS[d].name,
                        tensor: group,
                        metric: m,
                        per_seed,
                        interval,
                        interval_kind: kind,
                        paper,
                        verdict: v,
                    });
                }
            }
        }
        let b = &s.base;
        let setting = serde_json::json!({
            "corpus": s.corpus,
            "training_tokens": s.tokens,
            "model": format!("{:?}", b.model),
            "seq_len": b.seq_len,
            "batch": b.batch,
            "steps": b.steps,
            "lr": b.lr.to_string(),
            "warmup": b.warmup,
            "grad_clip": b.grad_clip,
            "optimizer": "Adam (beta1 0.9, beta2 0.95, eps 1e-8), linear warm-up then cosine to 10%",
            "logged_steps": s.logged_steps(),
            "seeds": seeds,
            "other_init_seed_offset": super::OTHER_INIT,
            "flash_tiles": "Br = 16, Bc = 8 (forward); backward: the recomputing attention_backward",
            "runs": RUNS.iter().map(|r| serde_json::json!({
                "name": r.name, "flash": r.flash, "precision": format!("{:?}", r.precision),
                "other_init": r.other_init})).collect::<Vec<_>>(),
            "arms": ARMS.iter().map(|a| serde_json::json!({
                "name": a.name, "run": RUNS[a.run].name, "against": RUNS[a.against].name}))
                .collect::<Vec<_>>(),
            "slope": "least-squares slope of the distance against the step over every logged step",
        });
        Ok(Study {
            command: command(args),
            setting,
            seeds: summaries,
            slopes,
            tensor_slopes,
            ratios,
            records,
        })
    }

    fn slope(&self, arm: &str, tensor: &str, metric: &str) -> Option<&SlopeRow> {
        self.slopes
            .iter()
            .chain(&self.tensor_slopes)
            .find(|r| r.arm == arm && r.tensor == tensor && r.metric == metric)
    }

    /// The rates of change of the pooled groups, as Markdown.
    pub fn slope_table(&self) -> String {
        let mut s = String::from(
            "| group | metric | arm | slope per step, mean [95% t-interval] | distance at the end |\n\
             |---|---|---|---|---:|\n",
        );
        for r in &self.slopes {
            let label = ARMS
                .iter()
                .find(|a| a.name == r.arm)
                .map_or("", |a| a.label);
            let _ = writeln!(
                s,
                "| {} | {} | {label} | {} | {:.3e} |",
                r.tensor,
                r.metric,
                fmt_interval(r.interval, "e"),
                r.final_mean
            );
        }
        s
    }

    fn ratio_table(&self) -> String {
        let mut s = String::from(
            "| group | metric | ratio of rates | per seed | estimate [95% interval] | paper | verdict |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for r in &self.ratios {
            let label = |n: &str| ARMS.iter().find(|a| a.name == n).map_or("", |a| a.label);
            let seeds: Vec<String> = r.per_seed.iter().map(|v| format!("{v:.2}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | ({}) / ({}) | {} | {} ({}) | {} | {} |",
                r.tensor,
                r.metric,
                label(r.numerator),
                label(r.denominator),
                seeds.join(", "),
                fmt_interval(r.interval, "f"),
                r.interval_kind,
                r.paper,
                r.verdict
            );
        }
        s
    }

    fn tensor_table(&self) -> String {
        let mut s = String::from("| tensor |");
        for a in &ARMS {
            let _ = write!(s, " {} |", a.label);
        }
        s.push_str(" (fp16)/(flash fp32) | (bf16)/(flash bf16) |\n|---|");
        s.push_str(&"---:|".repeat(ARMS.len() + 2));
        s.push('\n');
        let names: Vec<&String> = self
            .tensor_slopes
            .iter()
            .filter(|r| r.arm == ARMS[0].name)
            .map(|r| &r.tensor)
            .collect();
        let mean = |arm: &str, t: &str| {
            self.slope(arm, t, "w1")
                .and_then(|r| r.interval)
                .map_or(f64::NAN, |i| i.mean)
        };
        for t in names {
            let _ = write!(s, "| {t} |");
            for a in &ARMS {
                let _ = write!(s, " {:.2e} |", mean(a.name, t));
            }
            let _ = writeln!(
                s,
                " {:.1} | {:.1} |",
                mean(ARMS[0].name, t) / mean(ARMS[3].name, t),
                mean(ARMS[1].name, t) / mean(ARMS[4].name, t)
            );
        }
        s
    }

    /// The mean over seeds of one arm's distance at each logged step.
    fn mean_series(&self, arm: &str, tensor: &str, metric_name: &str) -> Vec<(f64, f64)> {
        let mut steps: Vec<usize> = self.records.iter().map(|r| r.step).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
            .into_iter()
            .map(|step| {
                let v: Vec<f64> = self
                    .records
                    .iter()
                    .filter(|r| r.step == step && r.arm == arm && r.tensor == tensor)
                    .map(|r| metric(r, metric_name))
                    .collect();
                (step as f64, v.iter().sum::<f64>() / v.len().max(1) as f64)
            })
            .collect()
    }

    fn plot(&self, tensor: &str, metric_name: &str, title: &str) -> String {
        Plot {
            title: title.into(),
            x_label: "training step".into(),
            y_label: if metric_name == "w1" {
                "Wasserstein-1 (mean over seeds)".into()
            } else {
                "max |difference| (mean over seeds)".into()
            },
            x_scale: Scale::Linear,
            y_scale: Scale::Log,
            series: ARMS
                .iter()
                .map(|a| Series {
                    label: a.label.into(),
                    points: self.mean_series(a.name, tensor, metric_name),
                    dashed: a.kind == ArmKind::Flash,
                })
                .collect(),
        }
        .to_svg()
    }

    /// Writes wasserstein.md, wasserstein.json and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        crate::fsutil::prepare_output_dir(dir)?;
        let md = super::report_md::markdown(self);
        let json = self.to_json()?;
        let plots = [
            (
                MATRICES,
                "w1",
                "wasserstein_w1_matrices.svg",
                "W1 of all matrices",
            ),
            (
                MATRICES,
                "max_diff",
                "wasserstein_maxdiff_matrices.svg",
                "Max difference of all matrices",
            ),
            (
                NORM_GAINS,
                "w1",
                "wasserstein_w1_norm_gains.svg",
                "W1 of all norm gains",
            ),
        ];
        for (t, m, file, title) in plots {
            crate::fsutil::write_atomic(&dir.join(file), self.plot(t, m, title).as_bytes())?;
        }
        for (name, body) in [("wasserstein.md", md), ("wasserstein.json", json)] {
            crate::fsutil::write_atomic(&dir.join(name), body.as_bytes())?;
        }
        Ok(())
    }

    /// The study as JSON: pretty-printed, except one line per distance record (there are
    /// thousands).
    pub fn to_json(&self) -> anyhow::Result<String> {
        let mut lines = Vec::with_capacity(self.records.len());
        for r in &self.records {
            lines.push(serde_json::to_string(r)?);
        }
        let mut head = serde_json::to_value(self)?;
        head["records"] = serde_json::json!([]);
        let mut text = serde_json::to_string_pretty(&head)?.replacen(
            "\"records\": []",
            &format!("\"records\": [\n    {}\n  ]", lines.join(",\n    ")),
            1,
        );
        text.push('\n');
        Ok(text)
    }

    /// The Markdown tables, for report_md.
    pub fn tables(&self) -> (String, String, String) {
        (self.slope_table(), self.ratio_table(), self.tensor_table())
    }
}

fn fmt_interval(i: Option<Interval>, style: &str) -> String {
    match (i, style) {
        (None, _) => "n/a".into(),
        (Some(i), "e") => format!("{:.3e} [{:.3e}, {:.3e}]", i.mean, i.lo, i.hi),
        (Some(i), _) => format!("{:.2} [{:.2}, {:.2}]", i.mean, i.lo, i.hi),
    }
}

fn command(args: &Args) -> String {
    let mut c = String::from("cargo run --release -- wasserstein");
    if args.quick {
        c.push_str(" --quick");
    }
    if let Some(p) = &args.corpus {
        let _ = write!(c, " --corpus {}", p.display());
    }
    if let Some(v) = args.steps {
        let _ = write!(c, " --steps {v}");
    }
    if let Some(v) = args.every {
        let _ = write!(c, " --every {v}");
    }
    let _ = write!(c, " --seeds {}", args.seeds);
    if args.seed != 0 {
        let _ = write!(c, " --seed {}", args.seed);
    }
    if let Some(d) = &args.out_dir {
        let _ = write!(c, " --out-dir {}", d.display());
    }
    c
}
