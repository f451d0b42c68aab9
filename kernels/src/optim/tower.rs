//! [`Tower`]: an optimizer whose hyperparameters are learned by another optimizer, whose
//! hyperparameters may be learned by another, to any height. Height 0 is the plain optimizer.

use super::adam::Keep;
use super::check::all_finite;
use super::level::{level_fused, level_hypergradient, level_step};
use super::sink::{nowhere, Sink};
use super::Optimizer;
use crate::check::{length, mul, require};
use crate::simd::Backend;
use crate::{Element, Error, Result};

/// One level: its optimizer (current hyperparameters), their learned coordinates, its step
/// count, the state of the parameters it updates when it sits above level 0 (the coordinates of
/// the level below, at most 3), and the hypergradient it computed at the last step.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Level {
    opt: Optimizer,
    coords: [f32; 3],
    steps: u32,
    first: [f32; 3],
    second: [f32; 3],
    prev: [f32; 3],
    hypergradient: [f32; 3],
    fresh: bool,
}

impl Level {
    fn new(opt: Optimizer) -> Self {
        Level {
            opt,
            coords: opt.coordinates(),
            steps: 0,
            first: [0.0; 3],
            second: [0.0; 3],
            prev: [0.0; 3],
            hypergradient: [0.0; 3],
            fresh: false,
        }
    }
}

/// A hyperoptimizer tower of at most `CAP` levels (height `<= CAP - 1`), kept entirely in this
/// value (no allocation); the caller owns the base level's per-parameter state.
///
/// Level 0 updates the model's weights. Level `j >= 1` updates the learned coordinates of level
/// `j - 1` (see [`Optimizer`]) using their hypergradients; the top level's hyperparameters stay
/// fixed. `Tower::new(Adam).stacked(Adam)?.stacked(Sgd)?` is the paper's `Adam/Adam/SGD`
/// (height 2). Each step: hypergradients bottom-up, then updates top-down, then the weights (on
/// [`Schedule::Lagged`] the base level's hypergradient comes out of the weights' pass and is
/// used at the next step); the module docs define both precisely.
///
/// ```
/// use tessera_kernels::optim::{AdamConfig, Optimizer, SgdConfig, Tower};
/// let adam = Optimizer::Adam(AdamConfig { lr: 1e-2, ..AdamConfig::default() });
/// let mut tower: Tower = Tower::new(adam)?.stacked(Optimizer::Sgd(SgdConfig { lr: 1e-4 }))?;
/// let mut w = vec![1.0f32, -1.0];
/// let mut state = vec![0.0f32; tower.state_len(w.len())?];
/// for _ in 0..5 {
///     let g: Vec<f32> = w.iter().map(|x| 2.0 * x).collect(); // f(w) = |w|^2
///     tower.step(&mut w, &g, &mut state)?;
/// }
/// assert!(w.iter().all(|x| x.abs() < 1.0));
/// assert_ne!(tower.level(0).map(|o| o.lr()), Some(1e-2)); // the learning rate was learned
/// # Ok::<(), tessera_kernels::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tower<const CAP: usize = 4> {
    levels: [Level; CAP],
    height: usize,
    schedule: Schedule,
    learn: Learn,
}

/// When a tower's hypergradients reach the weights (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// The paper's order: each step's hyperparameters are corrected by the gradient that step is
    /// given, before any weight moves. Two passes over the weights' state per step.
    #[default]
    Exact,
    /// One fused pass: the pass that computes the hypergradient also steps the weights, with the
    /// hyperparameters as they were before it; that hypergradient updates the hyperparameters at
    /// the start of the next step. Hyperparameters lag one step behind [`Schedule::Exact`].
    Lagged,
}

/// Which hyperparameters the levels of a tower learn (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Learn {
    /// Every coordinate: SGD's `lr`; momentum's `lr` and momentum; Adam's `lr`, `beta1`, `beta2`.
    #[default]
    All,
    /// The learning rate alone, at every level below the top (the paper's `Adam^α`; with an Adam
    /// base, Baydin et al.'s Adam-HD). An Adam base then saves its step's direction instead of
    /// the gradient, and its hypergradient costs one multiply-add per parameter.
    LearningRate,
}

