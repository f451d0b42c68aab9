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
//!   ([`AttentionKind::Baseline`](tessera_kernels::nn::AttentionKind::Baseline) or [`AttentionKind::Flash`](tessera_kernels::nn::AttentionKind::Flash) with its tiles; the backward is
//!   always the recomputing kernel `attention_backward`), the [`Precision`], the seed and the
//!   [`Recipe`]. [`TrainConfig::quick`] is a seconds-sized config; [`TrainConfig::standard`] the
//!   one of docs/results/layerskip.md.
//! - [`Trainer::step`] runs one Adam step and returns [`StepInfo`]; [`Trainer::run`] runs all
//!   steps with an optional progress bar and calls a callback after each step with the trainer,
//!   whose [`Trainer::tensors`] yields every weight tensor by name (`embedding`,
//!   `layers.{l}.{wq,wk,wv,wo,attn_norm,mlp_norm,w_gate,w_up,w_down}`, `final_norm`, `lm_head`)
//!   and [`Trainer::params`] the flat vector in the kernel layout.
//! - Runs are reproducible: the same config and corpus give the same weights bit for bit, for any
//!   thread count ([`Trainer::set_threads`]; data-parallel over the batch, every random draw from
//!   a ChaCha8 stream seeded by `seed` on the calling thread, each sequence's gradient in its own
//!   buffer, the buffers summed in sequence order).
//! - [`checkpoint`] saves and loads safetensors files with the config and vocabulary in the
//!   metadata.

pub mod amp;
pub mod checkpoint;
mod config;
pub mod corpus;
pub mod eval;
pub mod network;
pub mod resume;
pub mod sampling;
pub mod schedule;
pub mod speedup;

pub use amp::LossScaler;
pub use config::{Precision, Recipe, TrainConfig};
pub use corpus::{synthetic_corpus, Corpus, Vocab};
pub use schedule::{Curriculum, EarlyExitLoss, LayerDropout, LossScale, TimeScale};

use crate::budget::{ensure_fits, Need};
use anyhow::{bail, ensure, Context};
use network::Network;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tessera_kernels::nn::{ModelConfig, TensorKind};
use tessera_kernels::optim::{adam_step, AdamConfig};

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
    /// One network per worker thread.
    nets: Vec<Network>,
    /// One gradient buffer per sequence of the batch, summed in sequence order.
    slots: Vec<Vec<f32>>,
    names: Vec<(String, std::ops::Range<usize>)>,
    /// The rounded copy of the master weights that mixed precision computes with (empty
    /// otherwise).
    compute: Vec<f32>,
    scaler: LossScaler,
}

