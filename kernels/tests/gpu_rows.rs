//! The GPU decomposition (feature `cuda`): one query row of flash attention computed alone
//! (`flash_attention_row`, what a GPU thread runs) gives the bits of that row of the whole
//! call on the generic backend, for every layout, GQA, KV caches with spare capacity, causal
//! masks, decode (`q_len = 1`), and each accumulator the GPU entry points are built for.
//! Run: `cargo test -p tessera-kernels --features cuda --test gpu_rows`.
#![cfg(feature = "cuda")]

use tessera_kernels::attention::{
    flash_attention_row, flash_attention_with, flash_row_scratch_len, flash_scratch_len,
    query_row_start, AttentionShape, FlashTiles, Layout,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Accumulator, Bf16Mma, Element, Error};

/// Deterministic inputs in about [-2, 2) (a xorshift stream; no dependency).
fn values<E: Element>(n: usize, seed: u64) -> Vec<E> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            E::from_f32(((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0)
        })
        .collect()
}

fn shapes() -> Vec<(AttentionShape, FlashTiles)> {
    let base = AttentionShape::new(2, 4, 37, 37, 16);
    vec![
        (base, FlashTiles::new(8, 8)),
        (base.with_causal(true), FlashTiles::new(16, 5)),
        (
            base.with_kv_heads(2).with_causal(true),
            FlashTiles::new(4, 64),
        ),
        (
            base.with_layout(Layout::TokenMajor).with_kv_heads(1),
            FlashTiles::new(32, 7),
        ),
        // Decode over a KV cache with spare capacity, and a short multi-token verification.
        (
            AttentionShape::new(2, 4, 1, 50, 16)
                .with_kv_capacity(64)
                .with_causal(true),
            FlashTiles::new(1, 16),
        ),
        (
            AttentionShape::new(1, 4, 3, 50, 16)
                .with_kv_capacity(64)
                .with_kv_heads(2)
                .with_causal(true),
            FlashTiles::new(3, 16),
        ),
        // More queries than keys: the first causal rows see nothing (zeros).
        (
            AttentionShape::new(1, 2, 9, 4, 8).with_causal(true),
            FlashTiles::new(4, 2),
        ),
    ]
}

fn rows_match_whole_call<E: Element, A: Accumulator>() {
    for (case, (shape, tiles)) in shapes().into_iter().enumerate() {
        let (q_len, kv_len) = shape.validate().unwrap();
        let (q, k, v) = (
            values::<E>(q_len, 1 + case as u64),
            values::<E>(kv_len, 100 + case as u64),
            values::<E>(kv_len, 200 + case as u64),
        );
        let mut whole = vec![E::from_f32(f32::NAN); q_len];
        let mut scratch = vec![A::ZERO; flash_scratch_len(&shape, tiles).unwrap()];
        flash_attention_with(
            Backend::Generic,
            &shape,
            tiles,
            &q,
            &k,
            &v,
            &mut whole,
            &mut scratch,
        )
        .unwrap();
        let d = shape.head_dim;
        let mut row_scratch = vec![A::ZERO; flash_row_scratch_len(&shape, tiles).unwrap()];
        let mut written = 0;
        for bh in 0..shape.batch * shape.heads {
            for row in 0..shape.q_len {
                let mut out = vec![E::from_f32(f32::NAN); d];
                flash_attention_row(
                    &shape,
                    tiles,
                    bh,
                    row,
                    &q,
                    &k,
                    &v,
                    &mut out,
                    &mut row_scratch,
                )
                .unwrap();
                let at = query_row_start(&shape, bh, row).unwrap();
                let expected = &whole[at..at + d];
                let same = out
                    .iter()
                    .zip(expected)
                    .all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits());
                assert!(
                    same,
                    "case {case} ({}/{}): bh {bh} row {row}: {out:?} vs {expected:?}",
                    E::NAME,
                    A::NAME
                );
                written += 1;
            }
        }
        assert_eq!(written * d, q_len, "case {case}: every row visited once");
    }
}

#[test]
fn f32_rows_are_the_whole_calls_bits() {
    rows_match_whole_call::<f32, f32>();
}

#[test]
fn bf16_rows_are_the_whole_calls_bits() {
    rows_match_whole_call::<bf16, f32>();
}

#[test]
fn bf16_matrix_unit_model_rows_are_the_whole_calls_bits() {
    rows_match_whole_call::<bf16, Bf16Mma>();
}

#[test]
fn a_row_outside_the_shape_or_short_buffers_are_refused() {
    let (shape, tiles) = (AttentionShape::new(1, 2, 4, 4, 8), FlashTiles::new(4, 4));
    let (q, kv) = (vec![0.5f32; 64], vec![0.25f32; 64]);
    let mut out = vec![7.0f32; 8];
    let mut scratch = vec![0.0f32; flash_row_scratch_len(&shape, tiles).unwrap()];
    let call = |bh, row, out: &mut [f32], scratch: &mut [f32]| {
        flash_attention_row(&shape, tiles, bh, row, &q, &kv, &kv, out, scratch)
    };
    assert!(matches!(
        call(2, 0, &mut out, &mut scratch),
        Err(Error::BadParameter(_))
    ));
    assert!(matches!(
        call(0, 4, &mut out, &mut scratch),
        Err(Error::BadParameter(_))
    ));
    assert!(matches!(
        call(0, 0, &mut out[..7], &mut scratch),
        Err(Error::LengthMismatch { .. })
    ));
    let short = scratch.len() - 1;
    assert!(matches!(
        call(0, 0, &mut out, &mut scratch[..short]),
        Err(Error::ScratchTooSmall { .. })
    ));
    assert!(
        out.iter().all(|&x| x == 7.0),
        "a refused call writes nothing"
    );
    call(1, 3, &mut out, &mut scratch).unwrap();
    assert!(out.iter().all(|&x| x == 0.25));
}