impl<const CAP: usize> Tower<CAP> {
    /// A tower of height 0: `base` alone, a plain optimizer. `Err` for invalid hyperparameters or
    /// `CAP == 0`.
    pub fn new(base: Optimizer) -> Result<Self> {
        require(CAP >= 1, "tower capacity")?;
        base.validate()?;
        Ok(Tower {
            levels: [Level::new(base); CAP],
            height: 0,
            schedule: Schedule::Exact,
            learn: Learn::All,
        })
    }

    /// This tower with hypergradients applied on `schedule` (the default is
    /// [`Schedule::Exact`]; a tower of height 0 is the plain optimizer on either). `Err` once the
    /// tower has stepped: the two schedules keep Adam's second moment differently (`v`, or
    /// `sqrt(v)` on the lagged one).
    pub fn with_schedule(mut self, schedule: Schedule) -> Result<Self> {
        let fresh = self.levels.iter().all(|l| l.steps == 0);
        require(
            fresh || schedule == self.schedule,
            "schedule of a tower that has stepped",
        )?;
        self.schedule = schedule;
        Ok(self)
    }

    /// The schedule of this tower's hypergradients.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// This tower learning the hyperparameters `learn` names (the default is [`Learn::All`]).
    /// `Err` once the tower has stepped: an Adam base saves a different value per parameter
    /// under [`Learn::LearningRate`].
    pub fn with_learned(mut self, learn: Learn) -> Result<Self> {
        let fresh = self.levels.iter().all(|l| l.steps == 0);
        require(
            fresh || learn == self.learn,
            "learned set of a tower that has stepped",
        )?;
        self.learn = learn;
        Ok(self)
    }

    /// Which hyperparameters this tower learns.
    pub fn learned(&self) -> Learn {
        self.learn
    }

    /// How many of `opt`'s coordinates this tower learns.
    fn learned_count(&self, opt: &Optimizer) -> usize {
        learned_count(opt, self.learn == Learn::LearningRate)
    }

    /// How the base level keeps its state: an Adam base learning only its learning rate keeps
    /// its direction; every other base (and any base of a height-0 tower, the plain optimizer)
    /// keeps its own state and, when learned, the gradient.
    fn keep(&self) -> Keep {
        match self.learn {
            Learn::LearningRate if self.height >= 1 => Keep::Direction,
            _ => Keep::Grad,
        }
    }

    /// This tower with `hyper` added on top, learning the hyperparameters of the current top
    /// level (which must then be learnable: decay rates strictly inside `(0, 1)`). `Err` when the
    /// capacity is full, a hyperparameter is invalid, or the tower has stepped (what the base's
    /// state holds depends on the height: a plain Adam base keeps `m` and `v`, a learned one
    /// `m`, `v` and the gradient, or under [`Learn::LearningRate`] its direction and `sqrt(v)`).
    pub fn stacked(mut self, hyper: Optimizer) -> Result<Self> {
        require(self.height + 1 < CAP, "tower height")?;
        let fresh = self.levels.iter().all(|l| l.steps == 0);
        require(fresh, "level stacked on a tower that has stepped")?;
        hyper.validate()?;
        let top = self
            .levels
            .get(self.height)
            .ok_or(Error::BadHyperparameter("tower height"))?;
        top.opt.validate_learned()?;
        self.height += 1;
        let slot = self
            .levels
            .get_mut(self.height)
            .ok_or(Error::BadHyperparameter("tower height"))?;
        *slot = Level::new(hyper);
        Ok(self)
    }

    /// Hyperoptimizer levels above the base: 0 is the plain optimizer.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Level `j`'s optimizer with its current hyperparameters (`None` above the top).
    pub fn level(&self, j: usize) -> Option<Optimizer> {
        self.live(j).map(|l| l.opt)
    }

    /// Steps level `j` has taken (level `j` starts stepping at the tower's step `j + 1`).
    pub fn steps(&self, j: usize) -> Option<u32> {
        self.live(j).map(|l| l.steps)
    }

    /// The learned coordinates of level `j` (`[lr]`, `[lr, z]` or `[lr, z1, z2]`, each decay
    /// rate `(tanh z + 1) / 2`; `[lr]` under [`Learn::LearningRate`]); `None` for the
    /// top level, whose hyperparameters are fixed.
    pub fn coordinates(&self, j: usize) -> Option<&[f32]> {
        let l = self.live(j).filter(|_| j < self.height)?;
        l.coords.get(..self.learned_count(&l.opt))
    }

