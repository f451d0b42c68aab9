//! `core::simd` (nightly, feature `nightly`): the 16 virtual lanes are one `f32x16`, lowered by the
//! compiler to whatever the target has.
//!
//! `core::simd` has no fused multiply-add without `std` (it lives in `std::simd::StdFloat`), and
//! the `std` feature of this crate only switches on CPU detection; so `mul_add` is
//! [`fused_mul_add`] per lane: correctly rounded in portable `f64` arithmetic, hence bit-equal to
//! the hardware FMA of the other backends, but several times slower.

use super::isa::{Isa, LaneJob};
use super::lanes::{fused_mul_add, Lanes, LANES};
use core::simd::prelude::*;
use half::bf16;

/// Capability token: `core::simd` runs on every target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable(());

impl Portable {
    /// The token (always available when the crate is built with `nightly`).
    #[inline]
    pub(crate) fn new() -> Option<Self> {
        Some(Portable(()))
    }
}

impl Isa for Portable {
    type Plain = Self;
    #[inline(always)]
    fn plain(self) -> Self {
        self
    }
    #[inline(always)]
    fn enter<J: LaneJob>(self, job: J) -> J::Output {
        job.run(self)
    }
}

impl Lanes for Portable {
    type F = f32x16;
    type I = i32x16;
    type M = mask32x16;

    #[inline(always)]
    fn splat(self, x: f32) -> f32x16 {
        f32x16::splat(x)
    }
    #[inline(always)]
    fn splat_i32(self, x: i32) -> i32x16 {
        i32x16::splat(x)
    }
    #[inline(always)]
    fn load(self, x: &[f32; LANES]) -> f32x16 {
        f32x16::from_array(*x)
    }
    #[inline(always)]
    fn load_partial(self, x: &[f32]) -> f32x16 {
        f32x16::load_or_default(x)
    }
    #[inline(always)]
    fn load_bf16(self, x: &[bf16; LANES]) -> f32x16 {
        let mut raw = [0u16; LANES];
        for (r, b) in raw.iter_mut().zip(x) {
            *r = b.to_bits();
        }
        let bits = u16x16::from_array(raw).cast::<u32>() << 16;
        f32x16::from_bits(bits)
    }
    #[inline(always)]
    fn load_bf16_partial(self, x: &[bf16]) -> f32x16 {
        let mut buf = [bf16::ZERO; LANES];
        for (b, &v) in buf.iter_mut().zip(x) {
            *b = v;
        }
        self.load_bf16(&buf)
    }
    #[inline(always)]
    fn store(self, v: f32x16, out: &mut [f32; LANES]) {
        *out = v.to_array();
    }
    #[inline(always)]
    fn store_partial(self, v: f32x16, out: &mut [f32]) {
        for (o, x) in out.iter_mut().zip(v.to_array()) {
            *o = x;
        }
    }

    #[inline(always)]
    fn add(self, a: f32x16, b: f32x16) -> f32x16 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32x16, b: f32x16) -> f32x16 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32x16, b: f32x16) -> f32x16 {
        a * b
    }
    #[inline(always)]
    fn div(self, a: f32x16, b: f32x16) -> f32x16 {
        a / b
    }
    #[inline(always)]
    fn sqrt(self, a: f32x16) -> f32x16 {
        // `StdFloat::sqrt` needs std; libm's square root is correctly rounded too.
        f32x16::from_array(a.to_array().map(libm::sqrtf))
    }
    #[inline(always)]
    fn mul_add(self, a: f32x16, b: f32x16, c: f32x16) -> f32x16 {
        let mut out = c.to_array();
        for ((o, x), y) in out.iter_mut().zip(a.to_array()).zip(b.to_array()) {
            *o = fused_mul_add(x, y, *o);
        }
        f32x16::from_array(out)
    }
    #[inline(always)]
    fn lt(self, a: f32x16, b: f32x16) -> mask32x16 {
        a.simd_lt(b)
    }
    #[inline(always)]
    fn gt(self, a: f32x16, b: f32x16) -> mask32x16 {
        a.simd_gt(b)
    }
    #[inline(always)]
    fn select(self, m: mask32x16, a: f32x16, b: f32x16) -> f32x16 {
        m.select(a, b)
    }

    #[inline(always)]
    fn bits(self, v: f32x16) -> i32x16 {
        v.to_bits().cast::<i32>()
    }
    #[inline(always)]
    fn with_bits(self, v: i32x16) -> f32x16 {
        f32x16::from_bits(v.cast::<u32>())
    }
    #[inline(always)]
    fn add_i32(self, a: i32x16, b: i32x16) -> i32x16 {
        a + b
    }
    #[inline(always)]
    fn sub_i32(self, a: i32x16, b: i32x16) -> i32x16 {
        a - b
    }
    #[inline(always)]
    fn shr1_i32(self, a: i32x16) -> i32x16 {
        a >> 1
    }
    #[inline(always)]
    fn shl23_i32(self, a: i32x16) -> i32x16 {
        a << 23
    }
}
