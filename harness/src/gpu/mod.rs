//! The GPU path (`tessera gpu-check`): the kernel crate's generic code compiled to PTX
//! (`kernels/ptx`, `scripts/build-ptx.sh`), launched through `cudarc` and compared with the CPU
//! kernels and the exact oracle. Everything but [`cases`] needs the `cuda` feature; see
//! docs/gpu.md.

pub mod cases;
#[cfg(feature = "cuda")]
pub mod check;
#[cfg(feature = "cuda")]
pub mod launch;
#[cfg(feature = "cuda")]
pub mod report;