    /// The hypergradient of level `j`'s learned coordinates computed by the last step: the
    /// derivative of the loss at the weights that step was given with respect to the
    /// coordinates the step before used. `None` for the top level and before level `j` has
    /// stepped twice.
    pub fn hypergradient(&self, j: usize) -> Option<&[f32]> {
        let l = self.live(j).filter(|l| j < self.height && l.fresh)?;
        l.hypergradient.get(..self.learned_count(&l.opt))
    }

    /// The optimizer state level `j >= 1` keeps for the coordinates of level `j - 1` (Adam's
    /// `m` and `v`, or the momentum velocity and an unused array; both unused for SGD), as it is
    /// before the next step. `None` for level 0, whose state the caller owns.
    pub fn level_state(&self, j: usize) -> Option<[&[f32]; 2]> {
        let below = self.live(j.checked_sub(1)?)?;
        let l = self.live(j)?;
        let k = self.learned_count(&below.opt);
        Some([l.first.get(..k)?, l.second.get(..k)?])
    }

    /// The length of the caller's state slice for `n` parameters:
    /// `n * base.state_per_param(height >= 1)` (start it at zero), except an Adam base under
    /// [`Learn::LearningRate`], which keeps `2 n` as plain Adam. Its layout: the optimizer's
    /// own state (Adam: `m`, then `v`, or `sqrt(v)` on [`Schedule::Lagged`]; under
    /// [`Learn::LearningRate`] the last step's direction `q`, then `sqrt(v)`), then, when the
    /// base is learned (but for that Adam), the previous gradient, each `n` long.
    pub fn state_len(&self, n: usize) -> Result<usize> {
        let base = self
            .live(0)
            .ok_or(Error::BadHyperparameter("tower height"))?;
        Self::state_len_for(&base.opt, self.height, self.learn, n)
    }

    /// [`Tower::state_len`] of a tower on `base` of this `height` learning `learn`, as a
    /// `const fn`: a firmware sizes its `static` state with it.
    ///
    /// ```
    /// use tessera_kernels::optim::{AdamConfig, Learn, Optimizer, Tower};
    /// const ADAM: Optimizer = Optimizer::Adam(AdamConfig::DEFAULT);
    /// const STATE: usize = match Tower::<4>::state_len_for(&ADAM, 1, Learn::All, 256) {
    ///     Ok(n) => n,
    ///     Err(_) => panic!("too many parameters"),
    /// };
    /// let tower: Tower = Tower::new(ADAM)?.stacked(ADAM)?;
    /// assert_eq!(tower.state_len(256)?, STATE);
    /// # Ok::<(), tessera_kernels::Error>(())
    /// ```
    pub const fn state_len_for(
        base: &Optimizer,
        height: usize,
        learn: Learn,
        n: usize,
    ) -> Result<usize> {
        let adam = matches!(base, Optimizer::Adam(_));
        let lr_only = matches!(learn, Learn::LearningRate);
        let saves_gradient = height >= 1 && !(adam && lr_only);
        let own = base.state_per_param(false);
        mul(n, own + saves_gradient as usize)
    }

    /// Whether the base level keeps the gradient of its last step (a learned base, but for
    /// Adam learning only its learning rate).
    fn saves_gradient(&self) -> bool {
        let adam = matches!(self.levels.first(), Some(l) if matches!(l.opt, Optimizer::Adam(_)));
        self.height >= 1 && !(adam && self.learn == Learn::LearningRate)
    }

