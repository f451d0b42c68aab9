//! Backend names and availability.

#[cfg(target_arch = "aarch64")]
use super::aarch64;
#[cfg(feature = "nightly")]
use super::portable;
#[cfg(target_arch = "x86_64")]
use super::x86;

/// The instruction set a kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The best backend available for the element and accumulator types.
    Auto,
    /// Scalar loops; always available, and the only backend for emulated accumulators. Lane
    /// kernels (optimizer steps, norms) run here on the scalar lane token, which gives the SIMD
    /// backends' bits.
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
            Backend::Avx512 => x86::Avx512::<false>::new().is_some(),
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

    /// `Auto` as [`Backend::best`]; any other backend as it is.
    pub fn resolve(self) -> Backend {
        match self {
            Backend::Auto => Backend::best(),
            b => b,
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
