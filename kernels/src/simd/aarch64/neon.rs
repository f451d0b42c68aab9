//! NEON: the 16 virtual lanes as four 128-bit registers (lanes `0..4`, `4..8`, `8..12`, `12..16`).

use crate::simd::isa::isa_with_features;
use crate::simd::lanes::{Lanes, LANES};
use core::arch::aarch64::*;
use half::bf16;

/// Capability token: this CPU runs NEON (Advanced SIMD) instructions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon(());

impl Neon {
    /// The token, if NEON is enabled at compile time (the default on aarch64) or (with `std`)
    /// detected at run time.
    #[inline]
    pub(crate) fn new() -> Option<Self> {
        if cfg!(target_feature = "neon") {
            return Some(Neon(()));
        }
        #[cfg(feature = "std")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return Some(Neon(()));
            }
        }
        None
    }
}

isa_with_features!(Neon, "neon");

/// Sixteen `f32` in four registers.
#[derive(Clone, Copy)]
pub(crate) struct F4x4([float32x4_t; 4]);

/// Sixteen `i32` in four registers.
#[derive(Clone, Copy)]
pub(crate) struct I4x4([int32x4_t; 4]);

/// Sixteen lane flags in four registers.
#[derive(Clone, Copy)]
pub(crate) struct M4x4([uint32x4_t; 4]);

/// Applies `f` to the four registers of `a`.
#[inline(always)]
fn map4<T: Copy, R>(a: [T; 4], f: impl Fn(T) -> R) -> [R; 4] {
    [f(a[0]), f(a[1]), f(a[2]), f(a[3])]
}

/// Applies `f` to the four registers of `a` and `b`.
#[inline(always)]
fn zip4<T: Copy, U: Copy, R>(a: [T; 4], b: [U; 4], f: impl Fn(T, U) -> R) -> [R; 4] {
    [f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2]), f(a[3], b[3])]
}

impl Lanes for Neon {
    type F = F4x4;
    type I = I4x4;
    type M = M4x4;

