//! Accumulators: the number format intermediate results are computed and rounded in.
//!
//! Production kernels accumulate in `f32`. Research runs instantiate the *same* attention code with
//! other formats, each a precision model of the deviation study (docs/numerics.md):
//!
//! | model | flash | baseline | what it imitates |
//! |---|---|---|---|
//! | `fa2` | `bf16` elements, `f32` | | FlashAttention-2/3 forward as shipped: `S`, `m`, `l`, `O` in `f32`, `P` and the output rounded to bf16 |
//! | fused | | `bf16` elements, `f32` | a fused attention kernel with `f32` state (Tessera's production baseline) |
//! | `bf16-ops` | | [`Bf16Ops`] | `softmax(q @ k.T * scale) @ v` op by op on bf16 tensors |
//! | `paper` | [`Bf16Mma`] | [`Bf16Mma`] | "Is Flash Attention Stable?"'s re-implementation: every stored intermediate in bf16, `f32` inside each matmul |
//! | every-op | [`Bf16Acc`] | [`Bf16Acc`] | every operation rounded to bf16, reductions included (an ablation) |
//!
//! and the same for fp16 ([`F16Ops`], [`F16Mma`], [`F16Acc`]; no fp16 element type, so no `fa2`
//! model for fp16), plus `f64` everywhere.

mod eager;
mod formats;

pub use eager::{Bf16Ops, F16Ops};
pub use formats::{Accumulator, Bf16Acc, Bf16Mma, F16Acc, F16Mma};
