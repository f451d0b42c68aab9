//! [`Plan`]: the cells of a study (tasks, towers, initial learning rates, seeds) and their sizes.

use super::{digits, lm, mlp, Family, Objective, StudyError, Task};
use anyhow::Context;
use std::path::PathBuf;
use tessera_kernels::optim::{AdamConfig, Learn, Optimizer, Schedule, SgdConfig, Tower};

/// The hyperoptimizer levels above each base: the tower of height `h` over SGD is
/// `SGD / sgd[0] / ... / sgd[h - 1]`, over Adam `Adam / adam[0] / ... / adam[h - 1]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hyper {
    /// Levels above an SGD base.
    #[serde(serialize_with = "debug_list")]
    pub sgd: Vec<Optimizer>,
    /// Levels above an Adam base.
    #[serde(serialize_with = "debug_list")]
    pub adam: Vec<Optimizer>,
}

impl Hyper {
    /// The same levels above both bases.
    pub fn both(levels: Vec<Optimizer>) -> Hyper {
        Hyper {
            sgd: levels.clone(),
            adam: levels,
        }
    }

    /// The levels above `family`.
    pub fn of(&self, family: Family) -> &[Optimizer] {
        match family {
            Family::Sgd => &self.sgd,
            Family::Adam => &self.adam,
        }
    }

    /// The paper's stacks: SGD hyperoptimizers at every level, `SGD / SGD / ...` and
    /// `Adam / SGD / SGD / ...`, level `j`'s hyper-step size `kappa_1^j` (the paper's recipe for
    /// stable stacks: small hyper-step sizes at the higher levels). Why powers: level `j`'s
    /// hypergradient is a product of two of level `j - 1`'s, so its size grows like the `j`-th
    /// power of level 1's; a step size shrinking as `kappa_1^j` keeps each level's relative
    /// change per step of one order (a fixed ratio of 1e-1 or 1e-2 between levels made the
    /// `Adam / SGD` stacks fail at height 3 in the pilot, see the report).
    pub fn sgd_stacks(sgd_kappa: f32, adam_kappa: f32, levels: usize) -> Hyper {
        let stack = |k1: f32| {
            (1..=levels)
                .map(|j| {
                    Optimizer::Sgd(SgdConfig {
                        lr: (k1 as f64).powi(j as i32) as f32,
                    })
                })
                .collect()
        };
        Hyper {
            sgd: stack(sgd_kappa),
            adam: stack(adam_kappa),
        }
    }
}

/// The towers of the study: height up to 4, the paper's figure's tallest stack.
pub type StudyTower = Tower<5>;

/// Level 1's step size above an SGD base on `digits` (gdtuo's default SGD step size).
pub const SGD_KAPPA: f32 = 1e-2;
/// Level 1's step size above an Adam base on `digits` (gdtuo's README example for `Adam / SGD`
/// uses `1e-5`; Adam's learning-rate hypergradient is a sum of `|g|`-sized terms over every
/// weight, so its level-1 step must be far smaller than SGD's).
pub const ADAM_KAPPA: f32 = 1e-5;

fn debug_list<S: serde::Serializer>(v: &[Optimizer], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|o| format!("{o:?}")))
}

fn debug_value<S: serde::Serializer, T: std::fmt::Debug>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:?}"))
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
    /// The hyperoptimizer levels above each base, the same for every cell.
    pub hyper: Hyper,
    /// `digits`: training steps (minibatches of [`digits::BATCH`]).
    pub digits_steps: usize,
    /// `digits`: the data file.
    pub digits_path: PathBuf,
    /// `mlp`: steps.
    pub mlp_steps: usize,
    /// `mlp` minibatch size.
    pub mlp_batch: usize,
    /// `mlp` training examples.
    pub mlp_train: usize,
    /// `mlp` test examples.
    pub mlp_test: usize,
    /// Character LM steps.
    pub lm_steps: usize,
    /// Character LM size.
    pub lm: lm::LmSize,
    /// Seeds: every cell is trained once per seed (initial weights and minibatch order; for the
    /// synthetic tasks the data too). The digits split does not depend on it.
    pub seeds: Vec<u64>,
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

impl Plan {
    /// The Adam hyperoptimizer levels of the synthetic tasks (`--tasks mlp,charlm`): Adam at
    /// every level with learning rates `1e-2, 1e-4, 1e-6`, chosen once from four settings on the
    /// quick synthetic MLP study.
    pub fn adam_hyper() -> Vec<Optimizer> {
        let adam = |lr| {
            Optimizer::Adam(AdamConfig {
                lr,
                ..AdamConfig::default()
            })
        };
        vec![adam(1e-2), adam(1e-4), adam(1e-6)]
    }

