//! The hyperoptimizer study behind `tessera hyperopt`: how sensitive is training to the initial
//! learning rate, with towers of hyperoptimizers of height 0 (plain) to 4, over SGD and Adam, on
//! (a) the paper's MLP on real data (the UCI digits, [`digits`]), and optionally (b) a synthetic
//! classification MLP and (c) the tiny character language model?
//!
//! Each cell (task, optimizer family, height, initial learning rate, seed) trains from the
//! seed's initial weights on the seed's minibatch sequence, with a tower whose base level starts
//! at the cell's learning rate and whose upper levels start from fixed settings
//! ([`Plan::hyper`]), the same for every cell. A run whose loss or gradient becomes non-finite
//! stops there and counts as diverged; its final loss is then the chance loss (`ln classes`),
//! the loss of knowing nothing, as is any final loss above it, and its test error that of
//! guessing (`1 - 1/classes`).
pub mod digits;
pub mod lm;
pub mod mlp;
mod plan;
pub mod report;
mod report_text;
mod spread;

pub use plan::{Hyper, Plan, StudyTower, ADAM_KAPPA, SGD_KAPPA};
pub use spread::{spreads, summaries, OverSeeds, Spread, Summary, Trend};

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use tessera_kernels::optim::{AdamConfig, Learn, Optimizer, Schedule, SgdConfig};

/// Why a cell of the study could not be set up or trained. (A run that diverges is a result, not
/// an error.)
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A kernel refused an optimizer setting or a length.
    #[error(transparent)]
    Kernel(#[from] tessera_kernels::Error),
    /// Anything else: a task that could not be built or stepped, a tower level the plan lacks
    /// (the message and its causes say which).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A differentiable training problem.
pub trait Objective {
    /// Number of parameters.
    fn param_count(&self) -> usize;
    /// Initial parameters from `seed`.
    fn init(&self, seed: u64) -> Result<Vec<f32>, StudyError>;
    /// The loss of a uniform prediction: the ceiling of a final loss.
    fn chance_loss(&self) -> f64;
    /// Loss of the next minibatch; writes its gradient into `grads`.
    fn minibatch(&mut self, params: &[f32], grads: &mut [f32]) -> Result<f64, StudyError>;
    /// Held-out loss and, for classifiers, accuracy.
    fn evaluate(&mut self, params: &[f32]) -> Result<(f64, Option<f64>), StudyError>;
}

/// Which problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Task {
    /// The paper's MLP (64-128-10 tanh) on the UCI handwritten digits ([`digits`]).
    Digits,
    /// The synthetic classification MLP ([`mlp`]).
    Mlp,
    /// The character language model ([`lm`]).
    CharLm,
}

impl Task {
    /// Name used in records and file names.
    pub fn name(self) -> &'static str {
        match self {
            Task::Digits => "digits",
            Task::Mlp => "mlp",
            Task::CharLm => "charlm",
        }
    }
}

/// The base optimizer of a tower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// Plain SGD.
    Sgd,
    /// Adam (PyTorch's defaults apart from the learning rate).
    Adam,
}

impl Family {
    /// `"SGD"` or `"Adam"`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Sgd => "SGD",
            Family::Adam => "Adam",
        }
    }

    /// The base optimizer at learning rate `lr`.
    pub fn base(self, lr: f32) -> Optimizer {
        match self {
            Family::Sgd => Optimizer::Sgd(SgdConfig { lr }),
            Family::Adam => Optimizer::Adam(AdamConfig {
                lr,
                ..AdamConfig::default()
            }),
        }
    }
}

/// Hyperparameters at one step of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrajectoryPoint {
    /// Steps taken.
    pub step: usize,
    /// Minibatch loss of that step.
    pub train_loss: f64,
    /// The base level's learning rate.
    pub lr: f64,
    /// Adam's `beta1`, `beta2` (Adam base only).
    pub betas: Option<(f64, f64)>,
    /// Level 1's learning rate (height >= 2, where it is learned).
    pub level1_lr: Option<f64>,
}

/// The result of one cell.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Record {
    /// `"digits"`, `"mlp"` or `"charlm"`.
    pub task: &'static str,
    /// The seed of initial weights and minibatch order.
    pub seed: u64,
    /// The base optimizer, `"SGD"` or `"Adam"`.
    pub optimizer: &'static str,
    /// The tower, paper notation (`"Adam/Adam/Adam"`).
    pub tower: String,
    /// Hyperoptimizer levels above the base.
    pub height: usize,
    /// `"exact"` or `"lagged"` (see `tessera_kernels::optim::Schedule`).
    pub schedule: &'static str,
    /// `"all"` or `"lr"`: what the levels below the top learn (`tessera_kernels::optim::Learn`).
    pub learned: &'static str,
    /// The base level's initial learning rate.
    pub init_lr: f64,
    /// Held-out loss after training, capped at the chance loss (diverged runs: the chance loss).
    pub final_loss: f64,
    /// The held-out loss as measured (NaN for a diverged run).
    pub measured_loss: f64,
    /// Held-out accuracy (classification only).
    pub final_accuracy: Option<f64>,
    /// Held-out error, `1 - accuracy` (classification only; a diverged run: `1 - 1/classes`,
    /// guessing).
    pub final_error: Option<f64>,
    /// The step at which the run diverged, if it did.
    pub diverged_at: Option<usize>,
    /// The base learning rate at the end.
    pub final_lr: f64,
    /// Sampled hyperparameter trajectory.
    pub trajectory: Vec<TrajectoryPoint>,
    /// Wall time of the cell.
    pub seconds: f64,
}