    /// One step of the whole tower on `params` with gradient `grads` (the gradient of the loss at
    /// `params`); `state` is the base level's per-parameter state, [`Tower::state_len`] long.
    ///
    /// Errors (nothing is modified, neither the slices nor the tower): different lengths, a
    /// NaN/infinite gradient or hypergradient, a learned hyperparameter that would leave its range.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], state: &mut [f32]) -> Result<()> {
        self.step_sink(Backend::Auto, params, grads, state, nowhere())
    }

    /// [`Tower::step`] on a chosen backend (every backend gives the same weights and state; the
    /// hypergradient sums agree within their documented error); `Err(BackendUnavailable)`, with
    /// nothing modified, if it cannot run here.
    pub fn step_with(
        &mut self,
        backend: Backend,
        params: &mut [f32],
        grads: &[f32],
        state: &mut [f32],
    ) -> Result<()> {
        self.step_sink(backend, params, grads, state, nowhere())
    }

    /// [`Tower::step`] on `f32` master weights that also writes each updated weight, rounded,
    /// into `copy` (the model's `bf16` or `f32` parameters) in the same pass.
    pub fn step_mixed<E: Element>(
        &mut self,
        master: &mut [f32],
        copy: &mut [E],
        grads: &[f32],
        state: &mut [f32],
    ) -> Result<()> {
        self.step_mixed_with(Backend::Auto, master, copy, grads, state)
    }

    /// [`Tower::step_mixed`] on a chosen backend.
    pub fn step_mixed_with<E: Element>(
        &mut self,
        backend: Backend,
        master: &mut [f32],
        copy: &mut [E],
        grads: &[f32],
        state: &mut [f32],
    ) -> Result<()> {
        length("copy", copy.len(), master.len())?;
        self.step_sink(backend, master, grads, state, copy.iter_mut())
    }

    fn live(&self, j: usize) -> Option<&Level> {
        self.levels.get(..=self.height)?.get(j)
    }

    fn step_sink<B: Sink>(
        &mut self,
        backend: Backend,
        params: &mut [f32],
        grads: &[f32],
        state: &mut [f32],
        copy: impl Iterator<Item = B>,
    ) -> Result<()> {
        if !backend.is_available() {
            return Err(Error::BackendUnavailable(backend));
        }
        let n = params.len();
        length("grads", grads.len(), n)?;
        length("state", state.len(), self.state_len(n)?)?;
        let learned = self.height >= 1;
        let lagged = learned && self.schedule == Schedule::Lagged;
        let (keep, lr_only) = (self.keep(), self.learn == Learn::LearningRate);
        let mut next = *self;
        let levels = next
            .levels
            .get_mut(..=self.height)
            .ok_or(Error::BadHyperparameter("tower height"))?;
        let tall = Error::BadHyperparameter("tower height");
        let base_opt = levels.first().ok_or(tall)?.opt;
        let (first, second, prev) = split_state(&base_opt, self.saves_gradient(), n, state)?;

        // 1. Hypergradients, bottom-up, read-only. Level 0's pass also checks the gradient. On
        //    the lagged schedule level 0's is the one the previous step's pass left (`fresh`).
        let base = levels.first_mut().ok_or(tall)?;
        if lagged {
            all_finite(backend, "grads", grads)?;
        } else {
            base.fresh = learned && base.steps >= 1;
            if base.fresh {
                let st = [&*first, &*second, &*prev];
                let opt = (&base.opt, keep);
                let h = level_hypergradient(backend, "grads", opt, base.steps, params, grads, st)?;
                base.hypergradient = h.map(|x| x as f32);
            } else {
                all_finite(backend, "grads", grads)?;
            }
        }
        above_hypergradients(levels, lr_only)?;

        // 2. Hyperparameter updates, top-down: level j steps the coordinates of level j - 1.
        //    Until here level 0's optimizer is the one its last step used.
        let last = base_opt;
        hyperparameter_updates(levels, lr_only)?;

        // 3. The weights: nothing can fail from here on (the lagged pass's one check comes
        //    before it writes).
        let base = levels.first_mut().ok_or(tall)?;
        let t = base.steps.checked_add(1).ok_or(Error::Overflow)?;
        if lagged {
            let st = [first, second, prev];
            let h = level_fused(
                backend,
                (&last, keep),
                base.steps,
                &base.opt,
                params,
                grads,
                st,
                copy,
            )?;
            base.fresh = h.is_some();
            if let Some(h) = h {
                base.hypergradient = h.map(|x| x as f32);
            }
        } else if learned {
            let st = (first, second);
            level_step(
                backend,
                &base.opt,
                t,
                params,
                grads,
                st,
                (Some(prev), keep),
                copy,
            )?;
        } else {
            let st = (first, second);
            level_step(backend, &base.opt, t, params, grads, st, (None, keep), copy)?;
        }
        base.steps = t;
        *self = next;
        Ok(())
    }
}

