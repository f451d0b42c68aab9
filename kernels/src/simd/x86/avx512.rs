//! AVX-512F: the 16 virtual lanes are one 512-bit register.

use super::bf16_pairs::Bf16 as Bf16Proof;
use crate::simd::isa::isa_with_features;
use crate::simd::lanes::{reduce_group, store_pairs_ieee, Columns, Lanes, LANES};
use core::arch::x86_64::*;
use half::bf16;

/// Capability token: this CPU runs AVX-512F instructions (and AVX2, FMA and F16C, which the
/// compiler may use wherever it enables `avx512f`). `BF16`: it also runs AVX-512BW and
/// AVX512_BF16 ([`Avx512Bf16`](super::Avx512Bf16)), whose `vdpbf16ps` computes bf16 scores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512<const BF16: bool = false>(pub(super) ());

impl Avx512 {
    /// The token, if AVX-512F is enabled at compile time or (with `std`) detected at run time.
    #[inline]
    pub(crate) fn new() -> Option<Self> {
        if cfg!(target_feature = "avx512f") {
            return Some(Avx512(()));
        }
        #[cfg(feature = "std")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                return Some(Avx512(()));
            }
        }
        None
    }
}

isa_with_features!(Avx512, "avx512f");

/// The mask of lanes `0..min(n, 16)`.
#[inline(always)]
fn prefix_mask(n: usize) -> __mmask16 {
    ((1u32 << n.min(LANES)) - 1) as __mmask16
}

