//! Adam's step and hyper-Adam's read-only pass. The step is the CPU build's `adam_step_with` on
//! the generic backend over each thread's 16 parameters; the pass forms each parameter's terms
//! with `HyperAdamTerms::terms` and sums them in `f64`: each thread its strided share, then a
//! tree over the block in shared memory, then a second kernel over the blocks' sums (a fixed
//! order, so the same launch gives the same bits every run).

use crate::thread::{barrier, indices, refuse, shared_f64};
use core::slice;
use tessera_kernels::optim::{adam_step_with, AdamConfig, HyperAdamTerms};
use tessera_kernels::simd::Backend;

/// Parameters per thread of [`adam_step`]: one chunk of the generic backend's sixteen lanes.
const CHUNK: usize = 16;
/// Sums per parameter of the hyper pass.
const TERMS: usize = HyperAdamTerms::TERMS;

/// One Adam step (`t >= 1`) on `n` parameters: thread `g` (global index) updates
/// `16 g .. 16 g + 16`. Each thread checks its own gradients (the CPU call checks all before
/// writing any: docs/gpu.md).
///
/// # Safety
/// `params`, `grads`, `m`, `v` are device buffers of `n` `f32`s; `status` a device `u32`; the
/// grid covers `n` with at most one thread per chunk.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "gpu-kernel" fn adam_step(
    n: u64,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    t: u32,
    params: *mut f32,
    grads: *const f32,
    m: *mut f32,
    v: *mut f32,
    status: *mut u32,
) {
    let (block, _, tid, block_dim, _) = indices();
    let start = (block * block_dim + tid) * CHUNK;
    let n = n as usize;
    if start >= n {
        return;
    }
    let len = CHUNK.min(n - start);
    let cfg = AdamConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
    };
    // SAFETY: `start + len <= n`, and the chunk `start..start + len` is this thread's alone
    // (one thread per chunk), so the mutable slices alias nothing; `grads` is only read.
    let (p, g, m, v) = unsafe {
        (
            slice::from_raw_parts_mut(params.add(start), len),
            slice::from_raw_parts(grads.add(start), len),
            slice::from_raw_parts_mut(m.add(start), len),
            slice::from_raw_parts_mut(v.add(start), len),
        )
    };
    if adam_step_with(Backend::Generic, &cfg, t, p, g, m, v).is_err() {
        // SAFETY: `status` is the launcher's device flag.
        unsafe { refuse(status) };
    }
}

/// Hyper-Adam's pass, first kernel: the five sums of the terms of the step `(cfg, k)` over
/// this block's share of the `n` parameters (thread `g` of `G` takes `g, g + G, ..`), into
/// `partials[5 block .. 5 block + 5]`. `params` is read only with weight decay (may be null
/// without). Block size: a power of two up to 1024, with `5 · blockDim` `f64`s of dynamic
/// shared memory.
///
/// # Safety
/// `grads`, `m`, `v`, `prev` (and `params` with weight decay) hold `n` `f32`s; `partials` holds
/// `5 · gridDim` `f64`s; shared memory as above; `status` a device `u32`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "gpu-kernel" fn hyper_adam_partials(
    n: u64,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    k: u32,
    grads: *const f32,
    m: *const f32,
    v: *const f32,
    prev: *const f32,
    params: *const f32,
    partials: *mut f64,
    status: *mut u32,
) {
    let (block, _, tid, block_dim, grid) = indices();
    let cfg = AdamConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
    };
    // Uniform across the launch: every thread returns here, or none (no thread is left at a
    // barrier).
    let Ok(terms) = HyperAdamTerms::new(&cfg, k) else {
        // SAFETY: `status` is the launcher's device flag.
        unsafe { refuse(status) };
        return;
    };
    if !block_dim.is_power_of_two() {
        // SAFETY: as above.
        unsafe { refuse(status) };
        return;
    }
    let n = n as usize;
    // SAFETY: the caller's contract: read-only device buffers of `n` values (`params` only with
    // weight decay).
    let (g, m, v, prev) = unsafe {
        (
            slice::from_raw_parts(grads, n),
            slice::from_raw_parts(m, n),
            slice::from_raw_parts(v, n),
            slice::from_raw_parts(prev, n),
        )
    };
    let w: &[f32] = if weight_decay != 0.0 && !params.is_null() {
        // SAFETY: as above.
        unsafe { slice::from_raw_parts(params, n) }
    } else {
        &[]
    };
    let mut sums = [0.0f64; TERMS];
    let mut bad = false;
    let mut i = block * block_dim + tid;
    let stride = grid * block_dim;
    while i < n {
        let (Some(&gi), Some(&mi), Some(&vi), Some(&pi)) =
            (g.get(i), m.get(i), v.get(i), prev.get(i))
        else {
            break;
        };
        bad |= !gi.is_finite();
        let wi = w.get(i).copied().unwrap_or(0.0);
        for (s, t) in sums.iter_mut().zip(terms.terms(gi, mi, vi, pi, wi)) {
            *s += t as f64;
        }
        i += stride;
    }
    if bad {
        // SAFETY: as above.
        unsafe { refuse(status) };
    }
    // SAFETY: the block's `5 · blockDim` shared `f64`s, and `partials` of `5 · gridDim`.
    unsafe { block_tree(sums, tid, block_dim, partials.add(block * TERMS)) };
}

