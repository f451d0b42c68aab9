//! [`Optimizer`]: one optimizer kind with its hyperparameters, and the coordinates in which a
//! hyperoptimizer learns them.

use super::{AdamConfig, MomentumConfig, SgdConfig};
use crate::check::require;
use crate::Result;

/// The largest `f32` below 1: learned decay rates are kept at or below it, so `1 - beta^t` never
/// rounds to zero.
const BELOW_ONE: f32 = 1.0 - 1.0 / 16_777_216.0;

/// One optimizer and its hyperparameters: a level of a [`Tower`](super::Tower).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Plain SGD; learned coordinate: `lr`.
    Sgd(SgdConfig),
    /// SGD with momentum; learned coordinates: `lr`, `atanh(2 momentum - 1)`.
    Momentum(MomentumConfig),
    /// Adam / AdamW; learned coordinates: `lr`, `atanh(2 beta1 - 1)`, `atanh(2 beta2 - 1)`
    /// (gdtuo's; `eps` and `weight_decay` stay fixed).
    Adam(AdamConfig),
}

impl Optimizer {
    /// `"SGD"`, `"Momentum"` or `"Adam"`.
    pub const fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "SGD",
            Optimizer::Momentum(_) => "Momentum",
            Optimizer::Adam(_) => "Adam",
        }
    }

    /// How many hyperparameters a hyperoptimizer learns for this optimizer (1, 2 or 3).
    pub const fn learned_count(&self) -> usize {
        match self {
            Optimizer::Sgd(_) => 1,
            Optimizer::Momentum(_) => 2,
            Optimizer::Adam(_) => 3,
        }
    }

    /// `f32` state values per parameter: SGD 0, momentum 1 (velocity), Adam 2 (`m`, `v`), plus 1
    /// (the previous gradient) when the optimizer's own hyperparameters are learned.
    pub const fn state_per_param(&self, learned: bool) -> usize {
        let base = match self {
            Optimizer::Sgd(_) => 0,
            Optimizer::Momentum(_) => 1,
            Optimizer::Adam(_) => 2,
        };
        base + learned as usize
    }

    /// The learning rate.
    pub const fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(c) => c.lr,
            Optimizer::Momentum(c) => c.lr,
            Optimizer::Adam(c) => c.lr,
        }
    }

    /// `Err(BadHyperparameter)` unless the hyperparameters are valid for a plain step.
    pub fn validate(&self) -> Result<()> {
        match self {
            Optimizer::Sgd(c) => c.validate(),
            Optimizer::Momentum(c) => c.validate(),
            Optimizer::Adam(c) => c.validate(),
        }
    }

    /// The checks for an optimizer whose hyperparameters are learned: a plain-valid start,
    /// decay rates strictly inside `(0, 1)` (their coordinates must be finite) and, for AdamW,
    /// `lr * weight_decay < 1`.
    pub(crate) fn validate_learned(&self) -> Result<()> {
        self.validate()?;
        match self {
            Optimizer::Sgd(_) => Ok(()),
            Optimizer::Momentum(c) => require(c.momentum > 0.0, "momentum"),
            Optimizer::Adam(c) => {
                require(c.beta1 > 0.0, "beta1")?;
                require(c.beta2 > 0.0, "beta2")?;
                require(c.lr * c.weight_decay < 1.0, "lr * weight_decay")
            }
        }
    }

    /// The learned coordinates `[lr, atanh(2 . - 1), atanh(2 . - 1)]` (unused entries zero).
    pub(crate) fn coordinates(&self) -> [f32; 3] {
        match self {
            Optimizer::Sgd(c) => [c.lr, 0.0, 0.0],
            Optimizer::Momentum(c) => [c.lr, decay_coordinate(c.momentum), 0.0],
            Optimizer::Adam(c) => [c.lr, decay_coordinate(c.beta1), decay_coordinate(c.beta2)],
        }
    }

    /// The optimizer whose learned coordinates are `x`: `lr = x[0]` (any finite value: a learned
    /// learning rate may become negative), decay rates `(tanh(x[i]) + 1) / 2` rounded to `f32` and kept
    /// at most the largest `f32` below 1. `Err` when a value is not finite, or when AdamW's
    /// `lr * weight_decay` would reach 1.
    pub(crate) fn with_coordinates(&self, x: [f32; 3]) -> Result<Self> {
        require(x.iter().all(|v| v.is_finite()), "learned hyperparameter")?;
        Ok(match *self {
            Optimizer::Sgd(_) => Optimizer::Sgd(SgdConfig { lr: x[0] }),
            Optimizer::Momentum(_) => Optimizer::Momentum(MomentumConfig {
                lr: x[0],
                momentum: decay_rate(x[1]),
            }),
            Optimizer::Adam(c) => {
                require(x[0] * c.weight_decay < 1.0, "lr * weight_decay")?;
                Optimizer::Adam(AdamConfig {
                    lr: x[0],
                    beta1: decay_rate(x[1]),
                    beta2: decay_rate(x[2]),
                    ..c
                })
            }
        })
    }
}

impl Optimizer {
    /// [`Optimizer::with_coordinates`] for a level that learns only its first `k` coordinates:
    /// with `k = 1` the learning rate alone changes, and the decay rates stay exactly as they
    /// are (`decay_rate(decay_coordinate(b))` need not round back to `b`). Same errors.
    pub(crate) fn with_learned_coordinates(&self, x: [f32; 3], k: usize) -> Result<Self> {
        if k >= self.learned_count() {
            return self.with_coordinates(x);
        }
        let lr = x[0];
        require(lr.is_finite(), "learned hyperparameter")?;
        Ok(match *self {
            Optimizer::Sgd(_) => Optimizer::Sgd(SgdConfig { lr }),
            Optimizer::Momentum(c) => Optimizer::Momentum(MomentumConfig { lr, ..c }),
            Optimizer::Adam(c) => {
                require(lr * c.weight_decay < 1.0, "lr * weight_decay")?;
                Optimizer::Adam(AdamConfig { lr, ..c })
            }
        })
    }
}

/// A decay rate's learned coordinate, as gdtuo's `unclamp`: `atanh(2 p - 1) = ln(p / (1 - p)) / 2`,
/// computed in `f64`, rounded to `f32`.
pub(crate) fn decay_coordinate(p: f32) -> f32 {
    let p = p as f64;
    (0.5 * libm::log(p / (1.0 - p))) as f32
}

/// The decay rate of coordinate `z`, as gdtuo's `clamp`: `(tanh(z) + 1) / 2` (which is
/// `sigmoid(2 z)`: `d rate / d z = 2 rate (1 - rate)`), computed in `f64`, rounded to `f32`,
/// capped below 1.
pub(crate) fn decay_rate(z: f32) -> f32 {
    let s = ((libm::tanh(z as f64) + 1.0) * 0.5) as f32;
    if s > BELOW_ONE {
        BELOW_ONE
    } else {
        s
    }
}
