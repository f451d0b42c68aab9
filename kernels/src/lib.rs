//! Tessera's kernels: `no_std`, allocation-free, panic-free transformer kernels in three families:
//!
//! - [`attention`]: flash and baseline attention (GQA, KV caches, causal masks, head- or
//!   token-major queries), generic over the storage element and the accumulator;
//! - [`nn`]: linear, RMSNorm, RoPE, SwiGLU, embedding, loss, the pre-norm decoder layer (forward
//!   with a KV cache, training forward and backward), early-exit models and self-speculative
//!   decoding;
//! - [`optim`]: SGD, momentum, Adam/AdamW and hyperoptimizer towers ([`optim::Tower`]).
//!
//! [`simd`] holds the instruction sets and [`simd::Backend`]; every kernel family has a
//! `*_with(backend, ..)` form. [`prelude`] brings the common names of all of them.
//!
//! Every kernel takes its inputs as slices with an explicit shape, writes a caller-owned output
//! slice, works in a caller-owned scratch slice sized by a `*_scratch_len` function, and returns
//! `Err` for any bad shape, length or parameter.
//!
//! ```
//! use tessera_kernels::attention::{flash_attention, flash_scratch_len, AttentionShape, FlashTiles};
//! // batch 1, 4 query heads sharing 2 KV heads (GQA), 16 positions, head_dim 8, causal
//! let shape = AttentionShape::new(1, 4, 16, 16, 8).with_kv_heads(2).with_causal(true);
//! let q: Vec<f32> = (0..4 * 16 * 8).map(|i| (i as f32 * 0.37).sin()).collect();
//! let kv: Vec<f32> = (0..2 * 16 * 8).map(|i| (i as f32 * 0.11).cos()).collect();
//! let mut out = vec![f32::NAN; q.len()];
//! let tiles = FlashTiles::new(8, 4);
//! let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles)?];
//! flash_attention(&shape, tiles, &q, &kv, &kv, &mut out, &mut scratch)?;
//! assert!(out.iter().all(|x| x.is_finite()));
//! # Ok::<(), tessera_kernels::Error>(())
//! ```
//!
//! | Backend | ISA | `f32` elements | `bf16` elements |
//! |---|---|---|---|
//! | `generic` | any (incl. Cortex-M4F, RV32) | scalar | scalar, widened to f32 |
//! | `avx2` | x86-64 AVX2 + FMA | 8 lanes, FMA | widened to f32, FMA |
//! | `avx512` | x86-64 AVX-512F | 16 lanes, FMA | widened to f32, FMA |
//! | `avx512bf16` | x86-64 AVX512_BF16 | as `avx512` | `vdpbf16ps`: dot products, flash's `P·V` |
//! | `neon` | aarch64 | 4 lanes, FMA | widened to f32, FMA |
//! | `portable` | `core::simd` (nightly) | 16 lanes | widened to f32 |
//!
//! SIMD backends serve the production accumulator `f32`; the research accumulators `f64`,
//! [`Bf16Acc`], [`F16Acc`] (every operation rounded), [`Bf16Mma`], [`F16Mma`] (matrix-unit
//! model: f32 inside each reduction, every stored intermediate rounded) and [`Bf16Ops`],
//! [`F16Ops`] (eager op-by-op attention) run the same algorithms on the generic backend.

#![no_std]
#![cfg_attr(feature = "nightly", feature(portable_simd))]
// The GPU build (kernels/ptx, nightly only): the scalar token's fma and sqrt in hardware.
#![cfg_attr(target_arch = "nvptx64", feature(core_float_math))]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

mod accumulator;
pub mod attention;
pub(crate) mod check;
mod element;
mod error;
mod limits;
pub mod nn;
pub mod optim;
pub mod prelude;
mod rows;
pub mod simd;
mod sqrt;
pub mod vision;

pub use accumulator::{Accumulator, Bf16Acc, Bf16Mma, Bf16Ops, F16Acc, F16Mma, F16Ops};
pub use element::{f64_to_f32_round_to_odd, Element};
pub use error::{Error, Result};
pub use half::bf16;
