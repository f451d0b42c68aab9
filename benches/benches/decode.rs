//! What one decoding step through all layers costs for 1, 2, 3, 4 and 8 tokens at once: the cost
//! of a batched verification pass relative to a one-token pass (`c(n)` in
//! docs/results/layerskip.md), on a 12-layer, 256-wide model (36 MB of f32 weights, more than the
//! last-level cache of the development machine) with random weights and a KV cache filled to
//! position 128.
//!
//! `cargo bench -p tessera-benches --bench decode`. Throughput is in tokens, so the ratio of two
//! cases' tokens/s is the batching gain.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_kernels::nn::{
    forward_layers, kv_cache_len, layer_scratch_len, linear_matmul, AttentionKind, LinearShape,
    ModelConfig, ModelWeights,
};

const POS: usize = 128;

fn config() -> ModelConfig {
    ModelConfig {
        vocab: 65,
        dim: 256,
        layers: 12,
        heads: 8,
        kv_heads: 4,
        ffn_hidden: 704,
        max_seq: 512,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
    }
}

fn bench_decode(c: &mut Criterion) {
    let cfg = config();
    let params = cfg.param_count().expect("valid config");
    let data: Vec<f32> = tensor(InputDistribution::Normal, params, 7)
        .iter()
        .map(|w| w * 0.05)
        .collect();
    let weights = ModelWeights::new(cfg, &data).expect("weights");
    let attention = AttentionKind::Baseline;
    let mut kv = vec![0.0f32; kv_cache_len(&cfg).expect("kv length")];
    let mut scratch = vec![0.0f32; layer_scratch_len(&cfg, 8, attention).expect("scratch")];
    // Fill the cache up to POS, as after a prompt.
    let mut prompt = tensor(InputDistribution::Normal, 8 * cfg.dim, 8);
    for p in (0..POS).step_by(8) {
        forward_layers(
            &weights,
            0..cfg.layers,
            attention,
            p,
            &mut prompt,
            &mut kv,
            &mut scratch,
        )
        .expect("prefill");
    }

    let mut group = c.benchmark_group("decode_12x256_layers");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for n in [1usize, 2, 3, 4, 8] {
        let start = tensor(InputDistribution::Normal, n * cfg.dim, 9);
        let mut hidden = start.clone();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("tokens", n), &n, |b, _| {
            b.iter(|| {
                hidden.copy_from_slice(&start);
                forward_layers(
                    &weights,
                    0..cfg.layers,
                    attention,
                    POS,
                    &mut hidden,
                    &mut kv,
                    &mut scratch,
                )
                .expect("forward");
            })
        });
    }
    group.finish();
}

/// One 256 → 704 projection (the SwiGLU up projection of that model), alone: the matrix kernel
/// without the rest of the layer. The weights are larger than L2, as in the model.
fn bench_linear(c: &mut Criterion) {
    let (k, n) = (256usize, 704usize);
    let w = tensor(InputDistribution::Normal, k * n, 10);
    let x = tensor(InputDistribution::Normal, 8 * k, 11);
    let mut y = vec![0.0f32; 8 * n];
    let mut group = c.benchmark_group("linear_256x704");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for rows in [1usize, 2, 3, 4, 8] {
        let shape = LinearShape::new(rows, k, n);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("rows", rows), &rows, |b, _| {
            b.iter(|| linear_matmul(shape, &x[..rows * k], &w, &mut y[..rows * n]).expect("linear"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_linear);
criterion_main!(benches);