impl<const BF16: bool> Lanes for Avx512<BF16> {
    type F = __m512;
    type I = __m512i;
    type M = __mmask16;
    const WIDE_KEY_GROUPS: bool = true;
    const BF16_DOTS: bool = BF16;
    const SCALE_POW2: bool = true;

    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn splat_i32(self, x: i32) -> __m512i {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_set1_epi32(x) }
    }
    #[inline(always)]
    fn load(self, x: &[f32; LANES]) -> __m512 {
        // SAFETY: AVX-512F is present; `x` holds 16 readable `f32`.
        unsafe { _mm512_loadu_ps(x.as_ptr()) }
    }
    #[inline(always)]
    fn load_partial(self, x: &[f32]) -> __m512 {
        // SAFETY: AVX-512F is present; the masked load reads only lanes `< x.len()`, inside `x`,
        // and suppresses faults on the others.
        unsafe { _mm512_maskz_loadu_ps(prefix_mask(x.len()), x.as_ptr()) }
    }
    #[inline(always)]
    fn load_bf16(self, x: &[bf16; LANES]) -> __m512 {
        // SAFETY: AVX-512F is present; `x` is 32 readable bytes (`bf16` is a transparent `u16`);
        // widening a bf16 is placing its bits in the high half of an f32.
        unsafe {
            let h = _mm256_loadu_si256(x.as_ptr().cast::<__m256i>());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    fn load_bf16_partial(self, x: &[bf16]) -> __m512 {
        let mut buf = [bf16::ZERO; LANES];
        for (b, &v) in buf.iter_mut().zip(x) {
            *b = v;
        }
        self.load_bf16(&buf)
    }
    #[inline(always)]
    fn store(self, v: __m512, out: &mut [f32; LANES]) {
        // SAFETY: AVX-512F is present; `out` holds 16 writable `f32`.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn store_partial(self, v: __m512, out: &mut [f32]) {
        // SAFETY: AVX-512F is present; the masked store writes only lanes `< out.len()`.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr(), prefix_mask(out.len()), v) }
    }

    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn sqrt(self, a: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_sqrt_ps(a) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn lt(self, a: __m512, b: __m512) -> __mmask16 {
        compare::lt(Avx512(()), a, b)
    }
    #[inline(always)]
    fn gt(self, a: __m512, b: __m512) -> __mmask16 {
        compare::lt(Avx512(()), b, a)
    }
    #[inline(always)]
    fn select(self, m: __mmask16, a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present. `mask_blend(m, b, a)` takes `a` where set.
        unsafe { _mm512_mask_blend_ps(m, b, a) }
    }
    /// `vmaxps x, acc` returns its second operand unless `x > acc`: exactly `max_keep` (the other
    /// operand order would let a NaN `x` through).
    #[inline(always)]
    fn max_keep(self, acc: __m512, x: __m512) -> __m512 {
        compare::max(Avx512(()), x, acc)
    }
    /// `vminps x, acc` returns its second operand unless `x < acc`: exactly `min_keep`.
    #[inline(always)]
    fn min_keep(self, acc: __m512, x: __m512) -> __m512 {
        compare::min(Avx512(()), x, acc)
    }

    #[inline(always)]
    fn bf16_scores(self, q: &[bf16], keys: &[bf16], scale: f32, out: &mut [f32]) -> bool {
        if BF16 {
            // `Avx512<true>` tokens come only from `Avx512Bf16::new`: this one is such a token.
            bf16_scores(Avx512::<true>(()), q, keys, scale, out);
        }
        BF16
    }
    #[inline(always)]
    fn bf16_pair_dot(self, acc: __m512, q: f32, k: __m512) -> __m512 {
        if !BF16 {
            return acc;
        }
        // SAFETY: `Avx512<true>` tokens come only from `Avx512Bf16::new` (AVX-512F and
        // AVX512_BF16 present); `__m512bh` is 32 bf16 bit patterns in the 64 bytes of a `__m512`.
        unsafe {
            let q =
                core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(q.to_bits() as i32));
            let k = core::mem::transmute::<__m512, __m512bh>(k);
            // The broadcast pair as the last operand, where the instruction can read it from
            // memory with an embedded broadcast (`{1to16}`): the products are exact and the
            // same whichever operand holds which factor.
            _mm512_dpbf16_ps(acc, k, q)
        }
    }

    #[inline(always)]
    fn scale_pow2(self, p: __m512, n: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_scalef_ps(p, n) }
    }

    #[inline(always)]
    fn bits(self, v: __m512) -> __m512i {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_castps_si512(v) }
    }
    #[inline(always)]
    fn with_bits(self, v: __m512i) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_castsi512_ps(v) }
    }
    #[inline(always)]
    fn add_i32(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    fn sub_i32(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_sub_epi32(a, b) }
    }
    #[inline(always)]
    fn shr1_i32(self, a: __m512i) -> __m512i {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_srai_epi32::<1>(a) }
    }
    #[inline(always)]
    fn shl23_i32(self, a: __m512i) -> __m512i {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_slli_epi32::<23>(a) }
    }

    #[inline(always)]
    fn reduce_add(self, v: __m512) -> f32 {
        // SAFETY: `Avx512` proves AVX-512F is present. Lane i + w is added to lane i,
        // w = 8, 4, 2, 1 (the upper 256 bits are extracted as f64x4, an AVX-512F instruction).
        unsafe {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2)))
        }
    }
    #[inline(always)]
    fn reduce_add4(self, v: [__m512; 4]) -> [f32; 4] {
        let [a, b, c, d] = v;
        // SAFETY: `Avx512` proves AVX-512F is present. The tree of `reduce_add` on four vectors
        // transposed by 128-bit blocks: level 1 gives [a8 | b8] and [c8 | d8], level 2
        // [a4 | b4 | c4 | d4], levels 3 and 4 work inside each block; the sums end in lanes
        // 0, 4, 8, 12.
        unsafe {
            let ab8 = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(a, b),
                _mm512_shuffle_f32x4::<0xEE>(a, b),
            );
            let cd8 = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(c, d),
                _mm512_shuffle_f32x4::<0xEE>(c, d),
            );
            let s4 = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(ab8, cd8),
                _mm512_shuffle_f32x4::<0xDD>(ab8, cd8),
            );
            let s2 = _mm512_add_ps(s4, _mm512_permute_ps::<0x4E>(s4));
            let s1 = _mm512_add_ps(s2, _mm512_permute_ps::<0xB1>(s2));
            let mut out = [0.0f32; LANES];
            _mm512_storeu_ps(out.as_mut_ptr(), s1);
            [out[0], out[4], out[8], out[12]]
        }
    }

    #[inline(always)]
    fn bf16_tile_accumulate(
        self,
        acc: &mut [f32],
        d: usize,
        p: &[f32],
        packed: bool,
        ld: usize,
        count: impl Fn(usize) -> usize,
        keys: usize,
        values: &[bf16],
        work: &mut [f32],
    ) -> bool {
        if !BF16 {
            return false;
        }
        // SAFETY: `Avx512<true>` tokens come only from `Avx512Bf16::new`, which checked
        // AVX-512F, AVX-512BW and AVX512_BF16: this one is such a token.
        let t = unsafe { Bf16Proof::new_unchecked() };
        let p = if packed {
            super::bf16_pairs::Probabilities::Packed(p)
        } else {
            super::bf16_pairs::Probabilities::Unrounded(p)
        };
        super::bf16_pv::tile_accumulate(t, acc, d, p, ld, count, keys, values, work)
    }

    #[inline(always)]
    fn bf16_store_pairs(self, lo: __m512, hi: __m512, out: &mut [f32; LANES]) {
        if !BF16 {
            // Never called (not `BF16_DOTS`): the default's IEEE rounding.
            return store_pairs_ieee(self, lo, hi, out);
        }
        // SAFETY: as in `bf16_tile_accumulate`: this is an `Avx512<true>` token.
        let t = unsafe { Bf16Proof::new_unchecked() };
        super::bf16_pairs::store_pairs(t, lo, hi, out)
    }
}

/// bf16 elements per `vdpbf16ps` operand.
const PAIR_LANES: usize = 32;

/// Keys whose dot products run together (independent accumulation chains).
const KEYS_PER_GROUP: usize = 8;

/// Sixteen f32 lanes holding 32 bf16 elements, as `vdpbf16ps` reads them.
#[inline(always)]
fn load_pairs(_: Avx512<true>, x: &[bf16; PAIR_LANES]) -> __m512bh {
    // SAFETY: AVX-512F is present; `x` is 64 readable bytes (`bf16` is a transparent `u16`), and
    // `__m512bh` is 32 bf16 bit patterns in the same 64 bytes as `__m512i`.
    unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(x.as_ptr().cast())) }
}

