//! Flash attention on several threads: the kernel crate splits a run into independent work items
//! ([`flash_items`]: one per query tile of each head) and runs any range of them
//! ([`flash_attention_part`]); this driver gives each of `threads` workers a contiguous range of
//! items, its own scratch, and the matching rows of the output. The calling thread runs the first
//! range itself; the others go to a rayon pool of `threads - 1` threads kept for the life of the
//! process (one per thread count asked for), so a call costs a wake-up, not a thread start, and
//! the caller waits for the pool spinning, not asleep: decode's whole run is tens of
//! microseconds, and each sleep and wake-up costs several (docs/results/performance.md has what
//! blocking in `ThreadPool::install` instead cost two-thread decode).
//!
//! Each row is computed by the same operations whichever thread runs it, so the output has the
//! same bits for every thread count (the tests check it).

use crate::attention::{ElementKind, KernelConfig};
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tessera_kernels::attention::{
    flash_attention_part, flash_attention_with, flash_item_row, flash_items, flash_scratch_len,
    AttentionShape, FlashTiles, Layout,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Accumulator, Element, Error};

/// The number of threads to use by default: every core this process may run on.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`flash_attention_with`] split over `threads` threads (at most one per work item). Token-major
/// outputs, whose rows of one head are not contiguous, run on one thread.
#[allow(clippy::too_many_arguments)]
pub fn flash_threaded<E: Element + Send + Sync, A: Accumulator + Send>(
    backend: Backend,
    shape: &AttentionShape,
    tiles: FlashTiles,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
    threads: usize,
) -> Result<(), Error> {
    let items = flash_items(shape, tiles)?;
    let scratch_len = flash_scratch_len(shape, tiles)?;
    let threads = threads.clamp(1, items.max(1));
    if threads == 1 || shape.layout != Layout::HeadMajor {
        return with_scratch(scratch_len, |scratch: &mut [A]| {
            flash_attention_with(backend, shape, tiles, q, k, v, out, scratch)
        });
    }
    // Item ranges of near-equal size, and the head-major rows (= output rows) each one owns.
    let bounds: Vec<usize> = (0..=threads).map(|t| t * items / threads).collect();
    let d = shape.head_dim;
    let mut parts = Vec::with_capacity(threads);
    let mut rest = out;
    for w in bounds.windows(2) {
        let rows = flash_item_row(shape, tiles, w[1])? - flash_item_row(shape, tiles, w[0])?;
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(rows * d);
        parts.push((w[0]..w[1], part));
        rest = tail;
    }
    let run = |(range, part): (std::ops::Range<usize>, &mut [E])| {
        with_scratch(scratch_len, |scratch: &mut [A]| {
            flash_attention_part(backend, shape, tiles, range, q, k, v, part, scratch)
        })
    };
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Ok(());
    };
    let Some(pool) = pool(threads - 1) else {
        // No pool (the OS refused its threads): the same parts, one after another.
        return std::iter::once(first).chain(parts).try_for_each(run);
    };
    // The calling thread runs the first part itself while the pool's `threads - 1` workers run
    // the others, then waits for them spinning (a short while) rather than asleep: a decode
    // step is tens of microseconds, and each sleep and wake-up costs several.
    let mut results: Vec<Result<(), Error>> = (1..threads).map(|_| Ok(())).collect();
    let done = AtomicUsize::new(0);
    let mine = pool.in_place_scope(|s| {
        for (slot, part) in results.iter_mut().zip(parts) {
            let (run, done) = (&run, &done);
            s.spawn(move |_| {
                *slot = run(part);
                done.fetch_add(1, Ordering::Release);
            });
        }
        let mine = run(first);
        let start = Instant::now();
        while done.load(Ordering::Acquire) < threads - 1 && start.elapsed() < SPIN {
            std::hint::spin_loop();
        }
        mine
    });
    mine?;
    results.into_iter().collect()
}

/// How long the calling thread spins for the workers' parts before the scope puts it to sleep.
const SPIN: Duration = Duration::from_micros(200);

/// Runs `f` on `len` accumulators of scratch kept by this thread between calls (the kernels write
/// every scratch value before reading it, so what a previous call left there does not matter).
/// At 1x8x1024x64 flash's scratch is about 4 MiB; allocated anew each call, the pages it touches
/// are faulted in and zeroed every time, a cost that grew with the tiles.
fn with_scratch<A: Accumulator, R>(len: usize, f: impl FnOnce(&mut [A]) -> R) -> R {
    thread_local! {
        static CACHE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
    }
    // Taken out while in use (a nested call on this thread finds none and allocates its own).
    let mut buf: Vec<A> = CACHE
        .with_borrow_mut(|cache| {
            let at = cache.iter().position(|b| b.is::<Vec<A>>())?;
            cache.swap_remove(at).downcast::<Vec<A>>().ok().map(|b| *b)
        })
        .unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, A::ZERO);
    }
    let out = f(&mut buf[..len]);
    CACHE.with_borrow_mut(|cache| cache.push(Box::new(buf)));
    out
}

/// The process's pool of `threads` workers, built on first use (`None` if the OS refuses the
/// threads). Each thread count has its own pool, whatever `RAYON_NUM_THREADS` says about rayon's
/// global one.
fn pool(threads: usize) -> Option<Arc<ThreadPool>> {
    type Pools = Mutex<Vec<(usize, Arc<ThreadPool>)>>;
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Some(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tessera-flash-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    pools.push((threads, Arc::clone(&pool)));
    Some(pool)
}

/// Flash with `config`'s element type, backend and tiles and the `f32` accumulator on `threads`
/// threads, on `f32` inputs rounded into the element; the output widened back to `f32`.
pub fn run_f32(
    config: &KernelConfig,
    threads: usize,
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Result<Vec<f32>, Error> {
    fn typed<E: Element + Send + Sync>(
        config: &KernelConfig,
        threads: usize,
        shape: &AttentionShape,
        [q, k, v]: [&[f32]; 3],
    ) -> Result<Vec<f32>, Error> {
        let convert = |x: &[f32]| x.iter().map(|&x| E::from_f32(x)).collect::<Vec<E>>();
        let (q, k, v) = (convert(q), convert(k), convert(v));
        let mut out = vec![E::from_f32(f32::NAN); q.len()];
        let (backend, tiles) = (config.backend, config.tiles);
        flash_threaded::<E, f32>(backend, shape, tiles, &q, &k, &v, &mut out, threads)?;
        Ok(out.into_iter().map(Element::to_f32).collect())
    }
    match config.element {
        ElementKind::F32 => typed::<f32>(config, threads, shape, [q, k, v]),
        ElementKind::Bf16 => typed::<bf16>(config, threads, shape, [q, k, v]),
        ElementKind::F64 => typed::<f64>(config, threads, shape, [q, k, v]),
    }
}
