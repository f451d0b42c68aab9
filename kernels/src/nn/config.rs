//! The early-exit model's configuration and weight layout: sizes, the flat weight slice, and
//! borrowed per-layer views of weights and gradients.
//!
//! Every weight lives in one flat slice, in the order of [`ModelConfig::tensor_at`]: the
//! embedding `[vocab, dim]`; for each layer `attn_norm [dim]`, `wq [dim, dim]`,
//! `wk [kv_dim, dim]`, `wv [kv_dim, dim]`, `wo [dim, dim]`, `mlp_norm [dim]`,
//! `w_gate [ffn, dim]`, `w_up [ffn, dim]`, `w_down [dim, ffn]`; then the shared exit
//! `final_norm [dim]` and `lm_head [vocab, dim]` (LayerSkip's `g`, the same for every exit).
//! `kv_dim = kv_heads · head_dim`, `head_dim = dim / heads`.
//!
//! The KV cache is one `f32` slice of [`kv_cache_len`]: for each layer, K then V, each
//! `[kv_heads, max_seq, head_dim]`.

use super::parts::split_parts_mut;
use super::rope::MAX_HEAD_DIM;
use crate::attention::FlashTiles;
use crate::check::{length, mul, product};
use crate::{Element, Error, Result};
use core::ops::Range;

/// Which forward attention algorithm a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// [`baseline_attention`](crate::attention::baseline_attention): materialised scores.
    Baseline,
    /// [`flash_attention`](crate::attention::flash_attention) with these tiles.
    Flash(FlashTiles),
}

/// The sizes of an early-exit decoder-only transformer (pre-norm, GQA, RoPE, SwiGLU).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    /// Tokens in the vocabulary.
    pub vocab: usize,
    /// Model width.
    pub dim: usize,
    /// Decoder layers `L`.
    pub layers: usize,
    /// Query heads; divides `dim`.
    pub heads: usize,
    /// Key/value heads; divides `heads`.
    pub kv_heads: usize,
    /// Hidden width of the SwiGLU MLP.
    pub ffn_hidden: usize,
    /// Longest sequence (the KV cache's capacity per head).
    pub max_seq: usize,
    /// RoPE base, e.g. 10000.
    pub rope_theta: f32,
    /// RMSNorm epsilon, e.g. 1e-5.
    pub norm_eps: f32,
}

/// The kinds of weight tensors, in layout order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// Token embedding `[vocab, dim]`.
    Embedding,
    /// Pre-attention RMSNorm gain `[dim]`.
    AttnNorm,
    /// Query projection `[dim, dim]`.
    Wq,
    /// Key projection `[kv_dim, dim]`.
    Wk,
    /// Value projection `[kv_dim, dim]`.
    Wv,
    /// Output projection `[dim, dim]`.
    Wo,
    /// Pre-MLP RMSNorm gain `[dim]`.
    MlpNorm,
    /// SwiGLU gate projection `[ffn, dim]`.
    WGate,
    /// SwiGLU up projection `[ffn, dim]`.
    WUp,
    /// SwiGLU down projection `[dim, ffn]`.
    WDown,
    /// Shared exit RMSNorm gain `[dim]`.
    FinalNorm,
    /// Shared exit projection to logits `[vocab, dim]`.
    LmHead,
}

/// The per-layer tensor kinds, in layout order.
const LAYER_KINDS: [TensorKind; 9] = [
    TensorKind::AttnNorm,
    TensorKind::Wq,
    TensorKind::Wk,
    TensorKind::Wv,
    TensorKind::Wo,
    TensorKind::MlpNorm,
    TensorKind::WGate,
    TensorKind::WUp,
    TensorKind::WDown,
];

impl TensorKind {
    /// The tensor's name (per-layer tensors are prefixed `layers.{l}.` by tools).
    pub const fn name(self) -> &'static str {
        match self {
            TensorKind::Embedding => "embedding",
            TensorKind::AttnNorm => "attn_norm",
            TensorKind::Wq => "wq",
            TensorKind::Wk => "wk",
            TensorKind::Wv => "wv",
            TensorKind::Wo => "wo",
            TensorKind::MlpNorm => "mlp_norm",
            TensorKind::WGate => "w_gate",
            TensorKind::WUp => "w_up",
            TensorKind::WDown => "w_down",
            TensorKind::FinalNorm => "final_norm",
            TensorKind::LmHead => "lm_head",
        }
    }

    /// Whether each layer has its own tensor of this kind.
    pub const fn per_layer(self) -> bool {
        !matches!(
            self,
            TensorKind::Embedding | TensorKind::FinalNorm | TensorKind::LmHead
        )
    }
}

/// One weight tensor of a model: its kind and, for per-layer kinds, its layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId {
    /// What the tensor is.
    pub kind: TensorKind,
    /// Its layer (0 for the shared tensors).
    pub layer: usize,
}

