//! The profiler of a characterization run: time per operator class, and every attention call's
//! shape.
//!
//! Times are this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) where the OS has it, wall time
//! elsewhere: on a machine shared with other processes, wall time also counts the time the
//! thread waited for a core, which lands on whichever operator happened to be running.

use serde::Serialize;
use std::collections::BTreeMap;

/// Seconds on the profiling clock: this thread's CPU time on Unix, wall time elsewhere.
pub fn clock() -> f64 {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    }
    #[cfg(not(unix))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
}

/// What [`clock`] measures, for reports.
pub const CLOCK_NAME: &str = if cfg!(unix) {
    "thread CPU time"
} else {
    "wall time"
};

/// The operator classes of the paper's breakdowns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    /// 2-D convolutions (UNet resnet blocks, down/upsampling, 1×1 projections of the spatial
    /// transformers).
    Conv,
    /// Dense layers (attention projections, feed-forward, time embedding, logits).
    Linear,
    /// Self-attention over the pixels of one frame (or over image tokens).
    AttentionSpatial,
    /// Cross-attention from pixels (or image tokens) to the text tokens.
    AttentionCross,
    /// Self-attention over a pixel's frames.
    AttentionTemporal,
    /// Group and layer norm.
    Norm,
    /// Everything else: activations, residual adds, up-sampling, skip concatenation, layout
    /// copies, embeddings, sampling.
    Other,
}

impl OpClass {
    /// Every class, in report order.
    pub const ALL: [OpClass; 7] = [
        OpClass::Conv,
        OpClass::Linear,
        OpClass::AttentionSpatial,
        OpClass::AttentionCross,
        OpClass::AttentionTemporal,
        OpClass::Norm,
        OpClass::Other,
    ];

    /// The name in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            OpClass::Conv => "conv",
            OpClass::Linear => "linear",
            OpClass::AttentionSpatial => "attention_spatial",
            OpClass::AttentionCross => "attention_cross",
            OpClass::AttentionTemporal => "attention_temporal",
            OpClass::Norm => "norm",
            OpClass::Other => "other",
        }
    }

    /// Whether the class is attention.
    pub fn is_attention(self) -> bool {
        matches!(
            self,
            OpClass::AttentionSpatial | OpClass::AttentionCross | OpClass::AttentionTemporal
        )
    }
}

/// The shape of attention calls grouped under one record (identical calls at one place).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CallKey {
    /// `attention_spatial`, `attention_cross` or `attention_temporal`.
    pub op_class: &'static str,
    /// Where in the model (`down0`, `mid`, `up2`, `decoder`, ...).
    pub site: String,
    /// Denoising step or decoded token.
    pub step: usize,
    /// Query rows per head: the sequence length the kernel sees.
    pub seq_len: usize,
    /// Keys per head.
    pub kv_len: usize,
    /// Independent sequences (frames, or pixels for temporal attention).
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Features per head.
    pub head_dim: usize,
}

/// One attention record: a call shape, how many such calls, their total time.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionRecord {
    /// The shape and place.
    #[serde(flatten)]
    pub key: CallKey,
    /// Calls of this shape at this place and step.
    pub calls: u64,
    /// Their total wall time.
    pub seconds: f64,
}

/// Accumulated times of a run.
#[derive(Default)]
pub struct Profiler {
    seconds: BTreeMap<OpClass, f64>,
    calls: BTreeMap<OpClass, u64>,
    attention: BTreeMap<CallKey, (u64, f64)>,
    /// The current place in the model (attached to attention records).
    pub site: String,
    /// The current step.
    pub step: usize,
}

impl Profiler {
    /// An empty profile.
    pub fn new() -> Self {
        Profiler::default()
    }

    /// Runs `f`, adding its wall time to `class`.
    pub fn time<T>(&mut self, class: OpClass, f: impl FnOnce() -> T) -> T {
        let start = clock();
        let out = f();
        let dt = clock() - start;
        *self.seconds.entry(class).or_default() += dt;
        *self.calls.entry(class).or_default() += 1;
        out
    }

    /// Runs an attention call `f` of the given shape, recording it under `class`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention<T>(
        &mut self,
        class: OpClass,
        seq_len: usize,
        kv_len: usize,
        batch: usize,
        heads: usize,
        head_dim: usize,
        f: impl FnOnce() -> T,
    ) -> T {
        let start = clock();
        let out = f();
        let dt = clock() - start;
        *self.seconds.entry(class).or_default() += dt;
        *self.calls.entry(class).or_default() += 1;
        let key = CallKey {
            op_class: class.name(),
            site: self.site.clone(),
            step: self.step,
            seq_len,
            kv_len,
            batch,
            heads,
            head_dim,
        };
        let e = self.attention.entry(key).or_default();
        e.0 += 1;
        e.1 += dt;
        out
    }

    /// Seconds per class (every class, zero if unused).
    pub fn class_seconds(&self) -> Vec<(OpClass, f64, u64)> {
        OpClass::ALL
            .iter()
            .map(|&c| {
                (
                    c,
                    self.seconds.get(&c).copied().unwrap_or(0.0),
                    self.calls.get(&c).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The attention records, in shape order.
    pub fn attention_records(&self) -> Vec<AttentionRecord> {
        self.attention
            .iter()
            .map(|(key, &(calls, seconds))| AttentionRecord {
                key: key.clone(),
                calls,
                seconds,
            })
            .collect()
    }
}
