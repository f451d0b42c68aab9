//! Test support: every SIMD token this build and CPU can run, for tests written over [`Lanes`]
//! anywhere in the crate (the arch `cfg`s stay here, in `simd/`).
//!
//! [`Lanes`]: super::Lanes

/// Calls `$check(name, token)` for every lane token this build and CPU can run.
macro_rules! for_each_lane_token {
    ($check:ident $(, $arg:expr)*) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(t) = $crate::simd::x86::Avx2::new() {
                $check("avx2", t $(, $arg)*);
            }
            if let Some(t) = $crate::simd::x86::Avx512::<false>::new() {
                $check("avx512", t $(, $arg)*);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if let Some(t) = $crate::simd::aarch64::Neon::new() {
                $check("neon", t $(, $arg)*);
            }
        }
        #[cfg(feature = "nightly")]
        {
            if let Some(t) = $crate::simd::portable::Portable::new() {
                $check("portable", t $(, $arg)*);
            }
        }
    }};
}

/// Calls `$check(name, token, bf16_scores_canonical)` for every token, `avx512bf16` included.
macro_rules! for_each_row_token {
    ($check:ident) => {{
        $crate::simd::for_each_lane_token!($check);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(t) = $crate::simd::x86::Avx512Bf16::new() {
                $check("avx512bf16", t);
            }
        }
    }};
}

pub(crate) use for_each_lane_token;
pub(crate) use for_each_row_token;