/// The tower in the paper's notation: `Adam/Adam`, or `Adam^α/Adam` where a level learns only
/// its learning rate (an SGD level has no other).
fn tower_name(tower: &StudyTower) -> String {
    let lr_only = tower.learned() == Learn::LearningRate;
    (0..=tower.height())
        .filter_map(|j| {
            let o = tower.level(j)?;
            let mark = lr_only && j < tower.height() && !matches!(o, Optimizer::Sgd(_));
            Some(format!("{}{}", o.name(), if mark { "^α" } else { "" }))
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn point(tower: &StudyTower, step: usize, train_loss: f64) -> TrajectoryPoint {
    let base = tower.level(0);
    TrajectoryPoint {
        step,
        train_loss,
        lr: base.map_or(f64::NAN, |o| o.lr() as f64),
        betas: match base {
            Some(Optimizer::Adam(c)) => Some((c.beta1 as f64, c.beta2 as f64)),
            _ => None,
        },
        level1_lr: (tower.height() >= 2)
            .then(|| tower.level(1).map_or(f64::NAN, |o| o.lr() as f64)),
    }
}

/// Trains one cell.
pub fn run_cell(
    plan: &Plan,
    task: Task,
    family: Family,
    height: usize,
    (init_lr, seed): (f32, u64),
    mut on_step: impl FnMut(),
) -> anyhow::Result<Record> {
    let started = Instant::now();
    let mut objective = plan.objective_for(task, seed)?;
    let mut tower = plan.tower(family, height, init_lr)?;
    let name = tower_name(&tower);
    let mut params = plan.init_for(objective.as_ref(), seed)?;
    let mut grads = vec![0.0f32; params.len()];
    let mut state = vec![0.0f32; tower.state_len(params.len())?];
    let steps = plan.steps(task);
    let every = (steps / plan.samples.max(1)).max(1);
    let mut trajectory = vec![point(&tower, 0, f64::NAN)];
    let mut diverged_at = None;
    for step in 1..=steps {
        let loss = objective.minibatch(&params, &mut grads)?;
        on_step();
        if !loss.is_finite() || tower.step(&mut params, &grads, &mut state).is_err() {
            diverged_at = Some(step);
            // Count the remaining steps as done for the progress bar.
            (step..steps).for_each(|_| on_step());
            break;
        }
        if step % every == 0 || step == steps {
            trajectory.push(point(&tower, step, loss));
        }
    }
    let chance = objective.chance_loss();
    let (measured, accuracy) = if diverged_at.is_some() {
        (f64::NAN, None)
    } else {
        objective.evaluate(&params)?
    };
    let final_loss = if measured.is_finite() {
        measured.min(chance)
    } else {
        chance
    };
    // A classifier's chance loss is ln(classes); its guessing error is 1 - 1/classes.
    let guess_error = 1.0 - (-chance).exp();
    Ok(Record {
        task: task.name(),
        seed,
        optimizer: family.name(),
        tower: name,
        height,
        schedule: match plan.schedule {
            Schedule::Exact => "exact",
            Schedule::Lagged => "lagged",
        },
        learned: match plan.learn {
            Learn::All => "all",
            Learn::LearningRate => "lr",
        },
        init_lr: init_lr as f64,
        final_loss,
        measured_loss: measured,
        final_accuracy: accuracy,
        final_error: match (accuracy, diverged_at) {
            (Some(a), None) => Some(1.0 - a),
            (_, Some(_)) if task != Task::CharLm => Some(guess_error),
            _ => None,
        },
        diverged_at,
        final_lr: tower.level(0).map_or(f64::NAN, |o| o.lr() as f64),
        trajectory,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs every cell of `plan` (records in the order task, family, height, learning rate, seed) on
/// `plan.threads` threads, with a progress bar over all training steps when `progress` (when
/// stderr is not a terminal, where the bar does not draw, one line per finished cell instead).
pub fn run_plan(plan: &Plan, progress: bool) -> anyhow::Result<Vec<Record>> {
    let mut cells = Vec::with_capacity(plan.cells());
    for &task in &plan.tasks {
        for &family in &plan.families {
            for &height in &plan.heights {
                for &lr in plan.init_lrs(family) {
                    for &seed in &plan.seeds {
                        cells.push((task, family, height, lr, seed));
                    }
                }
            }
        }
    }
    let total: usize = cells.iter().map(|c| plan.steps(c.0)).sum();
    let bar = if progress {
        let b = ProgressBar::new(total as u64);
        b.set_style(ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {percent}% eta {eta} {msg}",
        )?);
        b
    } else {
        ProgressBar::hidden()
    };
    // Without a terminal (a log file, CI) the bar is invisible: report each finished cell.
    let lines = progress && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (started, finished) = (Instant::now(), std::sync::atomic::AtomicUsize::new(0));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<anyhow::Result<Record>>>> =
        cells.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..plan.threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(task, family, height, lr, seed)) = cells.get(i) else {
                    break;
                };
                bar.set_message(format!(
                    "{} {} h{height} lr {lr:e} seed {seed}",
                    task.name(),
                    family.name()
                ));
                let r = run_cell(plan, task, family, height, (lr, seed), || bar.inc(1));
                if lines {
                    let done = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let what = match &r {
                        Ok(rec) => format!("final loss {:.3}", rec.final_loss),
                        Err(e) => format!("failed: {e}"),
                    };
                    eprintln!(
                        "hyperopt: cell {done}/{} ({} {} h{height} lr {lr:e} seed {seed}) {what}, {:.0} s",
                        cells.len(),
                        task.name(),
                        family.name(),
                        started.elapsed().as_secs_f64()
                    );
                }
                if let Some(slot) = results.get(i) {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    bar.finish_and_clear();
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(anyhow::anyhow!("cell not run")))
        })
        .collect()
}
