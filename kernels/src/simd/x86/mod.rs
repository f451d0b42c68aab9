//! x86-64 backends: AVX2 + FMA, AVX-512F, and AVX-512F with AVX512_BF16 dot products.

mod avx2;
mod avx512;
mod avx512bf16;
mod bf16_pairs;
mod bf16_pv;

pub(crate) use avx2::Avx2;
pub(crate) use avx512::Avx512;
pub(crate) use avx512bf16::Avx512Bf16;
