//! The GPU path (`tessera gpu-check`): the kernel crate's generic code compiled to PTX
//! (`kernels/ptx`, `scripts/build-ptx.sh`), launched through `cudarc` and compared with the CPU
//! kernels and the exact oracle. The launcher (`launch`) and the run (`check`) need the `cuda`
//! feature, and so do the comparisons (`compare`, which call the kernel crate's `cuda` entry
//! points on the CPU); they need no GPU and are tested on any machine with the feature on.
//! See docs/gpu.md.

pub mod cases;
#[cfg(feature = "cuda")]
pub mod check;
#[cfg(feature = "cuda")]
pub mod compare;
#[cfg(feature = "cuda")]
pub mod launch;
pub mod report;
