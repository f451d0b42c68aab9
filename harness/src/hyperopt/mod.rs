//! The hyperoptimizer study behind `tessera hyperopt`: how sensitive is training to the initial
//! learning rate, with towers of hyperoptimizers of height 0 (plain) to 3, for SGD and Adam, on
//! (a) a small MLP classifier and (b) the tiny character language model?
//!
//! Each cell (task, optimizer family, height, initial learning rate) trains from the same
//! initial weights on the same minibatch sequence, with a [`Tower`] whose base level starts at the
//! cell's learning rate and whose upper levels start from fixed settings ([`Plan::hyper`]), the
//! same for every cell. A run whose loss or gradient becomes non-finite stops there and counts
//! as diverged; its final loss is then the chance loss (`ln classes`), the loss of knowing
//! nothing, as is any final loss above it.

pub mod lm;
pub mod mlp;
pub mod report;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use tessera_kernels::optim::{AdamConfig, Learn, Optimizer, Schedule, SgdConfig, Tower};

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
    /// The synthetic classification MLP ([`mlp`]).
    Mlp,
    /// The character language model ([`lm`]).
    CharLm,
}

impl Task {
    /// Name used in records and file names.
    pub fn name(self) -> &'static str {
        match self {
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

/// Everything a study run does.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    /// Problems.
    pub tasks: Vec<Task>,
    /// Base optimizers.
    pub families: Vec<Family>,
    /// Tower heights.
    pub heights: Vec<usize>,
    /// Initial learning rates of an SGD base.
    pub sgd_lrs: Vec<f32>,
    /// Initial learning rates of an Adam base (Adam's step is about `lr` per weight whatever the
    /// gradient's size, so its useful range sits lower than SGD's).
    pub adam_lrs: Vec<f32>,
    /// The hyperoptimizer of level `j` (`hyper[j - 1]`), for every family and cell: the tower of
    /// height `h` is `base / hyper[0] / ... / hyper[h - 1]`.
    #[serde(serialize_with = "debug_list")]
    pub hyper: Vec<Optimizer>,
    /// MLP: steps, minibatch, training and test examples.
    pub mlp_steps: usize,
    /// MLP minibatch size.
    pub mlp_batch: usize,
    /// MLP training examples.
    pub mlp_train: usize,
    /// MLP test examples.
    pub mlp_test: usize,
    /// Character LM steps.
    pub lm_steps: usize,
    /// Character LM size.
    pub lm: lm::LmSize,
    /// Seed of data, initial weights and minibatch order (the same for every cell).
    pub seed: u64,
    /// Points kept of each trajectory.
    pub samples: usize,
    /// Cells trained at once (each cell is single-threaded and deterministic).
    pub threads: usize,
    /// When the towers' hypergradients reach the weights (`Exact`: the paper's order).
    #[serde(serialize_with = "debug_value")]
    pub schedule: Schedule,
    /// What the levels below the top learn (`All`; `LearningRate`: the paper's `Adam^α`).
    #[serde(serialize_with = "debug_value")]
    pub learn: Learn,
}

fn debug_value<S: serde::Serializer, T: std::fmt::Debug>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:?}"))
}

fn debug_list<S: serde::Serializer>(v: &[Optimizer], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|o| format!("{o:?}")))
}

impl Plan {
    /// The hyperoptimizer levels every tower uses: Adam at every level, with learning rates
    /// `1e-2, 1e-4, 1e-6`. Adam's step is about its learning rate whatever the hypergradient's
    /// size; level 1 moves learning rates of order 1e-3..1 and logits of order 1 by 1e-2 per step,
    /// level 2 moves level 1's learning rate (1e-2) by 1% per step, level 3 moves level 2's
    /// (1e-4) by 1%. Chosen once from four settings tried on the quick MLP study (the report
    /// lists them); SGD hyperoptimizers, whose steps scale with the hypergradient, diverged.
    pub fn default_hyper() -> Vec<Optimizer> {
        let adam = |lr| {
            Optimizer::Adam(AdamConfig {
                lr,
                ..AdamConfig::default()
            })
        };
        vec![adam(1e-2), adam(1e-4), adam(1e-6)]
    }

    /// The `--quick` study: both tasks, heights 0-3, five initial learning rates a decade apart
    /// (SGD 1e-4..1e0, Adam 1e-5..1e-1), short runs.
    pub fn quick(seed: u64) -> Plan {
        Plan {
            tasks: vec![Task::Mlp, Task::CharLm],
            families: vec![Family::Sgd, Family::Adam],
            heights: vec![0, 1, 2, 3],
            sgd_lrs: vec![1e-4, 1e-3, 1e-2, 1e-1, 1e0],
            adam_lrs: vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
            hyper: Self::default_hyper(),
            mlp_steps: 400,
            mlp_batch: 32,
            mlp_train: 4096,
            mlp_test: 1024,
            lm_steps: 100,
            lm: lm::LmSize {
                layers: 2,
                dim: 32,
                seq_len: 32,
                batch: 4,
                corpus_chars: 20_000,
                eval_windows: 8,
            },
            seed,
            samples: 50,
            threads: 1,
            schedule: Schedule::Exact,
            learn: Learn::All,
        }
    }

