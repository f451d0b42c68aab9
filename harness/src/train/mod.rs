//! Training the early-exit transformer of `tessera_kernels::nn` on a character-level corpus, with
//! LayerSkip's recipe (layer dropout and the early-exit loss, both optional) and Adam.
//!
//! # API (also what `tessera wasserstein` builds on)
//!
//! ```no_run
//! use tessera_harness::train::{Trainer, TrainConfig, Precision, Corpus, synthetic_corpus};
//! use tessera_kernels::nn::AttentionKind;
//! use tessera_kernels::attention::FlashTiles;
//! let corpus = Corpus::from_text(&synthetic_corpus(20_000, 7))?;
//! let mut cfg = TrainConfig::quick(corpus.vocab.len());
//! cfg.seed = 1;                                            // init, batches and dropout
//! cfg.attention = AttentionKind::Flash(FlashTiles::new(16, 16)); // or AttentionKind::Baseline
//! cfg.precision = Precision::Bf16Emulated;                 // or Precision::F32
//! let mut trainer = Trainer::new(cfg, &corpus.train)?;
//! trainer.run(false, |info, model| {
//!     if info.step % 10 == 0 {
//!         for (name, values) in model.tensors() { let _ = (name, values.len()); }
//!     }
//! })?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! - [`TrainConfig`] picks the model size, the forward attention algorithm
//!   ([`AttentionKind::Baseline`] or [`AttentionKind::Flash`] with its tiles; the backward is
//!   always the recomputing kernel `attention_backward`), the [`Precision`], the seed and the
//!   [`Recipe`]. [`TrainConfig::quick`] is a seconds-sized config; [`TrainConfig::standard`] the
//!   one of docs/results/layerskip.md.
//! - [`Trainer::step`] runs one Adam step and returns [`StepInfo`]; [`Trainer::run`] runs all
//!   steps with an optional progress bar and calls a callback after each step with the trainer,
//!   whose [`Trainer::tensors`] yields every weight tensor by name (`embedding`,
//!   `layers.{l}.{wq,wk,wv,wo,attn_norm,mlp_norm,w_gate,w_up,w_down}`, `final_norm`, `lm_head`)
//!   and [`Trainer::params`] the flat vector in the kernel layout.
//! - Runs are reproducible: the same config and corpus give the same weights bit for bit
//!   (single-threaded, every random draw from a ChaCha8 stream seeded by `seed`).
//! - [`checkpoint`] saves and loads safetensors files with the config and vocabulary in the
//!   metadata.

pub mod amp;
pub mod checkpoint;
pub mod corpus;
pub mod eval;
pub mod network;
pub mod schedule;

pub use amp::LossScaler;
pub use corpus::{synthetic_corpus, Corpus, Vocab};
pub use schedule::{Curriculum, EarlyExitLoss, LayerDropout};

use crate::budget::{ensure_fits, Need};
use anyhow::{bail, ensure, Context};
use network::Network;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tessera_kernels::nn::{AttentionKind, ModelConfig, TensorKind};
use tessera_kernels::optim::{adam_step, AdamConfig};

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
    /// [`LossScaler`]): the loss is multiplied by the scale before the backward, the rounded
    /// gradients are divided by it in `f32`, and a step whose gradients overflowed fp16 is skipped.
    MixedF16,
}

