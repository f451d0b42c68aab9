//! Thread and block indices, the barrier, dynamic shared memory and the status flag: every use of
//! the nvptx intrinsics, so the kernels read as plain Rust.

use core::arch::nvptx;
use core::sync::atomic::{AtomicU32, Ordering};

/// `(blockIdx.x, blockIdx.y, threadIdx.x, blockDim.x, gridDim.x)`.
#[inline(always)]
pub(crate) fn indices() -> (usize, usize, usize, usize, usize) {
    // SAFETY: reading the special registers %ctaid, %tid, %ntid, %nctaid has no preconditions
    // inside a kernel.
    unsafe {
        (
            nvptx::_block_idx_x() as usize,
            nvptx::_block_idx_y() as usize,
            nvptx::_thread_idx_x() as usize,
            nvptx::_block_dim_x() as usize,
            nvptx::_grid_dim_x() as usize,
        )
    }
}

/// `__syncthreads()`: every thread of the block must reach it (callers never return early
/// before one).
#[inline(always)]
pub(crate) fn barrier() {
    // SAFETY: `bar.sync 0`; the kernels call it on paths every thread of the block takes.
    unsafe { nvptx::_syncthreads() }
}

/// The block's dynamic shared memory, as `f64`s; the launcher gives `len` of them.
#[inline(always)]
pub(crate) fn shared_f64() -> *mut f64 {
    core::intrinsics::gpu::gpu_launch_sized_workgroup_mem::<f64>()
}

/// Marks the launch as refused: `*status |= 1` (atomic, as several threads may refuse).
///
/// # Safety
/// `status` is null or a valid device `u32` that only atomics touch during the launch.
#[inline(always)]
pub(crate) unsafe fn refuse(status: *mut u32) {
    if status.is_null() {
        return;
    }
    // SAFETY: the caller's contract: a valid, aligned `u32` accessed only atomically.
    let flag = unsafe { AtomicU32::from_ptr(status) };
    flag.fetch_or(1, Ordering::Relaxed);
}