    /// The full study: nine initial learning rates half a decade apart over the same ranges,
    /// longer runs, a larger LM.
    pub fn full(seed: u64) -> Plan {
        Plan {
            sgd_lrs: vec![1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1e0],
            adam_lrs: vec![1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
            mlp_steps: 2000,
            mlp_batch: 32,
            mlp_train: 8192,
            mlp_test: 2048,
            lm_steps: 300,
            lm: lm::LmSize {
                layers: 2,
                dim: 64,
                seq_len: 64,
                batch: 8,
                corpus_chars: 60_000,
                eval_windows: 32,
            },
            samples: 100,
            ..Plan::quick(seed)
        }
    }

    /// The initial learning rates of `family`.
    pub fn init_lrs(&self, family: Family) -> &[f32] {
        match family {
            Family::Sgd => &self.sgd_lrs,
            Family::Adam => &self.adam_lrs,
        }
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        let lrs: usize = self.families.iter().map(|&f| self.init_lrs(f).len()).sum();
        self.tasks.len() * self.heights.len() * lrs
    }

    fn steps(&self, task: Task) -> usize {
        match task {
            Task::Mlp => self.mlp_steps,
            Task::CharLm => self.lm_steps,
        }
    }

    /// `task` at this plan's sizes, its data and minibatch order from the plan's seed.
    pub fn objective(&self, task: Task) -> Result<Box<dyn Objective>, StudyError> {
        let order = self.seed.wrapping_add(1);
        Ok(match task {
            Task::Mlp => Box::new(mlp::MlpTask::new(
                self.mlp_train,
                self.mlp_test,
                self.mlp_batch,
                self.seed,
                order,
            )),
            Task::CharLm => Box::new(lm::LmTask::new(self.lm, self.seed, order)?),
        })
    }

    /// The initial weights of every cell of `objective` (from the plan's seed).
    pub fn init(&self, objective: &dyn Objective) -> Result<Vec<f32>, StudyError> {
        objective.init(self.seed.wrapping_add(2))
    }

    /// The tower of a cell.
    pub fn tower(&self, family: Family, height: usize, init_lr: f32) -> Result<Tower, StudyError> {
        let mut tower: Tower = Tower::new(family.base(init_lr))?;
        for j in 0..height {
            let level = self
                .hyper
                .get(j)
                .with_context(|| format!("no hyperoptimizer for level {}", j + 1))?;
            tower = tower
                .stacked(*level)
                .with_context(|| format!("level {}", j + 1))?;
        }
        Ok(tower
            .with_schedule(self.schedule)
            .and_then(|t| t.with_learned(self.learn))?)
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
    /// `"mlp"` or `"charlm"`.
    pub task: &'static str,
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
fn tower_name(tower: &Tower) -> String {
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

fn point(tower: &Tower, step: usize, train_loss: f64) -> TrajectoryPoint {
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
    init_lr: f32,
    mut on_step: impl FnMut(),
) -> anyhow::Result<Record> {
    let started = Instant::now();
    let mut objective = plan.objective(task)?;
    let mut tower = plan.tower(family, height, init_lr)?;
    let name = tower_name(&tower);
    let mut params = plan.init(objective.as_ref())?;
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
    Ok(Record {
        task: task.name(),
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
        diverged_at,
        final_lr: tower.level(0).map_or(f64::NAN, |o| o.lr() as f64),
        trajectory,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs every cell of `plan` (records in the order task, family, height, learning rate) on
/// `plan.threads` threads, with a progress bar over all training steps when `progress` (when
/// stderr is not a terminal, where the bar does not draw, one line per finished cell instead).
pub fn run_plan(plan: &Plan, progress: bool) -> anyhow::Result<Vec<Record>> {
    let mut cells = Vec::with_capacity(plan.cells());
    for &task in &plan.tasks {
        for &family in &plan.families {
            for &height in &plan.heights {
                for &lr in plan.init_lrs(family) {
                    cells.push((task, family, height, lr));
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
                let Some(&(task, family, height, lr)) = cells.get(i) else {
                    break;
                };
                bar.set_message(format!(
                    "{} {} h{height} lr {lr:e}",
                    task.name(),
                    family.name()
                ));
                let r = run_cell(plan, task, family, height, lr, || bar.inc(1));
                if lines {
                    let done = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let what = match &r {
                        Ok(rec) => format!("final loss {:.3}", rec.final_loss),
                        Err(e) => format!("failed: {e}"),
                    };
                    eprintln!(
                        "hyperopt: cell {done}/{} ({} {} h{height} lr {lr:e}) {what}, {:.0} s",
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

/// The spread of final losses across initial learning rates of one (task, optimizer, height).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Task name.
    pub task: &'static str,
    /// Base optimizer.
    pub optimizer: &'static str,
    /// Tower height.
    pub height: usize,
    /// Best final loss.
    pub best: f64,
    /// Worst final loss.
    pub worst: f64,
    /// `worst - best`: the headline sensitivity.
    pub range: f64,
    /// Standard deviation of the final losses.
    pub std: f64,
    /// Runs that diverged.
    pub diverged: usize,
    /// Runs.
    pub runs: usize,
}

/// One [`Spread`] per (task, optimizer, height), in record order.
pub fn spreads(records: &[Record]) -> Vec<Spread> {
    let mut keys: Vec<(&'static str, &'static str, usize)> = Vec::new();
    for r in records {
        let k = (r.task, r.optimizer, r.height);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(task, optimizer, height)| {
            let cell: Vec<&Record> = records
                .iter()
                .filter(|r| r.task == task && r.optimizer == optimizer && r.height == height)
                .collect();
            let losses: Vec<f64> = cell.iter().map(|r| r.final_loss).collect();
            let n = losses.len().max(1) as f64;
            let mean = losses.iter().sum::<f64>() / n;
            let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
            let worst = losses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Spread {
                task,
                optimizer,
                height,
                best,
                worst,
                range: worst - best,
                std: (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt(),
                diverged: cell.iter().filter(|r| r.diverged_at.is_some()).count(),
                runs: cell.len(),
            }
        })
        .collect()
}
