//! The dense layer `y = x·Wᵀ` timed by the thread's CPU time (the minimum over repetitions), for
//! comparing kernel variants on a machine other work is loading (see `flash_cpu_time`). One
//! repetition runs the product enough times to last about a millisecond, so the clock's
//! granularity does not matter; the weights stay where the previous call left them (in cache
//! when they fit).
//!
//! Every buffer starts `OFFSET` elements past a 64-byte boundary (default 0: on cache lines), so
//! runs do not differ by where the allocator put them (glibc's large blocks start 16 bytes past a
//! page, so a plain `Vec` of weights splits every 64-byte load in two).
//!
//! `cargo run --release -p tessera-benches --example linear_cpu_time -- [f32|bf16] K N
//! [ROWS,ROWS,..] [REPS] [BACKEND] [OFFSET]` (defaults: f32 256 704 1,2,4,8 15, the best backend
//! this CPU has, 0). Prints one line per row count: GFLOP/s of `2·rows·K·N` FLOP per product.

use std::time::Duration;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_kernels::nn::{linear_matmul_with, LinearShape};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Element};

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `len` elements of `values` in a buffer of its own, starting `offset` elements past a 64-byte
/// boundary (the buffer and the start of the slice are returned).
fn placed<T: Copy + Default>(values: &[T], offset: usize) -> (Vec<T>, usize) {
    let pad = 64 / size_of::<T>() + offset;
    let mut buf = vec![T::default(); values.len() + pad];
    let start = buf.as_ptr().align_offset(64) + offset;
    buf[start..start + values.len()].copy_from_slice(values);
    (buf, start)
}

/// The best GFLOP/s over `reps` repetitions of `rows` rows through a `k`-by-`n` layer.
fn run<W: Element>(
    backend: Backend,
    (k, n): (usize, usize),
    rows: usize,
    reps: usize,
    offset: usize,
) -> f64 {
    let w: Vec<W> = tensor(InputDistribution::Normal, k * n, 10)
        .into_iter()
        .map(W::from_f32)
        .collect();
    let (w_buf, w_at) = placed(&w, offset);
    let w = &w_buf[w_at..w_at + k * n];
    let (x_buf, x_at) = placed(&tensor(InputDistribution::Normal, rows * k, 11), offset);
    let x = &x_buf[x_at..x_at + rows * k];
    let (mut y_buf, y_at) = placed(&vec![0.0f32; rows * n], offset);
    let y = &mut y_buf[y_at..y_at + rows * n];
    let shape = LinearShape::new(rows, k, n);
    let flop = (2 * rows * k * n) as f64;
    // Calls per repetition: about a millisecond at 100 GFLOP/s (1e8 FLOP).
    let calls = ((1e8 / flop) as usize).max(1);
    let mut product = || linear_matmul_with(backend, shape, x, w, y).expect("linear");
    for _ in 0..calls {
        product(); // warm the caches and the clocks
    }
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = thread_cpu();
        for _ in 0..calls {
            product();
        }
        best = best.min((thread_cpu() - t0).as_secs_f64());
    }
    std::hint::black_box(y);
    flop * calls as f64 / best / 1e9
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| a.get(i).and_then(|x| x.parse().ok()).unwrap_or(default);
    let (k, n) = (num(1, 256), num(2, 704));
    let rows: Vec<usize> = a
        .get(3)
        .map(|r| {
            r.split(',')
                .map(|x| x.parse().expect("row count"))
                .collect()
        })
        .unwrap_or_else(|| vec![1, 2, 4, 8]);
    let reps = num(4, 15);
    let backend = a
        .get(5)
        .map(|b| Backend::from_name(b).expect("backend name"))
        .unwrap_or_else(Backend::best);
    let offset = num(6, 0);
    let dtype = a.first().map(String::as_str).unwrap_or("f32");
    for r in rows {
        let gflops = match dtype {
            "bf16" => run::<bf16>(backend, (k, n), r, reps, offset),
            _ => run::<f32>(backend, (k, n), r, reps, offset),
        };
        println!(
            "{dtype} {k}x{n} rows {r}: {gflops:.1} GFLOP/s (thread CPU time, best of {reps}; backend {}; offset {offset})",
            backend.name()
        );
    }
}
