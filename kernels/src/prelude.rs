//! The names most programs use, from every family: `use tessera_kernels::prelude::*;`.
//!
//! ```
//! use tessera_kernels::prelude::*;
//! // attention
//! let shape = AttentionShape::new(1, 2, 8, 8, 16).with_causal(true);
//! let x = vec![0.25f32; 2 * 8 * 16];
//! let mut out = vec![0.0f32; x.len()];
//! let mut scratch = vec![0.0f32; baseline_scratch_len(&shape)?];
//! baseline_attention_with(Backend::Auto, &shape, &x, &x, &x, &mut out, &mut scratch)?;
//! // a dense layer and an optimizer step on the same backend
//! let (w, mut y) = (vec![0.5f32; 4 * 16], vec![0.0f32; 4]);
//! linear_matmul_with(Backend::Auto, LinearShape::new(1, 16, 4), &x[..16], &w, &mut y)?;
//! let (mut p, g, mut m, mut v) = (vec![1.0f32; 4], y.clone(), vec![0.0f32; 4], vec![0.0f32; 4]);
//! adam_step_with(Backend::Auto, &AdamConfig::default(), 1, &mut p, &g, &mut m, &mut v)?;
//! # Ok::<(), Error>(())
//! ```

pub use crate::attention::{
    baseline_attention, baseline_attention_with, baseline_scratch_len, flash_attention,
    flash_attention_with, flash_scratch_len, AttentionShape, FlashTiles, Layout,
};
pub use crate::nn::{
    decoder_layer_forward, layer_scratch_len, linear_matmul, linear_matmul_with, model_forward,
    model_scratch_len, self_speculative_decode, speculative_scratch_len, AttentionKind,
    LinearShape, ModelConfig, ModelWeights,
};
pub use crate::optim::{
    adam_step, adam_step_with, momentum_step, momentum_step_with, sgd_step, sgd_step_with,
    AdamConfig, Learn, MomentumConfig, Optimizer, Schedule, SgdConfig, Tower,
};
pub use crate::simd::{available_backends, Backend};
pub use crate::{bf16, Accumulator, Element, Error, Result};
