//! Tessera's flash attention beside its peers, one criterion group per shape, dtype and mask,
//! every function of a group on the same inputs (normal, rounded to bf16 so f32 and bf16 runs
//! see the same values; seeds 1, 2, 3 for Q, K, V as in `flash_shapes`):
//!
//! - `tessera/1`, `tessera/2`: `flash_threaded` on `Backend::best()` with
//!   `FlashTiles::for_shape`, on one and two threads;
//! - `candle/1`: candle-nn's CPU `flash_attn` (`candle_nn::attention::flash_attn`);
//! - `gemm/1`: `softmax(Q·Kᵀ)·V` as two f32 GEMMs (ndarray + matrixmultiply; bf16 widened).
//!
//! A first group, `fma_peak/<backend>`, measures one core's FP32 FMA peak on the backend Tessera
//! runs, for the fractions of peak.
//!
//! Throughput is FLOP (`4·N²·d` per head, half when causal, `4·N·d` for decode), so criterion's
//! `Gelem/s` reads as GFLOP/s. Peers run on one thread: this binary sets `RAYON_NUM_THREADS=1`
//! and `CANDLE_NUM_THREADS=1` before candle starts its pools, unless they are already set (then
//! it says so), and prints the thread count candle reports. Before timing, each peer's output is
//! compared with Tessera's and the largest difference printed.
//!
//! `cargo bench --manifest-path benches/peers/Cargo.toml --bench peers [FILTER]`

use candle_core::{DType, Tensor, WithDType};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use std::cell::{OnceCell, RefCell};
use std::hint::black_box;
use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_harness::flash_threads::flash_threaded;
use tessera_harness::precision::round_bf16;
use tessera_kernels::attention::{AttentionShape, FlashTiles};
use tessera_kernels::simd::{fma_chains, peak_chains, Backend};
use tessera_kernels::{bf16, Element};
use tessera_peers::{
    candle_attention, candle_tensor, cases, cpu_description, max_abs_diff, Case, GemmAttention,
    PeerElement,
};

/// The same inputs for both element types: normal entries rounded to bf16.
fn inputs<E: PeerElement>(len: usize, seed: u64) -> Vec<E> {
    let mut x = tensor(InputDistribution::Normal, len, seed);
    round_bf16(&mut x);
    x.into_iter().map(E::from_f32).collect()
}

/// One group's inputs and buffers, made on the first benchmark of the group that the filter
/// selects (so a filtered run does not build the others' 64 MB score matrices).
struct Setup<E> {
    q: Vec<E>,
    k: Vec<E>,
    v: Vec<E>,
    candle: [Tensor; 3],
    out: RefCell<Vec<E>>,
    gemm: RefCell<(GemmAttention, Vec<E>)>,
}

/// candle's bf16 dot product is a sequential scalar loop (`dot_f32` in candle-nn's
/// `attention/cpu_flash/mod.rs`): 0.3-0.5 GFLOP/s on the development machine, 4-6 s a call at
/// 1x8x1024x64. At N = 4096 a call takes one to two minutes and a group (at least 11 calls) 10-25
/// minutes, so bf16 prefill over more than this many keys runs candle only with
/// `PEERS_CANDLE_BF16_ALL=1` (docs/results/peers.md gives the estimate from the run's own rate).
const CANDLE_BF16_MAX_KV: usize = 1024;

/// Whether candle runs in `case`'s `dtype` group (see [`CANDLE_BF16_MAX_KV`]).
fn candle_runs(case: Case, dtype: DType) -> bool {
    dtype != DType::BF16
        || case.q_len == 1
        || case.kv_len <= CANDLE_BF16_MAX_KV
        || std::env::var_os("PEERS_CANDLE_BF16_ALL").is_some()
}

