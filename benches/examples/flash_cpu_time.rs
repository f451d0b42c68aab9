//! Flash attention timed by the thread's CPU time (the minimum over repetitions), for comparing
//! kernel variants on a machine other work is loading: wall-clock benches (criterion) there
//! measure the load, while on-CPU time of one thread is disturbed only through the caches. Not
//! a substitute for `--bench flash_shapes` on a quiet machine.
//!
//! `cargo run --release -p tessera-benches --example flash_cpu_time -- [f32|bf16] N D BQ BK [REPS]
//! [BACKEND] [causal] [decode] [threads=T]` (8 heads; `decode`: one query row against N keys;
//! `threads=T` above 1 times the wall clock of T threads; `rule` for BQ or BK:
//! `FlashTiles::for_shape`'s; backend by name, `best` or nothing for the best this CPU has; FLOP
//! of the non-causal problem, halved for causal; the best and the median of REPS calls).

use std::time::{Duration, Instant};
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

/// What runs: causal or not, prefill or one query row (decode), on how many threads.
#[derive(Clone, Copy)]
struct Mode {
    causal: bool,
    decode: bool,
    threads: usize,
}

impl Mode {
    /// Query rows per head: one for decode, else as many as keys.
    fn q_len(self, n: usize) -> usize {
        if self.decode {
            1
        } else {
            n
        }
    }
}

fn run<E: Element + Send + Sync>(
    backend: Backend,
    n: usize,
    d: usize,
    tiles: FlashTiles,
    reps: usize,
    mode: Mode,
) -> (f64, f64) {
    let q_len = mode.q_len(n);
    let shape = AttentionShape::new(1, 8, q_len, n, d).with_causal(mode.causal);
    let len = 8 * n * d;
    let [q, k, v] = [1u64, 2, 3].map(|seed| {
        let mut x = tensor(InputDistribution::Normal, len, seed);
        round_bf16(&mut x);
        x.into_iter().map(E::from_f32).collect::<Vec<E>>()
    });
    let q = &q[..8 * q_len * d];
    let mut out = vec![E::from_f32(0.0); 8 * q_len * d];
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (t0, w0) = (thread_cpu(), Instant::now());
        flash_threaded::<E, f32>(backend, &shape, tiles, q, &k, &v, &mut out, mode.threads)
            .expect("valid shape");
        // One thread: its CPU time; more: the wall clock (the others' CPU time is not this one's).
        let t = if mode.threads == 1 {
            (thread_cpu() - t0).as_secs_f64()
        } else {
            w0.elapsed().as_secs_f64()
        };
        times.push(t);
    }
    let flop = (4 * 8 * q_len * n * d) as f64 / if mode.causal { 2.0 } else { 1.0 };
    times.sort_by(f64::total_cmp);
    let best = times.first().copied().unwrap_or(f64::NAN);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    (flop / best / 1e9, flop / median / 1e9)
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| a.get(i).and_then(|x| x.parse().ok()).unwrap_or(default);
    let (n, d) = (num(1, 1024), num(2, 64));
    let flag = |f: &str| a.iter().skip(7).any(|c| c == f);
    let mode = Mode {
        causal: flag("causal"),
        decode: flag("decode"),
        threads: a
            .iter()
            .skip(7)
            .find_map(|c| c.strip_prefix("threads=")?.parse().ok())
            .unwrap_or(1),
    };
    // `rule` (or nothing) for either tile size: `FlashTiles::for_shape`'s.
    let q_len = mode.q_len(n);
    let rule = FlashTiles::for_shape(&AttentionShape::new(1, 8, q_len, n, d));
    let tiles = FlashTiles::new(num(3, rule.block_q), num(4, rule.block_k));
    let reps = num(5, 15);
    let backend = a
        .get(6)
        .filter(|b| b.as_str() != "best")
        .map(|b| Backend::from_name(b).expect("backend name"))
        .unwrap_or_else(Backend::best);
    let (gflops, median) = match a.first().map(String::as_str) {
        Some("bf16") => run::<bf16>(backend, n, d, tiles, reps, mode),
        _ => run::<f32>(backend, n, d, tiles, reps, mode),
    };
    println!(
        "{} 1x8x{q_len}x{n}x{d}{} tiles {}x{}: {gflops:.1} GFLOP/s ({}, best of {reps}; median {median:.1}; backend {})",
        a.first().map(String::as_str).unwrap_or("f32"),
        if mode.causal { " causal" } else { "" },
        tiles.block_q,
        tiles.block_k,
        if mode.threads == 1 {
            "thread CPU time".to_string()
        } else {
            format!("wall clock, {} threads", mode.threads)
        },
        backend.name()
    );
}
