//! The blocked flash kernels and the work split keep every row's operations:
//!
//! - a row's output has the same bits whatever the query tile (`block_q` = 1 runs the per-row
//!   kernels; larger tiles the register-blocked ones, with causal rows that see different
//!   numbers of keys), on every backend this CPU has, `f32` and `bf16`;
//! - a run split over threads ([`flash_threaded`]) or into item ranges
//!   ([`flash_attention_part`]) gives the bits of the whole run;
//! - bad item ranges and output lengths are errors, not panics.

use proptest::prelude::*;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_harness::flash_threads::flash_threaded;
use tessera_harness::precision::round_bf16;
use tessera_kernels::attention::{
    flash_attention_part, flash_attention_with, flash_item_row, flash_items, flash_scratch_len,
    AttentionShape, FlashTiles, Layout,
};
use tessera_kernels::simd::{available_backends, Backend};
use tessera_kernels::{bf16, Element, Error};

fn inputs<E: Element>(shape: &AttentionShape, seed: u64) -> [Vec<E>; 3] {
    let (q_len, kv_len) = shape.validate().expect("valid shape");
    [(q_len, 0), (kv_len, 1), (kv_len, 2)].map(|(len, k)| {
        let mut x = tensor(InputDistribution::Normal, len, seed.wrapping_add(k));
        round_bf16(&mut x);
        x.into_iter().map(E::from_f32).collect()
    })
}

fn flash<E: Element>(
    backend: Backend,
    shape: &AttentionShape,
    tiles: FlashTiles,
    [q, k, v]: &[Vec<E>; 3],
) -> Vec<u64> {
    let mut out = vec![E::from_f32(f32::NAN); q.len()];
    let mut scratch = vec![0.0f32; flash_scratch_len(shape, tiles).unwrap()];
    flash_attention_with(backend, shape, tiles, q, k, v, &mut out, &mut scratch).unwrap();
    out.iter().map(|x| x.to_f64().to_bits()).collect()
}

fn shapes() -> impl Strategy<Value = (AttentionShape, usize, u64)> {
    (
        (1..=2usize, 1..=2usize, 1..=2usize),
        (
            1..=40usize,
            0..=48usize,
            prop_oneof![Just(16usize), Just(64), 1..=80usize],
        ),
        (any::<bool>(), any::<bool>(), 1..=40usize, any::<u64>()),
    )
        .prop_map(
            |((b, kvh, g), (ql, kvl, d), (causal, token_major, bk, seed))| {
                let layout = if token_major {
                    Layout::TokenMajor
                } else {
                    Layout::HeadMajor
                };
                let shape = AttentionShape::new(b, kvh * g, ql, kvl, d)
                    .with_kv_heads(kvh)
                    .with_causal(causal)
                    .with_layout(layout);
                (shape, bk, seed)
            },
        )
}

fn same_bits_for_every_block_q<E: Element>(shape: &AttentionShape, bk: usize, seed: u64) {
    let x = inputs::<E>(shape, seed);
    for backend in available_backends() {
        let one = flash(backend, shape, FlashTiles::new(1, bk), &x);
        for bq in [4, 5, 9, 32] {
            let blocked = flash(backend, shape, FlashTiles::new(bq, bk), &x);
            assert_eq!(
                one,
                blocked,
                "{} block_q {bq} vs 1: {shape:?}",
                backend.name()
            );
        }
    }
}

/// [`flash_threaded`]'s output bits on `threads` threads (f32, the best backend).
fn threaded(
    shape: &AttentionShape,
    tiles: FlashTiles,
    [q, k, v]: &[Vec<f32>; 3],
    threads: usize,
) -> Vec<u64> {
    let mut out = vec![f32::NAN; q.len()];
    flash_threaded::<f32, f32>(Backend::Auto, shape, tiles, q, k, v, &mut out, threads).unwrap();
    out.iter().map(|x| (*x as f64).to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rows_do_not_depend_on_the_query_tile((shape, bk, seed) in shapes()) {
        same_bits_for_every_block_q::<f32>(&shape, bk, seed);
        same_bits_for_every_block_q::<bf16>(&shape, bk, seed);
    }

    #[test]
    fn threads_and_parts_give_the_whole_runs_bits((shape, bk, seed) in shapes(), bq in 1..=12usize) {
        let tiles = FlashTiles::new(bq, bk);
        let x = inputs::<f32>(&shape, seed);
        let whole = flash(Backend::Auto, &shape, tiles, &x);
        for threads in 1..=4 {
            prop_assert_eq!(&threaded(&shape, tiles, &x, threads), &whole, "{} threads", threads);
        }
        if shape.layout == Layout::HeadMajor {
            // Two parts, split in the middle of the items.
            let items = flash_items(&shape, tiles).unwrap();
            let mid = items / 2;
            let d = shape.head_dim;
            let mut out = vec![f32::NAN; x[0].len()];
            let split = flash_item_row(&shape, tiles, mid).unwrap() * d;
            let (a, b) = out.split_at_mut(split);
            let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles).unwrap()];
            for (range, part) in [(0..mid, a), (mid..items, b)] {
                flash_attention_part(Backend::Auto, &shape, tiles, range, &x[0], &x[1], &x[2], part, &mut scratch).unwrap();
            }
            let bits: Vec<u64> = out.iter().map(|x| (*x as f64).to_bits()).collect();
            prop_assert_eq!(&bits, &whole);
        }
    }
}

