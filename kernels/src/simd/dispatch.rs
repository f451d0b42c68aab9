//! Backend names, availability, and the one place a backend is chosen for a job.

#[cfg(target_arch = "aarch64")]
use super::aarch64;
#[cfg(feature = "nightly")]
use super::portable;
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{Generic, RowOps};
use crate::{Accumulator, Element, Error, Result};
use half::bf16;

/// A set of row primitives to run a kernel with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The best backend available for the element and accumulator types.
    Auto,
    /// Scalar loops; always available, and the only backend for emulated accumulators.
    Generic,
    /// x86-64 AVX2 + FMA, 256-bit lanes.
    Avx2,
    /// x86-64 AVX-512F, 512-bit lanes.
    Avx512,
    /// x86-64 AVX-512F with AVX512_BF16: `vdpbf16ps` for bf16 dot products.
    Avx512Bf16,
    /// aarch64 NEON, 128-bit lanes.
    Neon,
    /// `core::simd` (feature `nightly`).
    Portable,
}

impl Backend {
    /// Every concrete backend (all but `Auto`), slowest first.
    pub const ALL: [Backend; 6] = [
        Backend::Generic,
        Backend::Portable,
        Backend::Neon,
        Backend::Avx2,
        Backend::Avx512,
        Backend::Avx512Bf16,
    ];

    /// The backend's command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Generic => "generic",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Avx512Bf16 => "avx512bf16",
            Backend::Neon => "neon",
            Backend::Portable => "portable",
        }
    }

    /// Parses a name given by [`Backend::name`].
    pub fn from_name(name: &str) -> Option<Backend> {
        core::iter::once(Backend::Auto)
            .chain(Backend::ALL)
            .find(|b| b.name() == name)
    }

    /// Whether this build on this CPU can run the backend: compile-time target features first,
    /// then (with the `std` feature) run-time detection; without either, only the generic
    /// backend (and `portable` with `nightly`) is available.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Auto | Backend::Generic => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => x86::Avx2::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => x86::Avx512::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512Bf16 => x86::Avx512Bf16::new().is_some(),
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => aarch64::Neon::new().is_some(),
            #[cfg(feature = "nightly")]
            Backend::Portable => portable::Portable::new().is_some(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest available concrete backend.
    pub fn best() -> Backend {
        Backend::ALL
            .iter()
            .rev()
            .copied()
            .find(|b| b.is_available())
            .unwrap_or(Backend::Generic)
    }
}

/// The concrete backends this build can run on this CPU, slowest first.
pub fn available_backends() -> impl Iterator<Item = Backend> {
    Backend::ALL.into_iter().filter(|b| b.is_available())
}

/// A kernel body, written once over [`RowOps`] and run with whichever backend is chosen.
pub trait Job<E: Element, A: Accumulator> {
    /// What the kernel returns.
    type Output;
    /// Runs the kernel with `ops`.
    fn run<O: RowOps<E, A>>(self, ops: O) -> Self::Output;
}

/// Runs `job` on `backend`. SIMD backends serve only the `f32` accumulator; any other accumulator
/// runs on the generic backend.
pub(crate) fn run<E: Element, A: Accumulator, J: Job<E, A>>(
    backend: Backend,
    job: J,
) -> Result<J::Output> {
    A::dispatch(backend, job)
}

/// The generic-only dispatch of emulated and `f64` accumulators.
pub(crate) fn run_generic<E: Element, A: Accumulator, J: Job<E, A>>(
    backend: Backend,
    job: J,
) -> Result<J::Output> {
    match backend {
        Backend::Auto | Backend::Generic => Ok(job.run(Generic)),
        other => Err(Error::BackendUnavailable(other)),
    }
}

/// Runs `$job` with the token of `$backend` if its constructor confirms the CPU has it.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", feature = "nightly"))]
macro_rules! run_with {
    ($token:expr, $job:expr, $backend:expr) => {
        match $token {
            Some(token) => Ok($job.run(token)),
            None => Err(Error::BackendUnavailable($backend)),
        }
    };
}

/// Chooses among the backends that implement `RowOps<E, f32>` for the job's element `E`.
macro_rules! run_simd {
    ($backend:expr, $job:expr) => {{
        let backend = match $backend {
            Backend::Auto => Backend::best(),
            b => b,
        };
        match backend {
            Backend::Generic => Ok($job.run(Generic)),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => run_with!(x86::Avx2::new(), $job, backend),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => run_with!(x86::Avx512::new(), $job, backend),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512Bf16 => run_with!(x86::Avx512Bf16::new(), $job, backend),
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => run_with!(aarch64::Neon::new(), $job, backend),
            #[cfg(feature = "nightly")]
            Backend::Portable => run_with!(portable::Portable::new(), $job, backend),
            other => Err(Error::BackendUnavailable(other)),
        }
    }};
}

/// Dispatch for `f32` elements with the `f32` accumulator.
pub(crate) fn run_f32<J: Job<f32, f32>>(backend: Backend, job: J) -> Result<J::Output> {
    run_simd!(backend, job)
}

/// Dispatch for `bf16` elements with the `f32` accumulator.
pub(crate) fn run_bf16<J: Job<bf16, f32>>(backend: Backend, job: J) -> Result<J::Output> {
    run_simd!(backend, job)
}

/// A loop written once over [`Lanes`](super::lanes::Lanes), for [`run_lanes`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) trait LaneJob {
    /// What the loop returns.
    type Output;
    /// Runs the loop on the lanes of `l`.
    fn run<L: super::lanes::Lanes>(self, l: L) -> Self::Output;
}

/// Runs `job` on the lanes of the best backend this CPU has (`Backend::best`), inside a function
/// compiled for that backend's features; `None` when there is no SIMD backend.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn run_lanes<J: LaneJob>(job: J) -> Option<J::Output> {
    match Backend::best() {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 | Backend::Avx512Bf16 => {
            #[target_feature(enable = "avx512f")]
            fn wrapper<J: LaneJob>(t: x86::Avx512, job: J) -> J::Output {
                job.run(t)
            }
            let t = x86::Avx512::new()?;
            // SAFETY: the token exists only where AVX-512F is present.
            Some(unsafe { wrapper(t, job) })
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => {
            #[target_feature(enable = "avx2,fma")]
            fn wrapper<J: LaneJob>(t: x86::Avx2, job: J) -> J::Output {
                job.run(t)
            }
            let t = x86::Avx2::new()?;
            // SAFETY: the token exists only where AVX2 and FMA are present.
            Some(unsafe { wrapper(t, job) })
        }
        #[cfg(target_arch = "aarch64")]
        Backend::Neon => {
            #[target_feature(enable = "neon")]
            fn wrapper<J: LaneJob>(t: aarch64::Neon, job: J) -> J::Output {
                job.run(t)
            }
            let t = aarch64::Neon::new()?;
            // SAFETY: the token exists only where NEON is present.
            Some(unsafe { wrapper(t, job) })
        }
        _ => None,
    }
}