fn setup<E: PeerElement + Send + Sync>(case: Case, name: &str, with_candle: bool) -> Setup<E> {
    let (shape, tiles) = tessera_shape(case);
    let q = inputs::<E>(case.q_elems(), 1);
    let k = inputs::<E>(case.kv_elems(), 2);
    let v = inputs::<E>(case.kv_elems(), 3);
    let (h, d) = (case.heads, case.head_dim);
    let candle = [(&q, case.q_len), (&k, case.kv_len), (&v, case.kv_len)]
        .map(|(x, seq)| candle_tensor(x, h, seq, d).expect("candle tensor"));
    let mut out = vec![E::from_f32(f32::NAN); case.q_elems()];
    let mut gemm = GemmAttention::new(case);
    let mut gemm_out = vec![E::from_f32(f32::NAN); case.q_elems()];

    // The same problem for every function: each peer's output beside Tessera's.
    let backend = Backend::best();
    flash_threaded::<E, f32>(backend, &shape, tiles, &q, &k, &v, &mut out, 1).expect("tessera");
    let [cq, ck, cv] = &candle;
    let candle_diff = if with_candle {
        let candle_out: Vec<f32> = candle_attention::<E>(&case, cq, ck, cv)
            .and_then(|o| o.to_dtype(DType::F32)?.flatten_all()?.to_vec1())
            .expect("candle flash_attn");
        format!("{:.2e}", max_abs_diff(&out, &candle_out))
    } else {
        "(candle not run)".into()
    };
    gemm.run(&q, &k, &v, &mut gemm_out);
    let gemm_wide: Vec<f32> = gemm_out.iter().map(|&x| Element::to_f32(x)).collect();
    eprintln!(
        "{name}: tessera backend {}, tiles {}x{}; max |tessera - candle| {candle_diff}, \
         max |tessera - gemm| {:.2e}",
        backend.name(),
        tiles.block_q,
        tiles.block_k,
        max_abs_diff(&out, &gemm_wide),
    );
    Setup {
        q,
        k,
        v,
        candle,
        out: RefCell::new(out),
        gemm: RefCell::new((gemm, gemm_out)),
    }
}

fn tessera_shape(case: Case) -> (AttentionShape, FlashTiles) {
    let shape = AttentionShape::new(1, case.heads, case.q_len, case.kv_len, case.head_dim)
        .with_causal(case.causal);
    (shape, FlashTiles::for_shape(&shape))
}

fn bench_case<E: PeerElement + Send + Sync>(c: &mut Criterion, case: Case, dtype: &str) {
    let backend = Backend::best();
    let (shape, tiles) = tessera_shape(case);
    let name = case.group(dtype);
    let with_candle = candle_runs(case, <E as WithDType>::DTYPE);
    if !with_candle {
        eprintln!(
            "{name}/candle: not run (bf16 over more than {CANDLE_BF16_MAX_KV} keys; \
             PEERS_CANDLE_BF16_ALL=1 runs it)"
        );
    }
    let cell = OnceCell::new();
    let get = || cell.get_or_init(|| setup::<E>(case, &name, with_candle));

    let mut group = c.benchmark_group(&name);
    group.throughput(Throughput::Elements(case.flop()));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        group.bench_function(BenchmarkId::new("tessera", threads), |b| {
            let s = get();
            let mut out = s.out.borrow_mut();
            b.iter(|| {
                flash_threaded::<E, f32>(
                    backend, &shape, tiles, &s.q, &s.k, &s.v, &mut out, threads,
                )
                .expect("tessera")
            })
        });
    }
    if with_candle {
        group.bench_function(BenchmarkId::new("candle", 1), |b| {
            let s = get();
            let [cq, ck, cv] = &s.candle;
            b.iter(|| candle_attention::<E>(&case, cq, ck, cv).expect("candle flash_attn"))
        });
    }
    group.bench_function(BenchmarkId::new("gemm", 1), |b| {
        let s = get();
        let (gemm, out) = &mut *s.gemm.borrow_mut();
        b.iter(|| gemm.run(&s.q, &s.k, &s.v, out))
    });
    group.finish();
}

/// One core's FP32 FMA peak on the backend Tessera runs (`fma_chains`, as
/// `cargo bench -p tessera-benches --bench peak` measures it), in the same run and under the same
/// load as the groups: the fractions of peak in docs/results/peers.md divide by it.
fn fma_peak(c: &mut Criterion) {
    const STEPS: usize = 1 << 16;
    let backend = Backend::best();
    let mut group = c.benchmark_group("fma_peak");
    let chains = peak_chains(backend).expect("the best backend is available");
    group.throughput(Throughput::Elements((2 * 16 * chains * STEPS) as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function(BenchmarkId::from_parameter(backend.name()), |b| {
        b.iter(|| fma_chains(backend, black_box(STEPS)).expect("the best backend is available"))
    });
    group.finish();
}

/// Pins candle's pools (rayon's global pool and candle's barrier pool) to one thread.
fn one_thread_peers() {
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        match std::env::var(var) {
            Ok(v) => eprintln!("{var}={v} (from the environment)"),
            Err(_) => {
                // Edition 2021: safe. Nothing has started a thread yet (criterion starts none).
                std::env::set_var(var, "1");
                eprintln!("{var}=1 (set by the bench)");
            }
        }
    }
    eprintln!("candle threads: {}", candle_core::utils::get_num_threads());
}

fn main() {
    one_thread_peers();
    eprintln!("CPU: {}", cpu_description());
    eprintln!("tessera backend: {}", Backend::best().name());
    let mut c = Criterion::default().configure_from_args();
    fma_peak(&mut c);
    for case in cases() {
        bench_case::<f32>(&mut c, case, "f32");
        bench_case::<bf16>(&mut c, case, "bf16");
    }
    c.final_summary();
}
