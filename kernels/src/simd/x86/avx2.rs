//! AVX2 + FMA: the 16 virtual lanes as two 256-bit registers (lanes `0..8` and `8..16`).

use crate::simd::isa::isa_with_features;
use crate::simd::lanes::{Lanes, LANES};
use core::arch::x86_64::*;
use half::bf16;

/// Capability token: this CPU runs AVX2 and FMA instructions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if AVX2 and FMA are enabled at compile time or (with `std`) detected at run time.
    #[inline]
    pub(crate) fn new() -> Option<Self> {
        if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
            return Some(Avx2(()));
        }
        #[cfg(feature = "std")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Some(Avx2(()));
            }
        }
        None
    }
}

isa_with_features!(Avx2, "avx2,fma");

/// Sixteen `f32` in two registers.
#[derive(Clone, Copy)]
pub(crate) struct F8x2(__m256, __m256);

/// Sixteen `i32` in two registers.
#[derive(Clone, Copy)]
pub(crate) struct I8x2(__m256i, __m256i);

/// The mask of lanes `0..n` of a register whose first lane is `first`.
#[inline(always)]
fn prefix_mask(_: Avx2, n: usize, first: i32) -> __m256i {
    let n = n.min(LANES) as i32 - first;
    // SAFETY: `Avx2` proves AVX2 is present.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

/// Eight bf16 bit patterns widened to `f32`: the bits move to the high half.
#[inline(always)]
fn widen_bf16(_: Avx2, h: __m128i) -> __m256 {
    // SAFETY: `Avx2` proves AVX2 is present.
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h))) }
}

/// `[a_lo + a_hi | b_lo + b_hi]` of two 8-lane registers: one level of the halving tree for two
/// vectors at once.
#[inline(always)]
fn sum_pairs(_: Avx2, a: __m256, b: __m256) -> __m256 {
    // SAFETY: `Avx2` proves AVX is present.
    unsafe {
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    }
}

impl Lanes for Avx2 {
    type F = F8x2;
    type I = I8x2;
    type M = F8x2;