/// The threads a trainer uses by default: every core, at most one per sequence of the batch.
pub fn default_threads(batch: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, batch.max(1))
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
        let weights_n = cfg.model.param_count().map_err(|e| anyhow::anyhow!("{e}"));
        let mut needs = vec![Need::floats(
            "the weights, gradients and Adam state",
            weights.and_then(|n| n.checked_mul(4).context("overflow")),
        )];
        // One network per thread and one gradient buffer per sequence (data parallelism).
        let threads = default_threads(cfg.batch);
        for _ in 0..threads {
            needs.extend(Network::needs(&cfg.model, cfg.seq_len, cfg.attention));
        }
        needs.push(Need::floats(
            "the per-sequence gradients",
            weights_n.and_then(|n| n.checked_mul(cfg.batch).context("overflow")),
        ));
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
        let nets = (0..default_threads(cfg.batch))
            .map(|_| Network::new(cfg.model, cfg.seq_len, cfg.attention, cfg.precision))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Trainer {
            nets,
            slots: vec![Vec::new(); cfg.batch],
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

    /// Worker threads of the data-parallel step.
    pub fn threads(&self) -> usize {
        self.nets.len()
    }

    /// Uses `threads` worker threads (at least 1, at most one per sequence of the batch). The
    /// weights do not depend on it: each sequence's gradient goes to its own buffer and the
    /// buffers are summed in sequence order.
    pub fn set_threads(&mut self, threads: usize) -> anyhow::Result<()> {
        let want = threads.clamp(1, self.cfg.batch);
        let c = &self.cfg;
        while self.nets.len() < want {
            self.nets
                .push(Network::new(c.model, c.seq_len, c.attention, c.precision)?);
        }
        self.nets.truncate(want);
        Ok(())
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

    /// The dropout rate of every layer at step `t`.
    fn rates(&self, t: usize) -> Vec<f64> {
        let (l_count, steps) = (self.cfg.model.layers, self.cfg.steps);
        (0..l_count)
            .map(|l| self.cfg.recipe.dropout.rate(l, l_count, t, steps))
            .collect()
    }

    /// The batch's random draws: per sequence its start in the data and the layers it skips.
    /// Every draw happens here, on the calling thread, in sequence order, whatever the thread
    /// count (and [`resume`] replays them to continue a run).
    fn draw_batch(&mut self, rates: &[f64]) -> Vec<(usize, Vec<bool>)> {
        let (batch, seq) = (self.cfg.batch, self.cfg.seq_len);
        (0..batch)
            .map(|_| {
                let start = self.rng.random_range(0..self.data.len() - seq);
                let drop = rates
                    .iter()
                    .map(|&p| p > 0.0 && self.rng.random_bool(p))
                    .collect();
                (start, drop)
            })
            .collect()
    }

    /// One Adam step on a fresh batch.
    pub fn step(&mut self) -> anyhow::Result<StepInfo> {
        let cfg = self.cfg;
        let (l_count, t, steps) = (cfg.model.layers, self.step, cfg.steps);
        let scales = match cfg.recipe.early_exit {
            Some(e) => e.scales(l_count, t, steps),
            None => schedule::last_layer_only(l_count),
        };
        let rates = self.rates(t);
        let rounding = cfg.precision.compute_rounding();
        // fp16 scales the loss (and so every gradient) up so that small gradients survive fp16.
        let amp_scale = match cfg.precision {
            Precision::MixedF16 => self.scaler.scale,
            _ => 1.0,
        };
        // Mixed precision: the forward and backward see the master weights rounded.
        if let Some(r) = rounding {
            self.compute.copy_from_slice(&self.params);
            r.round(&mut self.compute);
        }
        let loss_scale = amp_scale / (cfg.batch * cfg.seq_len) as f32;
        let samples = self.draw_batch(&rates);
        let n = self.params.len();
        for slot in &mut self.slots {
            slot.clear();
            slot.resize(n, 0.0);
        }
        let per = cfg.batch.div_ceil(self.nets.len());
        let params: &[f32] = if rounding.is_some() {
            &self.compute
        } else {
            &self.params
        };
        let (data, seq) = (&self.data, cfg.seq_len);
        let scales = &scales;
        let outs: Vec<anyhow::Result<Vec<network::SequenceLoss>>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nets
                .iter_mut()
                .zip(self.slots.chunks_mut(per))
                .zip(samples.chunks(per))
                .map(|((net, slots), samples)| {
                    s.spawn(move || {
                        let mut outs = Vec::with_capacity(samples.len());
                        for (grads, (start, drop)) in slots.iter_mut().zip(samples) {
                            outs.push(net.forward_backward(
                                params,
                                grads,
                                &data[*start..start + seq],
                                &data[start + 1..start + 1 + seq],
                                drop,
                                scales,
                                loss_scale,
                            )?);
                        }
                        Ok(outs)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a training thread panicked")))
                })
                .collect()
        });
        // Sum the per-sequence gradients in sequence order: the result is the same for any
        // thread count.
        self.grads.fill(0.0);
        for slot in &self.slots {
            self.grads.iter_mut().zip(slot).for_each(|(g, &x)| *g += x);
        }
        let (mut last_loss, mut weighted, mut dropped) = (0.0f64, 0.0f64, 0usize);
        for out in outs {
            for out in out? {
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