    /// The default levels: the paper's SGD stacks ([`Hyper::sgd_stacks`]), four levels.
    pub fn default_hyper() -> Hyper {
        Hyper::sgd_stacks(SGD_KAPPA, ADAM_KAPPA, 4)
    }

    /// The `--quick` study: `digits`, heights 0-2, three initial learning rates two decades
    /// apart, one seed, 150 steps (seconds on 2 cores; a smoke test, not a result).
    pub fn quick(seed: u64) -> Plan {
        Plan {
            tasks: vec![Task::Digits],
            families: vec![Family::Sgd, Family::Adam],
            heights: vec![0, 1, 2],
            sgd_lrs: vec![1e-3, 1e-1, 1e1],
            adam_lrs: vec![1e-4, 1e-2, 1e0],
            hyper: Self::default_hyper(),
            digits_steps: 150,
            digits_path: digits::default_path(),
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
            seeds: vec![seed],
            samples: 50,
            threads: 1,
            schedule: Schedule::Exact,
            learn: Learn::All,
        }
    }

    /// The full study: `digits`, SGD and Adam stacks of heights 0-4, nine initial learning rates
    /// half a decade apart over four decades (SGD 1e-4..1, Adam 1e-5..1e-1), three seeds, 1,500
    /// steps (67 epochs).
    pub fn full(seed: u64) -> Plan {
        Plan {
            heights: vec![0, 1, 2, 3, 4],
            sgd_lrs: vec![1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1e0],
            adam_lrs: vec![1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
            digits_steps: 1500,
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
            seeds: vec![seed, seed + 1, seed + 2],
            samples: 100,
            ..Plan::quick(seed)
        }
    }

    /// The first seed (the one [`Plan::objective`] and [`Plan::init`] use).
    pub fn seed(&self) -> u64 {
        self.seeds.first().copied().unwrap_or(0)
    }

    /// The initial learning rates of `family`.
    pub fn init_lrs(&self, family: Family) -> &[f32] {
        match family {
            Family::Sgd => &self.sgd_lrs,
            Family::Adam => &self.adam_lrs,
        }
    }

    /// Number of cells (every seed counted).
    pub fn cells(&self) -> usize {
        let lrs: usize = self.families.iter().map(|&f| self.init_lrs(f).len()).sum();
        self.tasks.len() * self.heights.len() * lrs * self.seeds.len()
    }

    pub(crate) fn steps(&self, task: Task) -> usize {
        match task {
            Task::Digits => self.digits_steps,
            Task::Mlp => self.mlp_steps,
            Task::CharLm => self.lm_steps,
        }
    }

    /// `task` at this plan's sizes with the first seed ([`Plan::objective_for`]).
    pub fn objective(&self, task: Task) -> Result<Box<dyn Objective>, StudyError> {
        self.objective_for(task, self.seed())
    }

    /// `task` at this plan's sizes, its minibatch order (and synthetic data) from `seed`.
    pub fn objective_for(&self, task: Task, seed: u64) -> Result<Box<dyn Objective>, StudyError> {
        let order = seed.wrapping_add(1);
        Ok(match task {
            Task::Digits => {
                let (train, test) = digits::load(&self.digits_path)?;
                Box::new(digits::DigitsTask::new(train, test, order))
            }
            Task::Mlp => Box::new(mlp::MlpTask::new(
                self.mlp_train,
                self.mlp_test,
                self.mlp_batch,
                seed,
                order,
            )),
            Task::CharLm => Box::new(lm::LmTask::new(self.lm, seed, order)?),
        })
    }

    /// The initial weights of `objective` from the first seed.
    pub fn init(&self, objective: &dyn Objective) -> Result<Vec<f32>, StudyError> {
        self.init_for(objective, self.seed())
    }

    /// The initial weights of `objective` from `seed`, the same for every cell of that seed.
    pub fn init_for(&self, objective: &dyn Objective, seed: u64) -> Result<Vec<f32>, StudyError> {
        objective.init(seed.wrapping_add(2))
    }

    /// The tower of a cell.
    pub fn tower(
        &self,
        family: Family,
        height: usize,
        init_lr: f32,
    ) -> Result<StudyTower, StudyError> {
        let mut tower: StudyTower = Tower::new(family.base(init_lr))?;
        let levels = self.hyper.of(family);
        for j in 0..height {
            let level = levels
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
