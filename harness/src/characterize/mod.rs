//! `tessera characterize`: where the time of text-to-image and text-to-video generation goes on
//! this CPU, by operator class, after "Generative AI Beyond LLMs" (Golden et al. 2024).
//!
//! - [`profile`]: the per-class timer and the attention call records;
//! - [`ops`]: the layers (convolution, dense, norms, attention of each kind), each call timed;
//! - [`unet`]: the Stable-Diffusion-1.5-style UNet and its video variant;
//! - [`token`]: the Parti-style autoregressive token decoder;
//! - [`report`]: JSON, Markdown and SVG stacked bars, and the verdicts against the paper.

pub mod ops;
pub mod profile;
pub mod report;
pub mod token;
pub mod unet;

use crate::attention::Kernel;
use crate::progress::Progress;
use anyhow::Result;
use ops::{Ctx, WeightSource};
use profile::{clock, AttentionRecord, OpClass, Profiler};
use serde::Serialize;
use std::time::Instant;
use tessera_kernels::attention::FlashTiles;
use token::{TokenConfig, TokenDecoder};
use unet::{Unet, UnetConfig};

/// Which generation task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Text to image: the diffusion UNet and the token decoder.
    Tti,
    /// Text to video: the video UNet.
    Ttv,
}

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The task.
    pub task: Task,
    /// The quick configuration.
    pub quick: bool,
    /// Seed of weights and inputs.
    pub seed: u64,
    /// The attention algorithms, each running every model.
    #[serde(skip)]
    pub kernels: Vec<Kernel>,
    /// Flash tiles.
    #[serde(skip)]
    pub tiles: FlashTiles,
    /// The diffusion UNet (image or video).
    pub unet: Option<UnetConfig>,
    /// The token decoder (TTI only).
    pub token: Option<TokenConfig>,
}

impl Plan {
    /// The plan of `task`: quick (minutes on 2 cores) or at the published resolution.
    pub fn new(task: Task, quick: bool, seed: u64) -> Self {
        let (unet, token) = match (task, quick) {
            (Task::Tti, true) => (
                UnetConfig::sd15(32, 1),
                Some(TokenConfig::parti_350m(4, 256)),
            ),
            (Task::Tti, false) => (
                UnetConfig::sd15(64, 2),
                Some(TokenConfig::parti_350m(12, 1024)),
            ),
            (Task::Ttv, true) => (UnetConfig::video(16, 8, 1), None),
            (Task::Ttv, false) => (UnetConfig::video(32, 16, 1), None),
        };
        Plan {
            task,
            quick,
            seed,
            kernels: vec![Kernel::Flash, Kernel::Baseline],
            tiles: FlashTiles::new(32, 64),
            unet: Some(unet),
            token,
        }
    }

    /// Units of progress: UNet stages and decoded tokens, per algorithm.
    fn units(&self, unet: Option<&Unet>) -> u64 {
        let u = match (&self.unet, unet) {
            (Some(c), Some(m)) => c.steps as u64 * m.units_per_step(),
            _ => 0,
        };
        let t = self.token.as_ref().map_or(0, |c| c.image_tokens as u64);
        (u + t) * self.kernels.len() as u64
    }
}

/// The time of one operator class in one run.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRecord {
    /// The class (`conv`, `linear`, `attention_spatial`, ...).
    pub op_class: &'static str,
    /// Its total wall time.
    pub seconds: f64,
    /// Calls timed.
    pub calls: u64,
    /// Its share of the measured total.
    pub share: f64,
}

/// One model run with one attention algorithm.
#[derive(Clone, Debug, Serialize)]
pub struct ModelRun {
    /// `sd15_unet`, `parti_decoder` or `video_unet`.
    pub model: &'static str,
    /// `diffusion` or `transformer`.
    pub family: &'static str,
    /// `flash` or `baseline`.
    pub attention: &'static str,
    /// Time of the whole generation on the profiling clock ([`profile::clock`]: thread CPU
    /// time), measured around it.
    pub total_seconds: f64,
    /// Wall time of the whole generation (includes waiting for a core on a busy machine).
    pub wall_seconds: f64,
    /// Sum of the class times.
    pub classes_sum_seconds: f64,
    /// Per-class times.
    pub classes: Vec<ClassRecord>,
    /// Every attention call shape with its count and time.
    pub attention_calls: Vec<AttentionRecord>,
}

