//! What a training run is configured with: its precision, the LayerSkip recipe and the run's
//! hyperparameters and schedule.

use super::schedule::{Curriculum, EarlyExitLoss, LayerDropout, LossScale, TimeScale};
use anyhow::{ensure, Context};
use tessera_kernels::nn::{AttentionKind, ModelConfig};

/// The number format training runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Precision {
    /// `f32` weights, activations and math.
    F32,
    /// bf16 emulation: weights rounded to bf16 after every update and every activation rounded to
    /// bf16 after the op that makes it; the math inside each op, gradients and Adam state `f32`.
    Bf16Emulated,
    /// Mixed precision with bf16 compute, as autocast training runs: `f32` master weights, which
    /// Adam updates; each step's forward and backward read a bf16-rounded copy of them, every
    /// activation is rounded to bf16 after the op that makes it, and the batch's weight gradients
    /// are rounded to bf16 once before the `f32` optimizer step. No loss scaling.
    MixedBf16,
    /// [`Precision::MixedBf16`] with fp16 in place of bf16 and dynamic loss scaling (see
    /// [`LossScaler`](super::LossScaler)): the loss is multiplied by the scale before the backward, the rounded
    /// gradients are divided by it in `f32`, and a step whose gradients overflowed fp16 is skipped.
    MixedF16,
}

impl Precision {
    /// The format the forward and backward compute in, for the mixed-precision modes.
    pub(super) fn compute_rounding(self) -> Option<tessera_kernels::nn::ActivationRounding> {
        use tessera_kernels::nn::ActivationRounding as A;
        match self {
            Precision::F32 | Precision::Bf16Emulated => None,
            Precision::MixedBf16 => Some(A::Bf16),
            Precision::MixedF16 => Some(A::F16),
        }
    }
}

/// LayerSkip's training recipe.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Recipe {
    /// Layer dropout (`p_max = 0` disables it).
    pub dropout: LayerDropout,
    /// The early-exit loss; `None` trains the last layer's loss only.
    pub early_exit: Option<EarlyExitLoss>,
}

impl Recipe {
    /// No dropout, last-layer loss only: plain training.
    pub fn none() -> Recipe {
        Recipe {
            dropout: LayerDropout::OFF,
            early_exit: None,
        }
    }

    /// The paper's recipe for pretraining from scratch (PAPERS.md §3): layer dropout with the
    /// exponential depth scale, `p_max = 0.1` and the exponential time scale `S_exp`; early-exit
    /// loss with the gradual curriculum, torchtune's `sum_l` scale and `e_scale = 1` (the
    /// settings of torchtune's `recipes/dev/7B_full_early_exit.yaml`).
    pub fn layerskip() -> Recipe {
        Recipe {
            dropout: LayerDropout {
                p_max: 0.1,
                time_scale: TimeScale::Exp,
            },
            early_exit: Some(EarlyExitLoss {
                e_scale: 1.0,
                scale: LossScale::SumL,
                curriculum: Curriculum::Gradual,
            }),
        }
    }

    /// Not the paper's: every exit on at every step (`Curriculum::All`), the paper's own scale
    /// equation, `p_max = 0.2` constant in time (the recipe this project used before issue 19).
    pub fn all_exits() -> Recipe {
        Recipe {
            dropout: LayerDropout {
                p_max: 0.2,
                time_scale: TimeScale::Constant,
            },
            early_exit: Some(EarlyExitLoss {
                e_scale: 1.0,
                scale: LossScale::Paper,
                curriculum: Curriculum::All,
            }),
        }
    }
}

/// Everything that defines a training run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// The model (`vocab` must match the corpus; `max_seq` at least `seq_len`).
    pub model: ModelConfig,
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Adam steps.
    pub steps: usize,
    /// Peak learning rate (linear warm-up, then cosine decay to 10%).
    pub lr: f32,
    /// Warm-up steps.
    pub warmup: usize,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f32,
    /// Seed of the initialisation, the batches and the layer dropout.
    pub seed: u64,
    /// The forward attention algorithm.
    pub attention: AttentionKind,
    /// The number format.
    pub precision: Precision,
    /// LayerSkip's recipe.
    pub recipe: Recipe,
}

impl TrainConfig {
    /// A seconds-sized run: 4 layers, width 64, 60 steps of 8 × 32 tokens.
    pub fn quick(vocab: usize) -> TrainConfig {
        TrainConfig {
            model: ModelConfig {
                vocab,
                dim: 64,
                layers: 4,
                heads: 4,
                kv_heads: 2,
                ffn_hidden: 192,
                max_seq: 256,
                rope_theta: 10000.0,
                norm_eps: 1e-5,
            },
            seq_len: 32,
            batch: 8,
            steps: 60,
            lr: 3e-3,
            warmup: 10,
            grad_clip: 1.0,
            seed: 0,
            attention: AttentionKind::Baseline,
            precision: Precision::F32,
            recipe: Recipe::layerskip(),
        }
    }

    /// The run of docs/results/layerskip.md (12 layers).
    pub fn standard(vocab: usize) -> TrainConfig {
        TrainConfig {
            model: ModelConfig {
                vocab,
                dim: 128,
                layers: 12,
                heads: 4,
                kv_heads: 2,
                ffn_hidden: 384,
                max_seq: 512,
                rope_theta: 10000.0,
                norm_eps: 1e-5,
            },
            seq_len: 64,
            batch: 8,
            steps: 1500,
            lr: 2e-3,
            warmup: 50,
            grad_clip: 1.0,
            seed: 0,
            attention: AttentionKind::Baseline,
            precision: Precision::F32,
            recipe: Recipe::layerskip(),
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.model.validate().context("bad model config")?;
        ensure!(
            self.seq_len != 0 && self.batch != 0 && self.steps != 0,
            "seq_len, batch and steps must be positive"
        );
        ensure!(
            self.seq_len <= self.model.max_seq,
            "seq_len {} exceeds the model's max_seq {}",
            self.seq_len,
            self.model.max_seq
        );
        ensure!(
            self.batch.checked_mul(self.seq_len).is_some(),
            "batch x seq_len overflows"
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "the learning rate must be finite and positive, not {}",
            self.lr
        );
        let p_max = self.recipe.dropout.p_max;
        ensure!(
            (0.0..=1.0).contains(&p_max),
            "the layer dropout rate p_max must be in [0, 1], not {p_max}"
        );
        if let Some(e) = self.recipe.early_exit {
            ensure!(
                e.e_scale.is_finite() && e.e_scale >= 0.0,
                "the early-exit loss scale e_scale must be finite and non-negative, not {}",
                e.e_scale
            );
        }
        ensure!(
            self.grad_clip.is_finite() && self.grad_clip >= 0.0,
            "grad_clip must be finite and non-negative, not {}",
            self.grad_clip
        );
        Ok(())
    }

    /// The learning rate at step `t` (0-based).
    pub fn lr_at(&self, t: usize) -> f32 {
        if t < self.warmup {
            return self.lr * (t + 1) as f32 / self.warmup as f32;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let progress = ((t - self.warmup) as f64 / span).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (self.lr as f64 * (0.1 + 0.9 * cos)) as f32
    }
}