impl Precision {
    /// The format the forward and backward compute in, for the mixed-precision modes.
    fn compute_rounding(self) -> Option<tessera_kernels::nn::ActivationRounding> {
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
            dropout: LayerDropout {
                p_max: 0.0,
                time_scale: false,
            },
            early_exit: None,
        }
    }

    /// The recipe of docs/results/layerskip.md: `p_max = 0.2` constant in time, early-exit loss
    /// with `e_scale = 1` on every exit (the "stronger recipe" of PAPERS.md §3).
    pub fn layerskip() -> Recipe {
        Recipe {
            dropout: LayerDropout {
                p_max: 0.2,
                time_scale: false,
            },
            early_exit: Some(EarlyExitLoss {
                e_scale: 1.0,
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

/// What one step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepInfo {
    /// The step just taken (1-based).
    pub step: usize,
    /// Mean cross-entropy of the last layer's exit over the batch (nats/token).
    pub loss: f64,
    /// Mean weighted early-exit loss `J` (equals `loss` without the recipe).
    pub weighted_loss: f64,
    /// Layer evaluations skipped by dropout in this batch.
    pub dropped_layers: usize,
    /// The learning rate used.
    pub lr: f32,
}

/// The names of every weight tensor with their ranges in the flat vector, in layout order.
pub fn tensor_names(c: &ModelConfig) -> Vec<(String, std::ops::Range<usize>)> {
    (0..c.tensor_count())
        .filter_map(|i| c.tensor_at(i))
        .filter_map(|id| {
            let name = if id.kind.per_layer() {
                format!("layers.{}.{}", id.layer, id.kind.name())
            } else {
                id.kind.name().to_string()
            };
            c.tensor_range(id).ok().map(|r| (name, r))
        })
        .collect()
}

/// Initial weights: norm gains 1, matrices normal with std 0.02 (output projections `wo` and
/// `w_down` scaled by `1/sqrt(2L)`), all from `seed`.
pub fn init_params(c: &ModelConfig, seed: u64) -> anyhow::Result<Vec<f32>> {
    let n = c.param_count().context("bad model config")?;
    let mut p = vec![0.0f32; n];
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1A7E_5EED);
    for i in 0..c.tensor_count() {
        let Some(id) = c.tensor_at(i) else { continue };
        let r = c.tensor_range(id)?;
        let std = match id.kind {
            TensorKind::AttnNorm | TensorKind::MlpNorm | TensorKind::FinalNorm => {
                p[r].fill(1.0);
                continue;
            }
            TensorKind::Wo | TensorKind::WDown => 0.02 / (2.0 * c.layers as f32).sqrt(),
            _ => 0.02,
        };
        let normal = Normal::new(0.0f32, std)?;
        for x in &mut p[r] {
            *x = normal.sample(&mut rng);
        }
    }
    Ok(p)
}

/// A training run in progress: the weights, Adam's state and the data stream.
pub struct Trainer {
    cfg: TrainConfig,
    params: Vec<f32>,
    grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    step: usize,
    rng: ChaCha8Rng,
    data: Vec<u32>,
    net: Network,
    names: Vec<(String, std::ops::Range<usize>)>,
    /// The rounded copy of the master weights that mixed precision computes with (empty
    /// otherwise).
    compute: Vec<f32>,
    scaler: LossScaler,
}

impl Trainer {
    /// A fresh run on the training tokens `data` (at least `seq_len + 1` of them).
    pub fn new(cfg: TrainConfig, data: &[u32]) -> anyhow::Result<Trainer> {
        cfg.validate()?;
        ensure!(
            data.len() > cfg.seq_len,
            "the corpus has {} tokens; a sequence needs {}",
            data.len(),
            cfg.seq_len + 1
        );
        if let Some(&bad) = data.iter().find(|&&t| t as usize >= cfg.model.vocab) {
            anyhow::bail!("token {bad} is outside the vocabulary");
        }
        // Weights, gradients and Adam's two moments, the network's buffers and the data.
        let weights = cfg.model.param_count().map_err(|e| anyhow::anyhow!("{e}"));
        let mut needs = vec![Need::floats(
            "the weights, gradients and Adam state",
            weights.and_then(|n| n.checked_mul(4).context("overflow")),
        )];
        needs.extend(Network::needs(&cfg.model, cfg.seq_len, cfg.attention));
        needs.push(Need::of::<u32, ()>("the training tokens", Ok(data.len())));
        ensure_fits(
            &needs,
            "use a smaller model (--layers, --dim, --ffn) or --seq-len",
        )?;
        let mut params = init_params(&cfg.model, cfg.seed)?;
        if cfg.precision == Precision::Bf16Emulated {
            crate::precision::round_bf16(&mut params);
        }
        let n = params.len();
        Ok(Trainer {
            // network.rs reports its errors as text.
            net: Network::new(cfg.model, cfg.seq_len, cfg.attention, cfg.precision)?,
            names: tensor_names(&cfg.model),
            params,
            grads: vec![0.0; n],
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            data: data.to_vec(),
            compute: match cfg.precision.compute_rounding() {
                Some(_) => vec![0.0; n],
                None => Vec::new(),
            },
            scaler: LossScaler::new(),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Starts from `params` (e.g. a checkpoint's) instead of the random initialisation; Adam's
    /// state stays zero. The length must match the config's model.
    pub fn set_params(&mut self, params: &[f32]) -> anyhow::Result<()> {
        ensure!(
            params.len() == self.params.len(),
            "the initial weights have {} values, the model needs {}",
            params.len(),
            self.params.len()
        );
        self.params.copy_from_slice(params);
        if self.cfg.precision == Precision::Bf16Emulated {
            crate::precision::round_bf16(&mut self.params);
        }
        Ok(())
    }

    /// The loss scaler's state ([`Precision::MixedF16`] uses it; other modes leave it at its
    /// initial value).
    pub fn loss_scaler(&self) -> LossScaler {
        self.scaler
    }

    /// All weights, in the kernel layout (`ModelWeights::new(config.model, params)`); the `f32`
    /// master weights in the mixed-precision modes.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Every weight tensor by name, in layout order.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &[f32])> + '_ {
        self.names
            .iter()
            .map(move |(name, r)| (name.as_str(), &self.params[r.clone()]))
    }

    /// One Adam step on a fresh batch.
    pub fn step(&mut self) -> anyhow::Result<StepInfo> {
        let cfg = self.cfg;
        let (l_count, t, steps) = (cfg.model.layers, self.step, cfg.steps);
        let scales = match cfg.recipe.early_exit {
            Some(e) => e.scales(l_count, t, steps),
            None => schedule::last_layer_only(l_count),
        };
        let rates: Vec<f64> = (0..l_count)
            .map(|l| cfg.recipe.dropout.rate(l, l_count, t, steps))
            .collect();
        self.grads.fill(0.0);
        let rounding = cfg.precision.compute_rounding();
        // fp16 scales the loss (and so every gradient) up so that small gradients survive fp16.
        let amp_scale = match cfg.precision {
            Precision::MixedF16 => self.scaler.scale,
            _ => 1.0,
        };
        let forward_params = match rounding {
            Some(r) => {
                self.compute.copy_from_slice(&self.params);
                r.round(&mut self.compute);
                &self.compute
            }
            None => &self.params,
        };
        let loss_scale = amp_scale / (cfg.batch * cfg.seq_len) as f32;
        let (mut last_loss, mut weighted, mut dropped) = (0.0f64, 0.0f64, 0usize);
        let mut drop = vec![false; l_count];
        for _ in 0..cfg.batch {
            let start = self.rng.random_range(0..self.data.len() - cfg.seq_len);
            let inputs = &self.data[start..start + cfg.seq_len];
            let targets = &self.data[start + 1..start + 1 + cfg.seq_len];
            for (d, &p) in drop.iter_mut().zip(&rates) {
                *d = p > 0.0 && self.rng.random_bool(p);
            }
            let out = self.net.forward_backward(
                forward_params,
                &mut self.grads,
                inputs,
                targets,
                &drop,
                &scales,
                loss_scale,
            )?;
            dropped += out.dropped;
            for (l, loss) in out.per_exit.iter().enumerate() {
                if let Some(x) = loss {
                    weighted += scales[l] as f64 * x;
                    if l + 1 == l_count {
                        last_loss += x;
                    }
                }
            }
        }
        let tokens = cfg.batch as f64 * cfg.seq_len as f64;
        if let Some(r) = rounding {
            // The batch's weight gradients come out of the low-precision backward in its format;
            // the optimizer step then works on them in f32, unscaled.
            r.round(&mut self.grads);
            let overflowed = self.grads.iter().any(|g| !g.is_finite());
            if cfg.precision == Precision::MixedF16 {
                self.scaler.update(overflowed);
                if overflowed && last_loss.is_finite() {
                    // GradScaler skips the update; the step still counts (the schedule moves on).
                    self.step += 1;
                    return Ok(StepInfo {
                        step: self.step,
                        loss: last_loss / tokens,
                        weighted_loss: weighted / tokens,
                        dropped_layers: dropped,
                        lr: cfg.lr_at(t),
                    });
                }
            }
            let unscale = 1.0 / amp_scale;
            self.grads.iter_mut().for_each(|g| *g *= unscale);
        }
        let norm = self
            .grads
            .iter()
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt();
        // A run that diverged stops here with the step, rather than training on NaN.
        ensure!(
            last_loss.is_finite() && weighted.is_finite() && norm.is_finite(),
            "step {}: training diverged (loss {}, gradient norm {norm}); lower the learning rate",
            t + 1,
            last_loss / tokens
        );
        if cfg.grad_clip > 0.0 && norm > cfg.grad_clip as f64 {
            let s = (cfg.grad_clip as f64 / norm) as f32;
            self.grads.iter_mut().for_each(|g| *g *= s);
        }
        let lr = cfg.lr_at(t);
        let adam = AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        self.step += 1;
        adam_step(
            &adam,
            self.step as u32,
            &mut self.params,
            &self.grads,
            &mut self.m,
            &mut self.v,
        )
        .with_context(|| format!("adam step {}", self.step))?;
        if cfg.precision == Precision::Bf16Emulated {
            crate::precision::round_bf16(&mut self.params);
        }
        if let Some(i) = self.params.iter().position(|p| !p.is_finite()) {
            bail!(
                "step {}: weight {i} became {} (training diverged); lower the learning rate",
                self.step,
                self.params[i]
            );
        }
        Ok(StepInfo {
            step: self.step,
            loss: last_loss / tokens,
            weighted_loss: weighted / tokens,
            dropped_layers: dropped,
            lr,
        })
    }

    /// Runs the remaining steps, showing progress and the loss when `progress` (`crate::progress`),
    /// calling `after_step(info, trainer)` after each step.
    pub fn run(
        &mut self,
        progress: bool,
        mut after_step: impl FnMut(&StepInfo, &Trainer),
    ) -> anyhow::Result<()> {
        let bar = crate::progress::Progress::new(
            progress,
            "train",
            self.cfg.steps as u64,
            "{elapsed_precise} [{bar:30}] {pos}/{len} eta {eta} {msg}",
        )?;
        bar.set_position(self.step as u64);
        let mut ema: Option<f64> = None;
        while self.step < self.cfg.steps {
            let info = self.step()?;
            let e = ema.map_or(info.loss, |e| 0.95 * e + 0.05 * info.loss);
            ema = Some(e);
            bar.set_message(format!("loss {:.3} (avg {e:.3})", info.loss));
            bar.inc(1);
            after_step(&info, self);
        }
        bar.finish();
        Ok(())
    }
}
