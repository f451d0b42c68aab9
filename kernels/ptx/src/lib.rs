//! `tessera-ptx`: the kernels of `tessera-kernels`, compiled for NVIDIA GPUs by rustc's own
//! `nvptx64-nvidia-cuda` target (nightly, `-Zbuild-std=core`, linked by `llvm-bitcode-linker`;
//! `scripts/build-ptx.sh` builds it for `sm_80` and `sm_90` and checks the PTX with `ptxas`).
//!
//! Every entry point is a thin wrapper: it reads its thread and block indices, turns the launch's
//! device pointers into the slices its thread may touch, and calls the *generic* kernel code of
//! the CPU build (`flash_attention_row`, `adam_step_with`, `HyperAdamTerms`). What could not be
//! reused, and why, is in `docs/gpu.md`.
//!
//! | entry point | grid | block | one thread |
//! |---|---|---|---|
//! | `flash_{f32,bf16,bf16_mma}` | (query tiles, batch·heads) | `block_q` threads | one query row |
//! | `decode_{f32,bf16}` | batch | heads threads | one head's single query row |
//! | `adam_step` | ⌈n / (16·block)⌉ | any | 16 parameters |
//! | `hyper_adam_partials` | any | power of two ≤ 1024 | a strided share; block tree in shared memory |
//! | `hyper_adam_reduce` | 1 | power of two ≤ 1024 | the second pass over the blocks' sums |
//!
//! Errors: a kernel whose arguments the kernel crate refuses writes `1` into `status` (a device
//! `u32` the launcher zeroes first) and leaves its outputs as they were; it never panics (the
//! panic handler traps, and the kernel crate has no panic paths: `firmware/run.sh` proves it).
//!
//! `unsafe` here, and only here outside `kernels/src/simd`: raw device pointers become slices
//! (each `// SAFETY:` says why the launcher's buffers make that sound), the nvptx intrinsics for
//! indices and barriers, and dynamic shared memory. Why this crate and not `simd/`: `docs/gpu.md`.

#![no_std]
#![feature(
    abi_gpu_kernel,
    stdarch_nvptx,
    gpu_intrinsics,
    gpu_launch_sized_workgroup_mem,
    core_intrinsics
)]
#![allow(internal_features)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod attention;
mod optim;
mod thread;

/// A kernel that the kernel crate refused (`Err`) cannot return it: it traps here only on a
/// panic, which the kernel crate's no-panic proof rules out.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: `trap` aborts the kernel; it has no preconditions.
    unsafe { core::arch::nvptx::trap() }
}
