//! The scalar lane token: sixteen lanes as arrays, one IEEE-754 operation per lane.
//!
//! It is the generic backend of every lane kernel and the model the SIMD tokens are tested
//! against: `mul_add` is the correctly rounded fused multiply-add (`libm::fmaf`), `sqrt` the
//! correctly rounded root, so every backend gets the same bits on the same inputs.

use super::isa::{Isa, LaneJob};
use super::lanes::{Lanes, LANES};
use half::bf16;

/// Capability token of plain scalar arithmetic: available everywhere.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scalar;

impl Isa for Scalar {
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

/// `f(a[i], b[i])` in every lane.
#[inline(always)]
fn map2<T: Copy>(mut a: [T; LANES], b: [T; LANES], f: impl Fn(T, T) -> T) -> [T; LANES] {
    // Zipped, not indexed: no bounds check survives even where the loop is not unrolled (the
    // firmware's link-time no-panic proof at opt-level "s").
    a.iter_mut().zip(b).for_each(|(x, y)| *x = f(*x, y));
    a
}

impl Lanes for Scalar {
    type F = [f32; LANES];
    type I = [i32; LANES];
    type M = [bool; LANES];

    #[inline(always)]
    fn splat(self, x: f32) -> Self::F {
        [x; LANES]
    }
    #[inline(always)]
    fn splat_i32(self, x: i32) -> Self::I {
        [x; LANES]
    }
    #[inline(always)]
    fn load(self, x: &[f32; LANES]) -> Self::F {
        *x
    }
    #[inline(always)]
    fn load_partial(self, x: &[f32]) -> Self::F {
        core::array::from_fn(|i| x.get(i).copied().unwrap_or(0.0))
    }
    #[inline(always)]
    fn load_bf16(self, x: &[bf16; LANES]) -> Self::F {
        x.map(bf16::to_f32)
    }
    #[inline(always)]
    fn load_bf16_partial(self, x: &[bf16]) -> Self::F {
        core::array::from_fn(|i| x.get(i).map_or(0.0, |b| b.to_f32()))
    }
    #[inline(always)]
    fn store(self, v: Self::F, out: &mut [f32; LANES]) {
        *out = v;
    }
    #[inline(always)]
    fn store_partial(self, v: Self::F, out: &mut [f32]) {
        for (o, x) in out.iter_mut().zip(v) {
            *o = x;
        }
    }
    #[inline(always)]
    fn add(self, a: Self::F, b: Self::F) -> Self::F {
        map2(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, a: Self::F, b: Self::F) -> Self::F {
        map2(a, b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, a: Self::F, b: Self::F) -> Self::F {
        map2(a, b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, a: Self::F, b: Self::F) -> Self::F {
        map2(a, b, |x, y| x / y)
    }
    #[inline(always)]
    fn sqrt(self, a: Self::F) -> Self::F {
        a.map(sqrt)
    }
    #[inline(always)]
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        let mut out = c;
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            *o = fma(x, y, *o);
        }
        out
    }
    #[inline(always)]
    fn lt(self, a: Self::F, b: Self::F) -> Self::M {
        let mut m = [false; LANES];
        for ((m, x), y) in m.iter_mut().zip(a).zip(b) {
            *m = x < y;
        }
        m
    }
    #[inline(always)]
    fn gt(self, a: Self::F, b: Self::F) -> Self::M {
        let mut m = [false; LANES];
        for ((m, x), y) in m.iter_mut().zip(a).zip(b) {
            *m = x > y;
        }
        m
    }
    #[inline(always)]
    fn select(self, m: Self::M, a: Self::F, b: Self::F) -> Self::F {
        let mut out = b;
        for ((o, x), m) in out.iter_mut().zip(a).zip(m) {
            if m {
                *o = x;
            }
        }
        out
    }
    #[inline(always)]
    fn bits(self, v: Self::F) -> Self::I {
        v.map(|x| x.to_bits() as i32)
    }
    #[inline(always)]
    fn with_bits(self, v: Self::I) -> Self::F {
        v.map(|x| f32::from_bits(x as u32))
    }
    #[inline(always)]
    fn add_i32(self, a: Self::I, b: Self::I) -> Self::I {
        map2(a, b, i32::wrapping_add)
    }
    #[inline(always)]
    fn sub_i32(self, a: Self::I, b: Self::I) -> Self::I {
        map2(a, b, i32::wrapping_sub)
    }
    #[inline(always)]
    fn shr1_i32(self, a: Self::I) -> Self::I {
        a.map(|x| x >> 1)
    }
    #[inline(always)]
    fn shl23_i32(self, a: Self::I) -> Self::I {
        a.map(|x| x.wrapping_shl(23))
    }
}

/// `a·b + c` rounded once. On a GPU (nvptx, the `kernels/ptx` build) the hardware's
/// `fma.rn.f32`, through nightly `core::f32::math`; elsewhere libm's correctly rounded `fmaf`.
/// Both are the IEEE fused multiply-add, so the same bits (docs/gpu.md).
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_arch = "nvptx64")]
    return core::f32::math::mul_add(a, b, c);
    #[cfg(not(target_arch = "nvptx64"))]
    libm::fmaf(a, b, c)
}

/// The correctly rounded square root: `sqrt.rn.f32` on nvptx, libm's `sqrtf` elsewhere.
#[inline(always)]
fn sqrt(x: f32) -> f32 {
    #[cfg(target_arch = "nvptx64")]
    return core::f32::math::sqrt(x);
    #[cfg(not(target_arch = "nvptx64"))]
    libm::sqrtf(x)
}