impl ModelRun {
    fn new(
        model: &'static str,
        family: &'static str,
        kernel: Kernel,
        (total, wall): (f64, f64),
        prof: &Profiler,
    ) -> Self {
        let classes: Vec<ClassRecord> = prof
            .class_seconds()
            .into_iter()
            .map(|(c, seconds, calls)| ClassRecord {
                op_class: c.name(),
                seconds,
                calls,
                share: seconds / total,
            })
            .collect();
        ModelRun {
            model,
            family,
            attention: kernel.name(),
            total_seconds: total,
            wall_seconds: wall,
            classes_sum_seconds: classes.iter().map(|c| c.seconds).sum(),
            classes,
            attention_calls: prof.attention_records(),
        }
    }

    /// The seconds of `class`.
    pub fn seconds(&self, class: OpClass) -> f64 {
        self.classes
            .iter()
            .find(|c| c.op_class == class.name())
            .map_or(0.0, |c| c.seconds)
    }

    /// The seconds of every attention class together.
    pub fn attention_seconds(&self) -> f64 {
        OpClass::ALL
            .iter()
            .filter(|c| c.is_attention())
            .map(|&c| self.seconds(c))
            .sum()
    }
}

/// Runs `plan`, reporting progress if `show_progress`.
pub fn run(plan: &Plan, show_progress: bool) -> Result<Vec<ModelRun>> {
    let unet = plan.unet.as_ref().map(|c| Unet::new(c, plan.seed));
    let token = plan
        .token
        .as_ref()
        .map(|c| TokenDecoder::new(c, plan.seed + 1));
    let progress = Progress::new(
        show_progress,
        "characterize",
        plan.units(unet.as_ref()),
        "{bar:40} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]",
    )?;
    let mut runs = Vec::new();
    let mut inputs = WeightSource::new(plan.seed + 2);
    for &kernel in &plan.kernels {
        let new_ctx = || Ctx {
            prof: Profiler::new(),
            kernel,
            tiles: plan.tiles,
        };
        if let (Some(cfg), Some(model)) = (&plan.unet, &unet) {
            let name = if cfg.temporal {
                "video_unet"
            } else {
                "sd15_unet"
            };
            progress.set_message(format!("{name}, {}", kernel.name()));
            let latent_len = cfg.frames * cfg.latent * cfg.latent * cfg.latent_channels;
            let mut latent = inputs.take(latent_len, 1);
            let context = inputs.take(cfg.context_len * cfg.context_dim, 1);
            let mut ctx = new_ctx();
            let start = (clock(), Instant::now());
            for step in 0..cfg.steps {
                ctx.prof.step = step;
                let t = 999.0 * (1.0 - step as f32 / cfg.steps as f32);
                let eps = model.step(&mut ctx, &latent, t, &context, &mut || progress.inc(1))?;
                // A plain Euler-style update (the sampler's arithmetic, negligible).
                ctx.other(|| {
                    for (x, e) in latent.iter_mut().zip(&eps) {
                        *x -= 0.02 * e;
                    }
                });
            }
            let total = (clock() - start.0, start.1.elapsed().as_secs_f64());
            runs.push(ModelRun::new(name, "diffusion", kernel, total, &ctx.prof));
        }
        if let (Some(cfg), Some(model)) = (&plan.token, &token) {
            progress.set_message(format!("parti_decoder, {}", kernel.name()));
            let text = inputs.take(cfg.text_len * cfg.dim, 1);
            let mut ctx = new_ctx();
            let start = (clock(), Instant::now());
            model.generate(&mut ctx, &text, &mut || progress.inc(1))?;
            let total = (clock() - start.0, start.1.elapsed().as_secs_f64());
            runs.push(ModelRun::new(
                "parti_decoder",
                "transformer",
                kernel,
                total,
                &ctx.prof,
            ));
        }
    }
    progress.finish();
    Ok(runs)
}
