//! Kernels of image and video generators beyond a transformer's: 2-D convolution, group and
//! layer norm, resampling and the diffusion activations, over NHWC activations (a pixel's
//! channels contiguous, so an image is a `[pixels, channels]` token matrix that the dense layer
//! and token-major attention read as is).
//!
//! Cross-attention (queries from pixels, keys and values from text tokens) and temporal
//! attention (the sequence is a pixel's frames, the batch every pixel) are shapes of
//! [`flash_attention`](crate::attention::flash_attention) and
//! [`baseline_attention`](crate::attention::baseline_attention): see
//! [`Layout::FrameMajor`](crate::attention::Layout::FrameMajor).

mod activation;
mod conv2d;
mod group_norm;
mod resample;

pub use activation::{geglu_forward, gelu, gelu_in_place, silu_in_place};
pub use conv2d::{conv2d, conv2d_scratch_len, conv2d_with, Conv2dShape, CONV_TILE};
pub use group_norm::{group_norm, group_norm_with, layer_norm, GroupNormShape};
pub use resample::upsample_nearest2x;
