//! The measured peaks of one core on each backend this CPU has: independent FMA chains
//! (`tessera_kernels::simd::fma_chains`, group `fma_peak`) and, where the backend has it,
//! independent `vdpbf16ps` chains (`bf16_dot_chains`, group `bf16_dot_peak`, 4 FLOP per lane),
//! reported in FLOP/s: the numbers the flash benches are read against
//! (`docs/results/performance.md`). Prints the CPU and the chain count of each backend.
//!
//! `cargo bench -p tessera-benches --bench peak`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tessera_kernels::simd::{
    available_backends, bf16_dot_chains, fma_chains, peak_chains, Backend,
};

const STEPS: usize = 1 << 16;

fn peak(c: &mut Criterion) {
    println!("CPU: {}", tessera_harness::characterize::report::cpu_name());
    let backends: Vec<Backend> = available_backends()
        .filter(|&b| b != Backend::Generic)
        .collect();
    for (name, flop_per_lane, probe) in [
        ("fma_peak", 2, fma_chains as fn(Backend, usize) -> _),
        ("bf16_dot_peak", 4, bf16_dot_chains),
    ] {
        let mut group = c.benchmark_group(name);
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        for &backend in &backends {
            if probe(backend, 1).is_err() {
                continue;
            }
            let chains = peak_chains(backend).expect("available");
            println!("{name}/{}: {chains} chains of 16 lanes", backend.name());
            let flop = flop_per_lane * 16 * chains * STEPS;
            group.throughput(Throughput::Elements(flop as u64));
            group.bench_function(BenchmarkId::from_parameter(backend.name()), |b| {
                b.iter(|| probe(backend, black_box(STEPS)).expect("available"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, peak);
criterion_main!(benches);