/// Hyper-Adam's pass, second kernel (one block, a power of two up to 1024 threads, `5 ·
/// blockDim` shared `f64`s): `sums[j] = Σ_b partials[5 b + j]` over `blocks` blocks of the first.
///
/// # Safety
/// `partials` holds `5 · blocks` `f64`s and `sums` 5; shared memory as above.
#[no_mangle]
pub unsafe extern "gpu-kernel" fn hyper_adam_reduce(
    blocks: u32,
    partials: *const f64,
    sums: *mut f64,
    status: *mut u32,
) {
    let (_, _, tid, block_dim, _) = indices();
    if !block_dim.is_power_of_two() {
        // SAFETY: `status` is the launcher's device flag.
        unsafe { refuse(status) };
        return;
    }
    // SAFETY: the caller's contract.
    let partials = unsafe { slice::from_raw_parts(partials, blocks as usize * TERMS) };
    let mut acc = [0.0f64; TERMS];
    let mut b = tid;
    while let Some(row) = partials.get(b * TERMS..b * TERMS + TERMS) {
        for (a, p) in acc.iter_mut().zip(row) {
            *a += p;
        }
        b += block_dim;
    }
    // SAFETY: as above; `sums` holds 5.
    unsafe { block_tree(acc, tid, block_dim, sums) };
}

/// Sums `mine` over the block (every thread calls it) by a pairwise tree in shared memory:
/// `s[t] += s[t + h]` for `h = blockDim/2, .., 1`, a barrier after each level; thread 0 writes
/// the five totals to `out`.
///
/// # Safety
/// Called by every thread of the block; `blockDim` a power of two; `5 · blockDim` `f64`s of
/// dynamic shared memory; `out` valid for 5 `f64` writes.
unsafe fn block_tree(mine: [f64; TERMS], tid: usize, block_dim: usize, out: *mut f64) {
    let shared = shared_f64();
    for (j, x) in mine.iter().enumerate() {
        // SAFETY: `j · blockDim + tid < 5 · blockDim`, this thread's own slot.
        unsafe { shared.add(j * block_dim + tid).write(*x) };
    }
    barrier();
    let mut half = block_dim / 2;
    while half > 0 {
        if tid < half {
            for j in 0..TERMS {
                // SAFETY: `tid + half < blockDim`: both slots are in range; slot `tid` is this
                // thread's at this level and `tid + half` was written before the last barrier
                // and is read by no one else at this level.
                unsafe {
                    let at = shared.add(j * block_dim + tid);
                    at.write(at.read() + shared.add(j * block_dim + tid + half).read());
                }
            }
        }
        barrier();
        half /= 2;
    }
    if tid == 0 {
        for j in 0..TERMS {
            // SAFETY: slot `j · blockDim` holds the block's total after the last barrier; `out`
            // is valid for 5 writes (the caller's contract).
            unsafe { out.add(j).write(shared.add(j * block_dim).read()) };
        }
    }
}