impl ModelConfig {
    /// Features per head, `dim / heads`.
    pub fn head_dim(&self) -> usize {
        self.dim.checked_div(self.heads).unwrap_or(0)
    }

    /// Key/value features per token, `kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads.saturating_mul(self.head_dim())
    }

    /// Checks every size and parameter.
    pub fn validate(&self) -> Result<()> {
        for (value, name) in [
            (self.vocab, "vocab"),
            (self.dim, "dim"),
            (self.layers, "layers"),
            (self.heads, "heads"),
            (self.kv_heads, "kv_heads"),
            (self.ffn_hidden, "ffn_hidden"),
            (self.max_seq, "max_seq"),
        ] {
            if value == 0 {
                return Err(Error::ZeroDimension(name));
            }
        }
        if !self.dim.is_multiple_of(self.heads) {
            return Err(Error::BadParameter("heads must divide dim"));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::HeadsNotDivisible {
                heads: self.heads,
                kv_heads: self.kv_heads,
            });
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() > MAX_HEAD_DIM {
            return Err(Error::BadParameter(
                "head_dim must be even and at most 512 (RoPE)",
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(Error::BadParameter("rope_theta must be finite and above 1"));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(Error::BadParameter(
                "norm_eps must be finite and non-negative",
            ));
        }
        self.param_count().map(|_| ())
    }

    /// Elements of a tensor of this kind.
    pub fn tensor_len(&self, kind: TensorKind) -> Result<usize> {
        let (rows, cols) = self.tensor_shape(kind);
        mul(rows, cols)
    }

    /// `(rows, cols)` of a tensor of this kind (`cols == 1` for norm gains).
    pub fn tensor_shape(&self, kind: TensorKind) -> (usize, usize) {
        let (d, kv, f, v) = (self.dim, self.kv_dim(), self.ffn_hidden, self.vocab);
        match kind {
            TensorKind::Embedding | TensorKind::LmHead => (v, d),
            TensorKind::AttnNorm | TensorKind::MlpNorm | TensorKind::FinalNorm => (d, 1),
            TensorKind::Wq | TensorKind::Wo => (d, d),
            TensorKind::Wk | TensorKind::Wv => (kv, d),
            TensorKind::WGate | TensorKind::WUp => (f, d),
            TensorKind::WDown => (d, f),
        }
    }

    /// Elements of one layer's weights.
    pub fn layer_len(&self) -> Result<usize> {
        LAYER_KINDS.iter().try_fold(0usize, |acc, &k| {
            acc.checked_add(self.tensor_len(k)?).ok_or(Error::Overflow)
        })
    }

    /// Elements of all weights.
    pub fn param_count(&self) -> Result<usize> {
        let shared = [
            TensorKind::Embedding,
            TensorKind::FinalNorm,
            TensorKind::LmHead,
        ]
        .iter()
        .try_fold(0usize, |acc, &k| {
            acc.checked_add(self.tensor_len(k)?).ok_or(Error::Overflow)
        })?;
        mul(self.layers, self.layer_len()?)?
            .checked_add(shared)
            .ok_or(Error::Overflow)
    }

    /// Number of weight tensors: `9·layers + 3`.
    pub fn tensor_count(&self) -> usize {
        self.layers
            .saturating_mul(LAYER_KINDS.len())
            .saturating_add(3)
    }

    /// The `i`-th tensor in layout order, or `None` past the end.
    pub fn tensor_at(&self, i: usize) -> Option<TensorId> {
        let per_layer = self.layers.checked_mul(LAYER_KINDS.len())?;
        match i {
            0 => Some(TensorId {
                kind: TensorKind::Embedding,
                layer: 0,
            }),
            i if i <= per_layer => Some(TensorId {
                kind: *LAYER_KINDS.get((i - 1) % LAYER_KINDS.len())?,
                layer: (i - 1) / LAYER_KINDS.len(),
            }),
            i if i == per_layer + 1 => Some(TensorId {
                kind: TensorKind::FinalNorm,
                layer: 0,
            }),
            i if i == per_layer + 2 => Some(TensorId {
                kind: TensorKind::LmHead,
                layer: 0,
            }),
            _ => None,
        }
    }

    /// Where a tensor lives in the flat weight slice.
    pub fn tensor_range(&self, id: TensorId) -> Result<Range<usize>> {
        let embed = self.tensor_len(TensorKind::Embedding)?;
        let layer_len = self.layer_len()?;
        let start = if id.kind.per_layer() {
            if id.layer >= self.layers {
                return Err(Error::BadParameter("layer index out of range"));
            }
            let mut off = embed + id.layer * layer_len;
            for &k in LAYER_KINDS.iter().take_while(|&&k| k != id.kind) {
                off += self.tensor_len(k)?;
            }
            off
        } else {
            match id.kind {
                TensorKind::Embedding => 0,
                TensorKind::FinalNorm => embed + mul(self.layers, layer_len)?,
                _ => embed + mul(self.layers, layer_len)? + self.dim,
            }
        };
        Ok(start..start + self.tensor_len(id.kind)?)
    }
}

/// One decoder layer's weights, borrowed from the flat slice.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a, W> {
    /// Pre-attention RMSNorm gain.
    pub attn_norm: &'a [W],
    /// Query projection.
    pub wq: &'a [W],
    /// Key projection.
    pub wk: &'a [W],
    /// Value projection.
    pub wv: &'a [W],
    /// Output projection.
    pub wo: &'a [W],
    /// Pre-MLP RMSNorm gain.
    pub mlp_norm: &'a [W],
    /// SwiGLU gate projection.
    pub w_gate: &'a [W],
    /// SwiGLU up projection.
    pub w_up: &'a [W],
    /// SwiGLU down projection.
    pub w_down: &'a [W],
}