/// Phase 1 above the base: each level `j >= 1` below the top computes its hypergradient from
/// the one level `j - 1` has (`fresh`), bottom-up. `lr_only`: the levels learn only their
/// learning rates (levels above the base save gradients either way: they hold at most three
/// parameters, and the learning rate's entry of the full hypergradient is the one used).
fn above_hypergradients(levels: &mut [Level], lr_only: bool) -> Result<()> {
    let height = levels.len().saturating_sub(1);
    let Some((base, above)) = levels.split_first_mut() else {
        return Ok(());
    };
    let mut below = &*base;
    for (j, level) in above.iter_mut().enumerate() {
        let k = learned_count(&below.opt, lr_only);
        let (x, g) = (&below.coords[..k], &below.hypergradient[..k]);
        level.fresh = below.fresh && j + 1 < height && level.steps >= 1;
        if level.fresh {
            let st = [&level.first[..k], &level.second[..k], &level.prev[..k]];
            let opt = (&level.opt, Keep::Grad);
            // At most three values: the scalar lanes.
            let h = level_hypergradient(
                Backend::Generic,
                "hypergradient",
                opt,
                level.steps,
                x,
                g,
                st,
            )?;
            level.hypergradient = h.map(|x| x as f32);
        } else if below.fresh {
            all_finite(Backend::Generic, "hypergradient", g)?;
        }
        below = &*level;
    }
    Ok(())
}

/// Phase 2: level `j` steps the learned coordinates of level `j - 1` with their (fresh)
/// hypergradient, top-down, so each level steps with hyperparameters already updated.
fn hyperparameter_updates(levels: &mut [Level], lr_only: bool) -> Result<()> {
    let height = levels.len().saturating_sub(1);
    for j in (1..=height).rev() {
        let Some((lower, upper)) = levels.split_at_mut_checked(j) else {
            return Err(Error::BadHyperparameter("tower height"));
        };
        let (Some(below), Some(level)) = (lower.last_mut(), upper.first_mut()) else {
            return Err(Error::BadHyperparameter("tower height"));
        };
        if !below.fresh {
            continue;
        }
        let k = learned_count(&below.opt, lr_only);
        level.steps = level.steps.checked_add(1).ok_or(Error::Overflow)?;
        let before = below.coords;
        let (x, g) = (&mut below.coords[..k], &below.hypergradient[..k]);
        let (f, s) = (&mut level.first[..k], &mut level.second[..k]);
        // Every level below the top saves its gradient for its own hypergradient.
        let saved = if j < height {
            Some(&mut level.prev[..k])
        } else {
            None
        };
        let opt = &level.opt;
        let st = (f, s);
        level_step(
            Backend::Generic,
            opt,
            level.steps,
            x,
            g,
            st,
            (saved, Keep::Grad),
            nowhere(),
        )?;
        if below.coords != before {
            below.opt = below.opt.with_learned_coordinates(below.coords, k)?;
        }
    }
    Ok(())
}

/// How many of `opt`'s coordinates are learned (`lr_only`: the learning rate alone).
fn learned_count(opt: &Optimizer, lr_only: bool) -> usize {
    if lr_only {
        1
    } else {
        opt.learned_count()
    }
}

/// Splits the base level's state into `(first, second, prev)` (unused parts empty; `prev` is
/// used when the level saves its gradient).
fn split_state<'a>(
    opt: &Optimizer,
    learned: bool,
    n: usize,
    state: &'a mut [f32],
) -> Result<(&'a mut [f32], &'a mut [f32], &'a mut [f32])> {
    let take = |s: &'a mut [f32], used: bool| -> Result<(&'a mut [f32], &'a mut [f32])> {
        let len = if used { n } else { 0 };
        s.split_at_mut_checked(len).ok_or(Error::LengthMismatch {
            what: "state",
            expected: n,
            actual: 0,
        })
    };
    let (first, rest) = take(state, !matches!(opt, Optimizer::Sgd(_)))?;
    let (second, rest) = take(rest, matches!(opt, Optimizer::Adam(_)))?;
    let (prev, _) = take(rest, learned)?;
    Ok((first, second, prev))
}
