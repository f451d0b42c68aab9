//! AVX-512F with AVX512_BF16: bf16 dot products by `vdpbf16ps`; everything else as [`Avx512`].
//!
//! `vdpbf16ps` adds the two products of a pair of bf16 elements into one f32 lane (elements
//! `2i, 2i+1` of each 32-element chunk into lane `i`), flushes subnormal inputs and outputs to zero
//! and rounds to nearest even whatever MXCSR says. Its dot products are therefore accurate but not
//! in the canonical order: attention scores on bf16 elements are the one computation of this
//! backend that is not bit-equal to the other SIMD backends. On `f32` elements, and in every other
//! lane operation, this backend is [`Avx512`].

use super::Avx512;
use crate::simd::dispatch::{Isa, LaneJob};
use crate::simd::lanes::{reduce_group, Lanes};
use core::arch::x86_64::*;
use half::bf16;

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

/// bf16 elements per `vdpbf16ps` operand.
const PAIR_LANES: usize = 32;

/// Keys whose dot products run together (independent accumulation chains).
const KEYS_PER_GROUP: usize = 8;

/// Sixteen f32 lanes holding 32 bf16 elements, as `vdpbf16ps` reads them.
#[inline(always)]
fn load_pairs(_: Avx512Bf16, x: &[bf16; PAIR_LANES]) -> __m512bh {
    // SAFETY: AVX-512F is present; `x` is 64 readable bytes (`bf16` is a transparent `u16`), and
    // `__m512bh` is 32 bf16 bit patterns in the same 64 bytes as `__m512i`.
    unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(x.as_ptr().cast())) }
}

/// [`load_pairs`] of fewer than 32 elements, zero-padded.
#[inline(always)]
fn load_pairs_partial(t: Avx512Bf16, x: &[bf16]) -> __m512bh {
    let mut buf = [bf16::ZERO; PAIR_LANES];
    for (b, &v) in buf.iter_mut().zip(x) {
        *b = v;
    }
    load_pairs(t, &buf)
}

/// The 16 lane sums of `q · key` by `vdpbf16ps`, for each of the `G` keys of length
/// `d = q.len()` that follow one another in `keys`.
#[inline(always)]
fn dots<const G: usize>(t: Avx512Bf16, q: &[bf16], keys: &[bf16]) -> [__m512; G] {
    let d = q.len();
    // SAFETY: `Avx512Bf16` proves AVX-512F is present.
    let mut acc = [unsafe { _mm512_setzero_ps() }; G];
    let (q_chunks, q_tail) = q.as_chunks::<PAIR_LANES>();
    for (c, qc) in q_chunks.iter().enumerate() {
        let qv = load_pairs(t, qc);
        for (r, a) in acc.iter_mut().enumerate() {
            let start = r * d + c * PAIR_LANES;
            let kc = keys
                .get(start..start + PAIR_LANES)
                .and_then(|k| k.try_into().ok());
            if let Some(kc) = kc {
                // SAFETY: `Avx512Bf16` proves AVX512_BF16 is present.
                *a = unsafe { _mm512_dpbf16_ps(*a, qv, load_pairs(t, kc)) };
            }
        }
    }
    if !q_tail.is_empty() {
        let qv = load_pairs_partial(t, q_tail);
        let tail_start = q_chunks.len() * PAIR_LANES;
        for (r, a) in acc.iter_mut().enumerate() {
            if let Some(kt) = keys.get(r * d + tail_start..(r + 1) * d) {
                // SAFETY: `Avx512Bf16` proves AVX512_BF16 is present.
                *a = unsafe { _mm512_dpbf16_ps(*a, qv, load_pairs_partial(t, kt)) };
            }
        }
    }
    acc
}

/// Attention scores of bf16 rows (`Lanes::bf16_scores` of [`Avx512Bf16`]): the canonical
/// grouping of keys, `vdpbf16ps` for the dot products and the canonical lane reduction.
#[inline(always)]
pub(super) fn scores(t: Avx512Bf16, q: &[bf16], keys: &[bf16], scale: f32, out: &mut [f32]) {
    let d = q.len();
    if d == 0 {
        out.fill(0.0);
        return;
    }
    // A group spans `KEYS_PER_GROUP·d` elements; saturated, it is still longer than any slice.
    let group_len = d.saturating_mul(KEYS_PER_GROUP);
    let mut groups = keys.chunks_exact(group_len);
    let mut outs = out.chunks_exact_mut(KEYS_PER_GROUP);
    for (group, o) in (&mut groups).zip(&mut outs) {
        let sums = reduce_group(t, dots::<KEYS_PER_GROUP>(t, q, group));
        for (o, s) in o.iter_mut().zip(sums) {
            *o = s * scale;
        }
    }
    let rest = groups.remainder().chunks_exact(d);
    for (key, o) in rest.zip(outs.into_remainder()) {
        let [acc] = dots::<1>(t, q, key);
        *o = t.reduce_add(acc) * scale;
    }
}
