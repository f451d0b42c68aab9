//! Flash attention on several threads: the kernel crate splits a run into independent work items
//! ([`flash_items`]: one per query tile of each head) and runs any range of them
//! ([`flash_attention_part`]); this driver gives each of `threads` scoped threads a contiguous
//! range of items, its own scratch, and the matching rows of the output.
//!
//! Each row is computed by the same operations whichever thread runs it, so the output has the
//! same bits for every thread count (the tests check it).

use crate::attention::{ElementKind, KernelConfig};
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
        let mut scratch = vec![A::ZERO; scratch_len];
        return flash_attention_with(backend, shape, tiles, q, k, v, out, &mut scratch);
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
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|(range, part)| {
                s.spawn(move || {
                    let mut scratch = vec![A::ZERO; scratch_len];
                    flash_attention_part(backend, shape, tiles, range, q, k, v, part, &mut scratch)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(Error::Overflow)))
            .collect::<Result<Vec<()>, Error>>()
    })?;
    Ok(())
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