/// [`load_pairs`] of fewer than 32 elements, zero-padded.
#[inline(always)]
fn load_pairs_partial(t: Avx512<true>, x: &[bf16]) -> __m512bh {
    let mut buf = [bf16::ZERO; PAIR_LANES];
    for (b, &v) in buf.iter_mut().zip(x) {
        *b = v;
    }
    load_pairs(t, &buf)
}

/// The 16 lane sums of `q · key` by `vdpbf16ps`, for each of the `G` keys of length
/// `d = q.len()` that follow one another in `keys`.
#[inline(always)]
fn dots<const G: usize>(t: Avx512<true>, q: &[bf16], keys: &[bf16]) -> [__m512; G] {
    let d = q.len();
    // SAFETY: `Avx512<true>` proves AVX-512F is present.
    let mut acc = [unsafe { _mm512_setzero_ps() }; G];
    let (q_chunks, q_tail) = q.as_chunks::<PAIR_LANES>();
    let rows: [&[bf16]; G] = core::array::from_fn(|r| keys.get(r * d..(r + 1) * d).unwrap_or(&[]));
    // Every key's pairs beside the query's, checked once (never `None`: `keys` holds `G` rows).
    if let (Some(columns), Some(q_column)) = (
        Columns::<bf16, G, PAIR_LANES>::new(rows, q_chunks.len()),
        Columns::<bf16, 1, PAIR_LANES>::new([q], q_chunks.len()),
    ) {
        for (kcs, [qc]) in columns.zip(q_column) {
            let qv = load_pairs(t, qc);
            for (a, kc) in acc.iter_mut().zip(kcs) {
                // SAFETY: `Avx512<true>` proves AVX512_BF16 is present.
                *a = unsafe { _mm512_dpbf16_ps(*a, qv, load_pairs(t, kc)) };
            }
        }
    }
    if !q_tail.is_empty() {
        let qv = load_pairs_partial(t, q_tail);
        let tail_start = q_chunks.len() * PAIR_LANES;
        for (a, row) in acc.iter_mut().zip(rows) {
            if let Some(kt) = row.get(tail_start..) {
                // SAFETY: `Avx512<true>` proves AVX512_BF16 is present.
                *a = unsafe { _mm512_dpbf16_ps(*a, qv, load_pairs_partial(t, kt)) };
            }
        }
    }
    acc
}

/// Attention scores of bf16 rows (`Lanes::bf16_scores` of `Avx512Bf16`, i.e. `Avx512<true>`): the canonical
/// grouping of keys, `vdpbf16ps` for the dot products and the canonical lane reduction.
#[inline(always)]
fn bf16_scores(t: Avx512<true>, q: &[bf16], keys: &[bf16], scale: f32, out: &mut [f32]) {
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

/// The AVX-512 instructions Miri cannot interpret (`vcmpps` into a mask, `vmaxps`, `vminps`), with
/// their documented semantics. Everything else in this file runs under Miri as compiled.
#[cfg(not(miri))]
mod compare {
    use super::Avx512;
    use core::arch::x86_64::*;

    /// `a < b` per lane, ordered, quiet.
    #[inline(always)]
    pub(super) fn lt(_: Avx512, a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
    }

    /// `a > b ? a : b` per lane (`vmaxps`: the second operand on NaN or equal zeros).
    #[inline(always)]
    pub(super) fn max(_: Avx512, a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_max_ps(a, b) }
    }

    /// `a < b ? a : b` per lane (`vminps`: the second operand on NaN or equal zeros).
    #[inline(always)]
    pub(super) fn min(_: Avx512, a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Avx512` proves AVX-512F is present.
        unsafe { _mm512_min_ps(a, b) }
    }
}

/// Miri's stand-ins for `compare`: the same semantics by lane arithmetic Miri understands.
#[cfg(miri)]
mod compare {
    use super::Avx512;
    use crate::simd::lanes::LANES;
    use core::arch::x86_64::*;

    fn lanes(v: __m512) -> [f32; LANES] {
        let mut out = [0.0; LANES];
        // SAFETY: `out` holds 16 writable `f32`; Miri interprets the instruction.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    pub(super) fn lt(_: Avx512, a: __m512, b: __m512) -> __mmask16 {
        let (a, b) = (lanes(a), lanes(b));
        (0..LANES).fold(0, |m, i| m | (((a[i] < b[i]) as __mmask16) << i))
    }

    pub(super) fn max(t: Avx512, a: __m512, b: __m512) -> __m512 {
        // SAFETY: Miri interprets the instruction.
        unsafe { _mm512_mask_blend_ps(lt(t, b, a), b, a) }
    }

    pub(super) fn min(t: Avx512, a: __m512, b: __m512) -> __m512 {
        // SAFETY: Miri interprets the instruction.
        unsafe { _mm512_mask_blend_ps(lt(t, a, b), b, a) }
    }
}