    #[inline(always)]
    fn splat(self, x: f32) -> F4x4 {
        // SAFETY: `Neon` proves NEON is present.
        F4x4([unsafe { vdupq_n_f32(x) }; 4])
    }
    #[inline(always)]
    fn splat_i32(self, x: i32) -> I4x4 {
        // SAFETY: `Neon` proves NEON is present.
        I4x4([unsafe { vdupq_n_s32(x) }; 4])
    }
    #[inline(always)]
    fn load(self, x: &[f32; LANES]) -> F4x4 {
        let p = x.as_ptr();
        // SAFETY: NEON is present; `x` holds 16 readable `f32`, every `p + 4k` is inside it.
        unsafe {
            F4x4([
                vld1q_f32(p),
                vld1q_f32(p.add(4)),
                vld1q_f32(p.add(8)),
                vld1q_f32(p.add(12)),
            ])
        }
    }
    #[inline(always)]
    fn load_partial(self, x: &[f32]) -> F4x4 {
        let mut buf = [0.0; LANES];
        for (b, &v) in buf.iter_mut().zip(x) {
            *b = v;
        }
        self.load(&buf)
    }
    #[inline(always)]
    fn load_bf16(self, x: &[bf16; LANES]) -> F4x4 {
        let p = x.as_ptr().cast::<u16>();
        // SAFETY: NEON is present; `x` is 16 readable `u16` (`bf16` is a transparent `u16`);
        // widening a bf16 is shifting its bits into the high half of an f32.
        unsafe {
            let (lo, hi) = (vld1q_u16(p), vld1q_u16(p.add(8)));
            F4x4([
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(lo))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(lo)),
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(hi))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(hi)),
            ])
        }
    }
    #[inline(always)]
    fn load_bf16_partial(self, x: &[bf16]) -> F4x4 {
        let mut buf = [bf16::ZERO; LANES];
        for (b, &v) in buf.iter_mut().zip(x) {
            *b = v;
        }
        self.load_bf16(&buf)
    }
    #[inline(always)]
    fn store(self, v: F4x4, out: &mut [f32; LANES]) {
        let p = out.as_mut_ptr();
        // SAFETY: NEON is present; `out` holds 16 writable `f32`, every `p + 4k` is inside it.
        unsafe {
            vst1q_f32(p, v.0[0]);
            vst1q_f32(p.add(4), v.0[1]);
            vst1q_f32(p.add(8), v.0[2]);
            vst1q_f32(p.add(12), v.0[3]);
        }
    }
    #[inline(always)]
    fn store_partial(self, v: F4x4, out: &mut [f32]) {
        let mut buf = [0.0; LANES];
        self.store(v, &mut buf);
        for (o, b) in out.iter_mut().zip(buf) {
            *o = b;
        }
    }

    #[inline(always)]
    fn add(self, a: F4x4, b: F4x4) -> F4x4 {
        // SAFETY: `Neon` proves NEON is present.
        F4x4(zip4(a.0, b.0, |x, y| unsafe { vaddq_f32(x, y) }))
    }
    #[inline(always)]
    fn sub(self, a: F4x4, b: F4x4) -> F4x4 {
        // SAFETY: `Neon` proves NEON is present.
        F4x4(zip4(a.0, b.0, |x, y| unsafe { vsubq_f32(x, y) }))
    }
    #[inline(always)]
    fn mul(self, a: F4x4, b: F4x4) -> F4x4 {
        // SAFETY: `Neon` proves NEON is present.
        F4x4(zip4(a.0, b.0, |x, y| unsafe { vmulq_f32(x, y) }))
    }
    #[inline(always)]
    fn div(self, a: F4x4, b: F4x4) -> F4x4 {
        // SAFETY: `Neon` proves NEON is present.
        F4x4(zip4(a.0, b.0, |x, y| unsafe { vdivq_f32(x, y) }))
    }
    #[inline(always)]
    fn sqrt(self, a: F4x4) -> F4x4 {
        // SAFETY: `Neon` proves NEON is present.
        F4x4(map4(a.0, |x| unsafe { vsqrtq_f32(x) }))
    }
    #[inline(always)]
    fn mul_add(self, a: F4x4, b: F4x4, c: F4x4) -> F4x4 {
        let ab = zip4(a.0, b.0, |x, y| (x, y));
        // SAFETY: `Neon` proves NEON is present. `vfmaq_f32(c, a, b)` is `c + a·b`, fused.
        F4x4(zip4(ab, c.0, |(x, y), z| unsafe { vfmaq_f32(z, x, y) }))
    }
    #[inline(always)]
    fn lt(self, a: F4x4, b: F4x4) -> M4x4 {
        // SAFETY: `Neon` proves NEON is present.
        M4x4(zip4(a.0, b.0, |x, y| unsafe { vcltq_f32(x, y) }))
    }
    #[inline(always)]
    fn gt(self, a: F4x4, b: F4x4) -> M4x4 {
        // SAFETY: `Neon` proves NEON is present.
        M4x4(zip4(a.0, b.0, |x, y| unsafe { vcgtq_f32(x, y) }))
    }
    #[inline(always)]
    fn select(self, m: M4x4, a: F4x4, b: F4x4) -> F4x4 {
        let ab = zip4(a.0, b.0, |x, y| (x, y));
        // SAFETY: `Neon` proves NEON is present.
        F4x4(zip4(m.0, ab, |m, (x, y)| unsafe { vbslq_f32(m, x, y) }))
    }

    #[inline(always)]
    fn bits(self, v: F4x4) -> I4x4 {
        // SAFETY: `Neon` proves NEON is present.
        I4x4(map4(v.0, |x| unsafe { vreinterpretq_s32_f32(x) }))
    }
    #[inline(always)]
    fn with_bits(self, v: I4x4) -> F4x4 {
        // SAFETY: `Neon` proves NEON is present.
        F4x4(map4(v.0, |x| unsafe { vreinterpretq_f32_s32(x) }))
    }
    #[inline(always)]
    fn add_i32(self, a: I4x4, b: I4x4) -> I4x4 {
        // SAFETY: `Neon` proves NEON is present.
        I4x4(zip4(a.0, b.0, |x, y| unsafe { vaddq_s32(x, y) }))
    }
    #[inline(always)]
    fn sub_i32(self, a: I4x4, b: I4x4) -> I4x4 {
        // SAFETY: `Neon` proves NEON is present.
        I4x4(zip4(a.0, b.0, |x, y| unsafe { vsubq_s32(x, y) }))
    }
    #[inline(always)]
    fn shr1_i32(self, a: I4x4) -> I4x4 {
        // SAFETY: `Neon` proves NEON is present.
        I4x4(map4(a.0, |x| unsafe { vshrq_n_s32::<1>(x) }))
    }
    #[inline(always)]
    fn shl23_i32(self, a: I4x4) -> I4x4 {
        // SAFETY: `Neon` proves NEON is present.
        I4x4(map4(a.0, |x| unsafe { vshlq_n_s32::<23>(x) }))
    }

    #[inline(always)]
    fn reduce_add(self, v: F4x4) -> f32 {
        let [r0, r1, r2, r3] = v.0;
        // SAFETY: `Neon` proves NEON is present. Lane i + w is added to lane i, w = 8, 4, 2, 1:
        // registers 0+2 and 1+3, then their sum, then the halves, then the two lanes.
        unsafe {
            let s4 = vaddq_f32(vaddq_f32(r0, r2), vaddq_f32(r1, r3));
            let s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
            vget_lane_f32::<0>(s2) + vget_lane_f32::<1>(s2)
        }
    }
}