    #[inline(always)]
    fn splat(self, x: f32) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        let v = unsafe { _mm256_set1_ps(x) };
        F8x2(v, v)
    }
    #[inline(always)]
    fn splat_i32(self, x: i32) -> I8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        let v = unsafe { _mm256_set1_epi32(x) };
        I8x2(v, v)
    }
    #[inline(always)]
    fn load(self, x: &[f32; LANES]) -> F8x2 {
        let p = x.as_ptr();
        // SAFETY: AVX is present; `x` holds 16 readable `f32`, `p + 8` is inside it.
        unsafe { F8x2(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
    }
    #[inline(always)]
    fn load_partial(self, x: &[f32]) -> F8x2 {
        let p = x.as_ptr();
        let (lo, hi) = (prefix_mask(self, x.len(), 0), prefix_mask(self, x.len(), 8));
        // SAFETY: AVX is present; masked loads read only lanes `< x.len()`, which are inside `x`,
        // and suppress faults elsewhere; `wrapping_add` forms the high address without UB.
        unsafe {
            F8x2(
                _mm256_maskload_ps(p, lo),
                _mm256_maskload_ps(p.wrapping_add(8), hi),
            )
        }
    }
    #[inline(always)]
    fn load_bf16(self, x: &[bf16; LANES]) -> F8x2 {
        let p = x.as_ptr().cast::<__m128i>();
        // SAFETY: SSE2 is present; `x` is 32 readable bytes (`bf16` is a transparent `u16`).
        let (lo, hi) = unsafe { (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1))) };
        F8x2(widen_bf16(self, lo), widen_bf16(self, hi))
    }
    #[inline(always)]
    fn load_bf16_partial(self, x: &[bf16]) -> F8x2 {
        let mut buf = [bf16::ZERO; LANES];
        for (b, &v) in buf.iter_mut().zip(x) {
            *b = v;
        }
        self.load_bf16(&buf)
    }
    #[inline(always)]
    fn store(self, v: F8x2, out: &mut [f32; LANES]) {
        let p = out.as_mut_ptr();
        // SAFETY: AVX is present; `out` holds 16 writable `f32`, `p + 8` is inside it.
        unsafe {
            _mm256_storeu_ps(p, v.0);
            _mm256_storeu_ps(p.add(8), v.1);
        }
    }
    #[inline(always)]
    fn store_partial(self, v: F8x2, out: &mut [f32]) {
        let p = out.as_mut_ptr();
        let (lo, hi) = (
            prefix_mask(self, out.len(), 0),
            prefix_mask(self, out.len(), 8),
        );
        // SAFETY: AVX is present; masked stores write only lanes `< out.len()`, inside `out`.
        unsafe {
            _mm256_maskstore_ps(p, lo, v.0);
            _mm256_maskstore_ps(p.wrapping_add(8), hi, v.1);
        }
    }

    #[inline(always)]
    fn add(self, a: F8x2, b: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_add_ps(a.0, b.0), _mm256_add_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn sub(self, a: F8x2, b: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_sub_ps(a.0, b.0), _mm256_sub_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn mul(self, a: F8x2, b: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_mul_ps(a.0, b.0), _mm256_mul_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn div(self, a: F8x2, b: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_div_ps(a.0, b.0), _mm256_div_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn sqrt(self, a: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_sqrt_ps(a.0), _mm256_sqrt_ps(a.1)) }
    }
    #[inline(always)]
    fn mul_add(self, a: F8x2, b: F8x2, c: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves FMA is present.
        unsafe {
            F8x2(
                _mm256_fmadd_ps(a.0, b.0, c.0),
                _mm256_fmadd_ps(a.1, b.1, c.1),
            )
        }
    }
    #[inline(always)]
    fn lt(self, a: F8x2, b: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe {
            F8x2(
                _mm256_cmp_ps::<_CMP_LT_OQ>(a.0, b.0),
                _mm256_cmp_ps::<_CMP_LT_OQ>(a.1, b.1),
            )
        }
    }
    #[inline(always)]
    fn gt(self, a: F8x2, b: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe {
            F8x2(
                _mm256_cmp_ps::<_CMP_GT_OQ>(a.0, b.0),
                _mm256_cmp_ps::<_CMP_GT_OQ>(a.1, b.1),
            )
        }
    }
    #[inline(always)]
    fn select(self, m: F8x2, a: F8x2, b: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe {
            F8x2(
                _mm256_blendv_ps(b.0, a.0, m.0),
                _mm256_blendv_ps(b.1, a.1, m.1),
            )
        }
    }
    /// `vmaxps x, acc` returns its second operand unless `x > acc`: exactly `max_keep`.
    #[inline(always)]
    fn max_keep(self, acc: F8x2, x: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_max_ps(x.0, acc.0), _mm256_max_ps(x.1, acc.1)) }
    }
    /// `vminps x, acc` returns its second operand unless `x < acc`: exactly `min_keep`.
    #[inline(always)]
    fn min_keep(self, acc: F8x2, x: F8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_min_ps(x.0, acc.0), _mm256_min_ps(x.1, acc.1)) }
    }

    #[inline(always)]
    fn bits(self, v: F8x2) -> I8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { I8x2(_mm256_castps_si256(v.0), _mm256_castps_si256(v.1)) }
    }
    #[inline(always)]
    fn with_bits(self, v: I8x2) -> F8x2 {
        // SAFETY: `Avx2` proves AVX is present.
        unsafe { F8x2(_mm256_castsi256_ps(v.0), _mm256_castsi256_ps(v.1)) }
    }
    #[inline(always)]
    fn add_i32(self, a: I8x2, b: I8x2) -> I8x2 {
        // SAFETY: `Avx2` proves AVX2 is present.
        unsafe { I8x2(_mm256_add_epi32(a.0, b.0), _mm256_add_epi32(a.1, b.1)) }
    }
    #[inline(always)]
    fn sub_i32(self, a: I8x2, b: I8x2) -> I8x2 {
        // SAFETY: `Avx2` proves AVX2 is present.
        unsafe { I8x2(_mm256_sub_epi32(a.0, b.0), _mm256_sub_epi32(a.1, b.1)) }
    }
    #[inline(always)]
    fn shr1_i32(self, a: I8x2) -> I8x2 {
        // SAFETY: `Avx2` proves AVX2 is present.
        unsafe { I8x2(_mm256_srai_epi32::<1>(a.0), _mm256_srai_epi32::<1>(a.1)) }
    }
    #[inline(always)]
    fn shl23_i32(self, a: I8x2) -> I8x2 {
        // SAFETY: `Avx2` proves AVX2 is present.
        unsafe { I8x2(_mm256_slli_epi32::<23>(a.0), _mm256_slli_epi32::<23>(a.1)) }
    }

    #[inline(always)]
    fn reduce_add(self, v: F8x2) -> f32 {
        // SAFETY: `Avx2` proves AVX is present. Lane i + w is added to lane i, w = 8, 4, 2, 1.
        unsafe {
            let s8 = _mm256_add_ps(v.0, v.1);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2)))
        }
    }
    #[inline(always)]
    fn reduce_add4(self, v: [F8x2; 4]) -> [f32; 4] {
        let [a, b, c, d] = v;
        // SAFETY: `Avx2` proves AVX is present. The same tree as `reduce_add`, on four vectors
        // transposed so that each level is one add: after level 2 the register holds
        // [a4 | b4] and [c4 | d4], after level 3 [a2 c2 | b2 d2], after level 4 [a c . . | b d . .].
        unsafe {
            let ab4 = sum_pairs(self, _mm256_add_ps(a.0, a.1), _mm256_add_ps(b.0, b.1));
            let cd4 = sum_pairs(self, _mm256_add_ps(c.0, c.1), _mm256_add_ps(d.0, d.1));
            let s2 = _mm256_add_ps(
                _mm256_shuffle_ps::<0x44>(ab4, cd4),
                _mm256_shuffle_ps::<0xEE>(ab4, cd4),
            );
            let s1 = _mm256_add_ps(
                _mm256_shuffle_ps::<0x88>(s2, s2),
                _mm256_shuffle_ps::<0xDD>(s2, s2),
            );
            let mut out = [0.0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), s1);
            [out[0], out[4], out[1], out[5]]
        }
    }
    #[inline(always)]
    fn reduce_max(self, v: F8x2) -> f32 {
        // SAFETY: `Avx2` proves AVX is present. `max(upper, lower)` is `keep_max(lower, upper)`.
        unsafe {
            let s8 = _mm256_max_ps(v.1, v.0);
            let s4 = _mm_max_ps(_mm256_extractf128_ps::<1>(s8), _mm256_castps256_ps128(s8));
            let s2 = _mm_max_ps(_mm_movehl_ps(s4, s4), s4);
            _mm_cvtss_f32(_mm_max_ss(_mm_shuffle_ps::<0b01>(s2, s2), s2))
        }
    }
}