/// Several callers at once share the driver's pools (one per thread count): each call's parts
/// wait for a worker another caller may hold, and its caller spins, then sleeps, for them;
/// every call still gets the whole run's bits (decode, 8 heads: the short calls where the
/// hand-off matters, and a prefill).
#[test]
fn concurrent_callers_share_the_pools() {
    let decode = AttentionShape::new(1, 8, 1, 300, 32);
    let prefill = AttentionShape::new(1, 4, 40, 40, 16).with_causal(true);
    for (shape, tiles) in [
        (decode, FlashTiles::new(1, 64)),
        (prefill, FlashTiles::new(8, 16)),
    ] {
        let x = inputs::<f32>(&shape, 11);
        let whole = flash(Backend::Auto, &shape, tiles, &x);
        std::thread::scope(|s| {
            for caller in 0..3 {
                let (x, whole) = (&x, &whole);
                s.spawn(move || {
                    for call in 0..40 {
                        let threads = 2 + (caller + call) % 3;
                        let bits = threaded(&shape, tiles, x, threads);
                        assert_eq!(
                            &bits, whole,
                            "caller {caller}, call {call}, {threads} threads"
                        );
                    }
                });
            }
        });
    }
}

/// The kernels write every scratch value before reading it: a scratch left full of NaN or of
/// another run's values gives the bits of a zeroed one (the threaded driver keeps each thread's
/// scratch between calls on that promise).
#[test]
fn scratch_contents_do_not_matter() {
    for backend in available_backends() {
        for causal in [false, true] {
            let mut shape = AttentionShape::new(1, 2, 37, 37, 24);
            shape.causal = causal;
            let tiles = FlashTiles::new(16, 32);
            let x = inputs::<bf16>(&shape, 7);
            let zeroed = flash(backend, &shape, tiles, &x);
            let len = flash_scratch_len(&shape, tiles).unwrap();
            for fill in [f32::NAN, f32::INFINITY, -3.0e38, 1.0] {
                let mut out = vec![bf16::from_f32(f32::NAN); x[0].len()];
                let mut scratch = vec![fill; len];
                flash_attention_with(
                    backend,
                    &shape,
                    tiles,
                    &x[0],
                    &x[1],
                    &x[2],
                    &mut out,
                    &mut scratch,
                )
                .unwrap();
                let bits: Vec<u64> = out.iter().map(|x| x.to_f64().to_bits()).collect();
                assert_eq!(bits, zeroed, "{backend:?} causal {causal} scratch {fill}");
            }
        }
    }
}

#[test]
fn bad_item_ranges_are_errors() {
    let shape = AttentionShape::new(1, 2, 10, 10, 8);
    let tiles = FlashTiles::new(4, 4);
    let items = flash_items(&shape, tiles).unwrap();
    assert_eq!(items, 2 * 3);
    assert_eq!(flash_item_row(&shape, tiles, items).unwrap(), 20);
    assert_eq!(flash_item_row(&shape, tiles, 4).unwrap(), 10 + 4);
    assert!(matches!(
        flash_item_row(&shape, tiles, items + 1),
        Err(Error::LengthMismatch { what: "item", .. })
    ));
    let x = inputs::<f32>(&shape, 1);
    let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles).unwrap()];
    let mut out = vec![0.0f32; 4 * 8];
    let run = |range: std::ops::Range<usize>, out: &mut [f32], scratch: &mut [f32]| {
        flash_attention_part(
            Backend::Auto,
            &shape,
            tiles,
            range,
            &x[0],
            &x[1],
            &x[2],
            out,
            scratch,
        )
    };
    // Item 0 is rows 0..4: 32 elements. Wrong lengths and ranges past the end fail.
    assert!(run(0..1, &mut out, &mut scratch).is_ok());
    assert!(matches!(
        run(0..2, &mut out, &mut scratch),
        Err(Error::LengthMismatch { what: "out", .. })
    ));
    assert!(run(0..items + 1, &mut out, &mut scratch).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 2..1;
    assert!(matches!(
        run(backwards, &mut out, &mut scratch),
        Err(Error::LengthMismatch { what: "items", .. })
    ));
    assert!(matches!(
        run(0..1, &mut out, &mut scratch[..3]),
        Err(Error::ScratchTooSmall { .. })
    ));
}

#[test]
fn tiles_for_shape_follow_the_documented_rule() {
    let t = |n, d| FlashTiles::for_shape(&AttentionShape::new(1, 8, n, n, d));
    // block_k = 1 MiB / (16·d), multiple of 16 in 16..=1024; block_q = the larger of block_k
    // and 1 MiB / (8·d) (multiple of 16 in 16..=1024), at most q_len.
    assert_eq!(t(1024, 64), FlashTiles::new(1024, 1024));
    assert_eq!(t(4096, 128), FlashTiles::new(1024, 512));
    assert_eq!(t(4096, 256), FlashTiles::new(512, 256));
    assert_eq!(t(1, 64), FlashTiles::new(1, 1024));
    assert_eq!(t(300, 64), FlashTiles::new(300, 1024));
    assert_eq!(t(4096, 96), FlashTiles::new(1024, 672));
    assert_eq!(t(4096, 8), FlashTiles::new(1024, 1024));
    assert_eq!(t(4096, 8192), FlashTiles::new(16, 16));
    for (n, d) in [(7, 1), (100, 96), (4096, 512)] {
        let tiles = t(n, d);
        assert!(tiles.validate().is_ok(), "{tiles:?}");
    }
}
