//! Flash attention at the shapes of issue 18 on the best backend, one and two threads, `f32`
//! and `bf16` elements (f32 accumulator), tiles from `FlashTiles::for_shape`. Throughput is in
//! FLOP/s (`4·N²·d` per head, non-causal), so GFLOP/s can be read beside the measured peak
//! (`cargo bench -p tessera-benches --bench peak`).
//!
//! `cargo bench -p tessera-benches --bench flash_shapes [FILTER]`. Prints the CPU and the backend
//! that ran. Each case is a separate group so that ratios are read within one run.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_harness::flash_threads::flash_threaded;
use tessera_harness::precision::round_bf16;
use tessera_kernels::attention::{AttentionShape, FlashTiles};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Element};

/// `(batch, heads, n, d)` of the prefill shapes.
const SHAPES: [(usize, usize, usize, usize); 2] = [(1, 8, 1024, 64), (1, 8, 4096, 128)];

fn bench_shape<E: Element + Send + Sync>(c: &mut Criterion, dtype: &str) {
    let backend = Backend::best();
    for (b, h, n, d) in SHAPES {
        let shape = AttentionShape::new(b, h, n, n, d);
        let tiles = FlashTiles::for_shape(&shape);
        let len = b * h * n * d;
        let [q, k, v] = [1u64, 2, 3].map(|seed| {
            let mut x = tensor(InputDistribution::Normal, len, seed);
            round_bf16(&mut x); // the same inputs for both element types
            x.into_iter().map(E::from_f32).collect::<Vec<E>>()
        });
        let mut out = vec![E::from_f32(0.0); len];
        let name = format!("flash_{dtype}_{b}x{h}x{n}x{d}");
        eprintln!(
            "{name}: backend {}, tiles {}x{}",
            backend.name(),
            tiles.block_q,
            tiles.block_k
        );
        let mut group = c.benchmark_group(&name);
        group.throughput(Throughput::Elements((4 * b * h * n * n * d) as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        // `per_row`: query tiles of one row run the per-row kernels (the kernel before register
        // blocking, same bits): the blocked kernel's gain within one run.
        let per_row = FlashTiles::new(1, tiles.block_k);
        for (case, tiles, threads) in [
            ("per_row", per_row, 1usize),
            ("threads", tiles, 1),
            ("threads", tiles, 2),
        ] {
            group.bench_function(BenchmarkId::new(case, threads), |bench| {
                bench.iter(|| {
                    flash_threaded::<E, f32>(backend, &shape, tiles, &q, &k, &v, &mut out, threads)
                        .expect("valid shape")
                })
            });
        }
        group.finish();
    }
}

/// The tile rule's evidence: one shape per head dimension, one thread, several `block_q x block_k`
/// (the rule's own choice among them), in one group so their ratios are read within one run.
fn tile_sizes(c: &mut Criterion) {
    let backend = Backend::best();
    for (n, d) in [(1024, 64), (1024, 128)] {
        let shape = AttentionShape::new(1, 8, n, n, d);
        let len = 8 * n * d;
        let [q, k, v] = [1u64, 2, 3].map(|seed| tensor(InputDistribution::Normal, len, seed));
        let mut out = vec![0.0f32; len];
        let rule = FlashTiles::for_shape(&shape);
        eprintln!(
            "tiles_f32_1x8x{n}x{d}: rule {}x{}",
            rule.block_q, rule.block_k
        );
        let mut group = c.benchmark_group(format!("tiles_f32_1x8x{n}x{d}"));
        group.throughput(Throughput::Elements((4 * 8 * n * n * d) as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        for (bq, bk) in [
            (256, 64),
            (256, 256),
            (512, 512),
            (256, 1024),
            (512, 1024),
            (1024, 1024),
        ] {
            let tiles = FlashTiles::new(bq, bk);
            group.bench_function(BenchmarkId::from_parameter(format!("{bq}x{bk}")), |bench| {
                bench.iter(|| {
                    flash_threaded::<f32, f32>(backend, &shape, tiles, &q, &k, &v, &mut out, 1)
                        .expect("valid shape")
                })
            });
        }
        group.finish();
    }
}

fn flash_shapes(c: &mut Criterion) {
    eprintln!("CPU: {}", tessera_harness::characterize::report::cpu_name());
    tile_sizes(c);
    bench_shape::<f32>(c, "f32");
    bench_shape::<bf16>(c, "bf16");
}

criterion_group!(benches, flash_shapes);
criterion_main!(benches);