/// One decoder layer's weight gradients, borrowed at once from a flat gradient slice laid out
/// like the weights (backward functions *add* into them).
#[derive(Debug)]
pub struct LayerGradients<'a> {
    /// Pre-attention RMSNorm gain.
    pub attn_norm: &'a mut [f32],
    /// Query projection.
    pub wq: &'a mut [f32],
    /// Key projection.
    pub wk: &'a mut [f32],
    /// Value projection.
    pub wv: &'a mut [f32],
    /// Output projection.
    pub wo: &'a mut [f32],
    /// Pre-MLP RMSNorm gain.
    pub mlp_norm: &'a mut [f32],
    /// SwiGLU gate projection.
    pub w_gate: &'a mut [f32],
    /// SwiGLU up projection.
    pub w_up: &'a mut [f32],
    /// SwiGLU down projection.
    pub w_down: &'a mut [f32],
}

impl<'a> LayerGradients<'a> {
    /// Layer `layer`'s part of `grads`, which holds exactly [`ModelConfig::param_count`] values
    /// in the weight layout.
    pub fn new(config: &ModelConfig, grads: &'a mut [f32], layer: usize) -> Result<Self> {
        config.validate()?;
        length("gradients", grads.len(), config.param_count()?)?;
        let start = config
            .tensor_range(TensorId {
                kind: TensorKind::AttnNorm,
                layer,
            })?
            .start;
        let end = start
            .checked_add(config.layer_len()?)
            .ok_or(Error::Overflow)?;
        let block = grads.get_mut(start..end).ok_or(Error::Overflow)?;
        let mut lens = [0usize; LAYER_KINDS.len()];
        for (len, &kind) in lens.iter_mut().zip(LAYER_KINDS.iter()) {
            *len = config.tensor_len(kind)?;
        }
        let [attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down] =
            split_parts_mut("layer gradients", block, lens)?;
        Ok(LayerGradients {
            attn_norm,
            wq,
            wk,
            wv,
            wo,
            mlp_norm,
            w_gate,
            w_up,
            w_down,
        })
    }
}

/// A model: its configuration and its weights, one flat slice in the documented layout.
#[derive(Clone, Copy, Debug)]
pub struct ModelWeights<'a, W> {
    config: ModelConfig,
    data: &'a [W],
}

impl<'a, W: Element> ModelWeights<'a, W> {
    /// Checks the configuration and that `data` holds exactly its parameters.
    pub fn new(config: ModelConfig, data: &'a [W]) -> Result<Self> {
        config.validate()?;
        length("weights", data.len(), config.param_count()?)?;
        Ok(ModelWeights { config, data })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// One tensor.
    pub fn tensor(&self, id: TensorId) -> Result<&'a [W]> {
        let r = self.config.tensor_range(id)?;
        self.data.get(r).ok_or(Error::Overflow)
    }

    /// A shared (not per-layer) tensor.
    pub(crate) fn shared(&self, kind: TensorKind) -> Result<&'a [W]> {
        self.tensor(TensorId { kind, layer: 0 })
    }

    /// Layer `l`'s weights.
    pub fn layer(&self, l: usize) -> Result<LayerWeights<'a, W>> {
        let t = |kind| self.tensor(TensorId { kind, layer: l });
        Ok(LayerWeights {
            attn_norm: t(TensorKind::AttnNorm)?,
            wq: t(TensorKind::Wq)?,
            wk: t(TensorKind::Wk)?,
            wv: t(TensorKind::Wv)?,
            wo: t(TensorKind::Wo)?,
            mlp_norm: t(TensorKind::MlpNorm)?,
            w_gate: t(TensorKind::WGate)?,
            w_up: t(TensorKind::WUp)?,
            w_down: t(TensorKind::WDown)?,
        })
    }
}

/// Floats of KV cache a model needs: `layers · 2 · kv_heads · max_seq · head_dim`.
pub fn kv_cache_len(config: &ModelConfig) -> Result<usize> {
    config.validate()?;
    product(&[
        config.layers,
        2,
        config.kv_heads,
        config.max_seq,
        config.head_dim(),
    ])
}
