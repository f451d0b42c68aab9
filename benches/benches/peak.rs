//! The measured FMA peak of one core on each backend this CPU has: independent FMA chains
//! (`tessera_kernels::simd::fma_chains`), reported in FLOP/s, the number the flash benches are
//! read against (`docs/results/performance.md`).
//!
//! `cargo bench -p tessera-benches --bench peak`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tessera_kernels::simd::{available_backends, fma_chains, Backend, PEAK_CHAINS};

const STEPS: usize = 1 << 16;

fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("fma_peak");
    group.throughput(Throughput::Elements((2 * 16 * PEAK_CHAINS * STEPS) as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    for backend in available_backends().filter(|&b| b != Backend::Generic) {
        group.bench_function(BenchmarkId::from_parameter(backend.name()), |b| {
            b.iter(|| fma_chains(backend, black_box(STEPS)).expect("available"))
        });
    }
    group.finish();
}

criterion_group!(benches, peak);
criterion_main!(benches);
