//! AVX-512F with AVX512_BF16: the token whose bf16 attention scores are `vdpbf16ps` dot products
//! (in `avx512.rs`, beside the lanes they reduce) and whose flash `P·V` on bf16 values is
//! `vdpbf16ps` too (`bf16_pv.rs`); everything else as [`Avx512`].
//!
//! `vdpbf16ps` adds the two products of a pair of bf16 elements into one f32 lane (elements
//! `2i, 2i+1` of each 32-element chunk into lane `i`, the odd one first), flushes subnormal inputs
//! and outputs to zero and rounds to nearest even whatever MXCSR says. Its sums are therefore
//! accurate but not in the canonical order: attention scores and flash's `P·V` on bf16 elements
//! are the computations of this backend that are not bit-equal to the other SIMD backends. On
//! `f32` elements, and in every other lane operation, this backend is [`Avx512`].

use super::Avx512;
use crate::simd::isa::{Isa, LaneJob};

/// Capability token: this CPU runs AVX-512F, AVX-512BW and AVX512_BF16 instructions (the
/// compiler enables AVX-512BW with AVX512_BF16), besides everything [`Avx512`] needs.
pub(crate) type Avx512Bf16 = Avx512<true>;

impl Avx512Bf16 {
    /// The token, if AVX512_BF16 and AVX-512BW are enabled at compile time or (with `std`)
    /// detected at run time, on top of everything [`Avx512`] needs.
    #[inline]
    pub(crate) fn new() -> Option<Self> {
        let avx512 = Avx512::<false>::new().is_some();
        if avx512
            && cfg!(all(
                target_feature = "avx512bw",
                target_feature = "avx512bf16"
            ))
        {
            return Some(Avx512(()));
        }
        #[cfg(feature = "std")]
        {
            if avx512
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512bf16")
            {
                return Some(Avx512(()));
            }
        }
        None
    }
}

impl Isa for Avx512Bf16 {
    type Plain = Avx512;
    #[inline(always)]
    fn plain(self) -> Avx512 {
        Avx512(())
    }
    #[inline]
    fn enter<J: LaneJob>(self, job: J) -> J::Output {
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        fn wrapper<J: LaneJob>(t: Avx512Bf16, job: J) -> J::Output {
            job.run(t)
        }
        // SAFETY: the token exists only where these target features are present.
        unsafe { wrapper(self, job) }
    }
}
