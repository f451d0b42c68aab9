//! Transformer building blocks with forward and backward passes, a pre-norm decoder layer (for
//! inference with a KV cache, and for training with saved activations and a backward pass, both
//! one wiring), an early-exit model and greedy self-speculative decoding (LayerSkip).
//!
//! Conventions shared by every block:
//! - activations, gradients, logits and KV caches are `f32` caller slices; weights are any
//!   [`Element`](crate::Element) (`f32` or `bf16`), widened to `f32` as they are read;
//! - matrices are row-major, a linear layer's weight is `[out, in]` (`y = x·Wᵀ`);
//! - backward functions *add* weight gradients into the caller's gradient slices (so a batch can
//!   accumulate) and *overwrite* input gradients;
//! - every row of a matrix-matrix product is computed exactly as the matrix-vector product of that
//!   row, in the same order: batched verification and one-token decoding give identical bits,
//!   which is what makes self-speculative output identical to full-model decoding;
//! - nothing allocates or panics: bad lengths or parameters return `Err`.

mod activations;
mod attention_backward;
mod config;
mod embedding;
mod heads;
mod layer;
mod layer_backward;
mod linear;
mod loss;
pub(crate) mod mlp;
mod model;
mod norm;
mod parts;
mod rope;
mod rounding;
mod speculative;

pub use activations::decoder_layer_activations_len;
pub use attention_backward::{
    attention_backward, attention_backward_scratch_len, attention_logsumexp,
};
pub use config::{
    kv_cache_len, AttentionKind, LayerGradients, LayerWeights, ModelConfig, ModelWeights, TensorId,
    TensorKind,
};
pub use embedding::{embedding_backward, embedding_forward};
pub use layer::{
    decoder_layer_forward, decoder_layer_train_forward, decoder_layer_train_scratch_len,
    layer_scratch_len,
};
pub use layer_backward::{decoder_layer_backward, decoder_layer_backward_scratch_len};
pub use linear::{
    linear_backward_input, linear_backward_weight, linear_matmul, linear_matmul_with,
    linear_matvec, LinearShape,
};
pub use loss::{argmax, softmax_cross_entropy};
pub use mlp::{
    swiglu_backward, swiglu_forward, swiglu_mlp_backward, swiglu_mlp_backward_scratch_len,
    swiglu_mlp_forward, swiglu_mlp_scratch_len, MlpGradients, MlpShape, MlpWeights,
};
pub use model::{embed_tokens, exit_logits, forward_layers, model_forward, model_scratch_len};
pub use norm::{
    rms_norm_backward, rms_norm_backward_with, rms_norm_forward, rms_norm_forward_with,
};
pub use rope::{rope_backward, rope_forward};
pub use rounding::ActivationRounding;
pub use speculative::{
    decode_scratch_len, greedy_decode, self_speculative_decode, speculative_scratch_len,
    DecodeStats,
};
