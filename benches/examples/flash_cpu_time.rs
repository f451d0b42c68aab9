//! Flash attention timed by the thread's CPU time (the minimum over repetitions), for comparing
//! kernel variants on a machine other work is loading: wall-clock benches (criterion) there
//! measure the load, while on-CPU time of one thread is disturbed only through the caches. Not
//! a substitute for `--bench flash_shapes` on a quiet machine.
//!
//! `cargo run --release -p tessera-benches --example flash_cpu_time -- [f32|bf16] N D BQ BK [REPS]
//! [BACKEND] [causal]` (8 heads; `rule` for BQ or BK: `FlashTiles::for_shape`'s; backend by name,
//! `best` or nothing for the best this CPU has; FLOP of the
//! non-causal problem, halved for causal).

use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_harness::flash_threads::flash_threaded;
use tessera_harness::precision::round_bf16;
use tessera_kernels::attention::{AttentionShape, FlashTiles};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Element};

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn run<E: Element + Send + Sync>(
    backend: Backend,
    n: usize,
    d: usize,
    tiles: FlashTiles,
    reps: usize,
    causal: bool,
) -> f64 {
    let shape = AttentionShape::new(1, 8, n, n, d).with_causal(causal);
    let len = 8 * n * d;
    let [q, k, v] = [1u64, 2, 3].map(|seed| {
        let mut x = tensor(InputDistribution::Normal, len, seed);
        round_bf16(&mut x);
        x.into_iter().map(E::from_f32).collect::<Vec<E>>()
    });
    let mut out = vec![E::from_f32(0.0); len];
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = thread_cpu();
        flash_threaded::<E, f32>(backend, &shape, tiles, &q, &k, &v, &mut out, 1)
            .expect("valid shape");
        best = best.min((thread_cpu() - t0).as_secs_f64());
    }
    let flop = (4 * 8 * n * n * d) as f64 / if causal { 2.0 } else { 1.0 };
    flop / best / 1e9
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| a.get(i).and_then(|x| x.parse().ok()).unwrap_or(default);
    let (n, d) = (num(1, 1024), num(2, 64));
    // `rule` (or nothing) for either tile size: `FlashTiles::for_shape`'s.
    let rule = FlashTiles::for_shape(&AttentionShape::new(1, 8, n, n, d));
    let tiles = FlashTiles::new(num(3, rule.block_q), num(4, rule.block_k));
    let reps = num(5, 15);
    let backend = a
        .get(6)
        .filter(|b| b.as_str() != "best")
        .map(|b| Backend::from_name(b).expect("backend name"))
        .unwrap_or_else(Backend::best);
    let causal = a.get(7).is_some_and(|c| c == "causal");
    let gflops = match a.first().map(String::as_str) {
        Some("bf16") => run::<bf16>(backend, n, d, tiles, reps, causal),
        _ => run::<f32>(backend, n, d, tiles, reps, causal),
    };
    println!(
        "{} 1x8x{n}x{d}{} tiles {}x{}: {gflops:.1} GFLOP/s (thread CPU time, best of {reps}; backend {})",
        a.first().map(String::as_str).unwrap_or("f32"),
        if causal { " causal" } else { "" },
        tiles.block_q,
        tiles.block_k,
        backend.name()
    );
}
