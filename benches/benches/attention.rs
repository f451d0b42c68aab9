//! Flash attention time per backend: one head of N = 1024 queries and keys, d = 64, non-causal,
//! default tiles, inputs from `tessera_harness::data`. Throughput is reported in FLOP/s
//! (`4·N²·d` per head for the forward pass), so `FLOP/cycle = throughput / clock`.
//!
//! `cargo bench -p tessera-benches --bench attention`. Backends this CPU lacks are skipped with a
//! note; `generic` is the scalar baseline every ratio is taken against.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_harness::precision::round_bf16;
use tessera_kernels::attention::{
    flash_attention_with, flash_scratch_len, AttentionShape, FlashTiles,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Element};

const N: usize = 1024;
const D: usize = 64;

/// Benchmarks `flash_attention_with` on each of `backends` that this CPU has, for element `E`.
fn bench_flash<E: Element>(c: &mut Criterion, group_name: &str, backends: &[Backend]) {
    let shape = AttentionShape::new(1, 1, N, N, D);
    let tiles = FlashTiles::default();
    let [q, k, v] = [1u64, 2, 3].map(|seed| {
        let mut x = tensor(InputDistribution::Normal, N * D, seed);
        round_bf16(&mut x); // the same inputs for both element types
        x.into_iter().map(E::from_f32).collect::<Vec<E>>()
    });
    let mut out = vec![E::from_f32(0.0); N * D];
    let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles).expect("valid shape")];

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements((4 * N * N * D) as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for &backend in backends {
        if !backend.is_available() {
            eprintln!(
                "{group_name}: skipping `{}`, not available here",
                backend.name()
            );
            continue;
        }
        group.bench_function(BenchmarkId::from_parameter(backend.name()), |b| {
            b.iter(|| {
                flash_attention_with(backend, &shape, tiles, &q, &k, &v, &mut out, &mut scratch)
                    .expect("the backend is available and the shape valid")
            })
        });
    }
    group.finish();
}

fn flash_f32(c: &mut Criterion) {
    let backends = [Backend::Generic, Backend::Avx2, Backend::Avx512];
    bench_flash::<f32>(c, "flash_f32_n1024_d64", &backends);
}

fn flash_bf16(c: &mut Criterion) {
    let backends = [
        Backend::Generic,
        Backend::Avx2,
        Backend::Avx512,
        Backend::Avx512Bf16,
    ];
    bench_flash::<bf16>(c, "flash_bf16_n1024_d64", &backends);
}

criterion_group!(benches, flash_f32, flash_bf16);
criterion_main!(benches);
