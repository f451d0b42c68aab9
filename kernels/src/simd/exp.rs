//! The one `exp` every SIMD backend evaluates: the same constants and the same sequence of exact
//! lane operations on every instruction set, so it gives the same bits everywhere.
//!
//! `e^x = 2^n · e^r` with `n = round(x·log2(e))` and `r = x − n·ln 2` (Cody–Waite: `ln 2` split in
//! a high part with 16 significant bits, so `n·LN2_HI` is exact, and a low part). `e^r` for
//! `|r| ≤ ln(2)/2` is `1 + r + r²·P(r)` with the degree-5 minimax `P` of SLEEF's `expf_u10`, all by
//! fused multiply-adds. `2^n` is built from exponent bits in two halves `2^⌊n/2⌋ · 2^(n−⌊n/2⌋)`,
//! so results that overflow become `+inf` and results in the subnormal range are rounded once
//! (AVX-512: one `vscalefps`, the same single rounding).
//!
//! Accuracy: within 2 ulp of the exact `e^x` over the whole `f32` range (the tests measure about 1),
//! `exp(−inf) = 0`, `exp(NaN) = NaN`, `x > 88.73 → +inf`, `x < −103.98 → 0`.

use super::lanes::Lanes;

/// Inputs below this give 0 (`e^-104 < 2^-150`, half the smallest subnormal); clamping keeps
/// `n` in the range where both halves of `2^n` are normal numbers.
const LOW: f32 = -104.0;
/// Inputs above this give `+inf` (`e^89 > f32::MAX`).
const HIGH: f32 = 89.0;
const LOG2_E: f32 = core::f32::consts::LOG2_E;
/// `1.5 · 2^23`: adding it rounds a value below `2^22` in magnitude to an integer, which then
/// sits in the low mantissa bits (round to nearest even, the same on every ISA).
const ROUND_MAGIC: f32 = 12_582_912.0;
const ROUND_MAGIC_BITS: i32 = 0x4B40_0000;
/// `ln 2` to 16 significant bits, so `n · LN2_HI` is exact for `|n| < 256`.
const LN2_HI: f32 = 0.693_145_75; // 0x3F31_7200
/// `ln 2 − LN2_HI`.
const LN2_LO: f32 = 1.428_606_8e-6;
/// SLEEF `expf_u10`'s minimax coefficients for `(e^r − 1 − r) / r²`, highest degree first.
const P: [f32; 6] = [
    1.985_276_2e-4,
    1.393_043_6e-3,
    8.333_361e-3,
    4.166_648_5e-2,
    1.666_666_7e-1,
    0.5,
];

/// `e^x` per lane (see the module docs), with the clamp at `HIGH` only with `HIGH_CLAMP`:
/// leaving it out gives the same bits for lanes that are `<= 0` or NaN (softmax's `s − max`),
/// with one operation and its latency less on the softmax's critical path.
#[inline(always)]
pub(crate) fn exp_clamped<L: Lanes, const HIGH_CLAMP: bool>(l: L, x: L::F) -> L::F {
    // Clamp: `low` where `x < low`, `high` where `x > high`, a NaN lane kept (it fails both
    // comparisons); one `vmaxps`/`vminps` each where the backend has them.
    let x = l.max_keep(x, l.splat(LOW));
    let x = if HIGH_CLAMP {
        l.min_keep(x, l.splat(HIGH))
    } else {
        x
    };

    let t = l.mul_add(x, l.splat(LOG2_E), l.splat(ROUND_MAGIC));
    let n = l.sub(t, l.splat(ROUND_MAGIC));
    let r = l.mul_add(n, l.splat(-LN2_HI), x);
    let r = l.mul_add(n, l.splat(-LN2_LO), r);

    let mut p = l.splat(P[0]);
    for c in &P[1..] {
        p = l.mul_add(p, r, l.splat(*c));
    }
    let p = l.mul_add(l.mul(r, r), p, r);
    let p = l.add(p, l.splat(1.0));

    if L::SCALE_POW2 {
        // One instruction for `p · 2^n` rounded once: the same bits as the two halves below
        // (`p · 2^n1` is exact, a normal number, so the second product is the one rounding).
        return l.scale_pow2(p, n);
    }
    // n in -150..=128: each half in -75..=64, so 2^half is a normal f32.
    let n = l.sub_i32(l.bits(t), l.splat_i32(ROUND_MAGIC_BITS));
    let n1 = l.shr1_i32(n);
    let n2 = l.sub_i32(n, n1);
    let bias = l.splat_i32(127);
    let s1 = l.with_bits(l.shl23_i32(l.add_i32(n1, bias)));
    let s2 = l.with_bits(l.shl23_i32(l.add_i32(n2, bias)));
    l.mul(l.mul(p, s1), s2)
}
