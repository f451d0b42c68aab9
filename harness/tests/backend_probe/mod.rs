//! The backends this CPU supports, by a probe independent of the kernel crate's detection, and
//! the backends `TESSERA_REQUIRE_BACKENDS` (comma-separated names, set by `.ci/run` from
//! `/proc/cpuinfo`) demands: shared by the backend tests of every kernel family.

use tessera_kernels::simd::Backend;

/// Backends this CPU supports by a probe independent of the kernel crate's detection.
pub fn probed_backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut backends = vec![Backend::Generic];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            backends.push(Backend::Avx2);
        }
        if is_x86_feature_detected!("avx512f") {
            backends.push(Backend::Avx512);
            if is_x86_feature_detected!("avx512bf16") {
                backends.push(Backend::Avx512Bf16);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            backends.push(Backend::Neon);
        }
    }
    backends
}

/// The backends `TESSERA_REQUIRE_BACKENDS` names (none when it is unset); panics on a name that is
/// not a backend's.
pub fn required_backends() -> Vec<Backend> {
    let Ok(required) = std::env::var("TESSERA_REQUIRE_BACKENDS") else {
        return Vec::new();
    };
    required
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            Backend::from_name(name)
                .filter(|&b| b != Backend::Auto)
                .unwrap_or_else(|| {
                    let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                    panic!("TESSERA_REQUIRE_BACKENDS names `{name}`; known backends: {names:?}")
                })
        })
        .collect()
}
