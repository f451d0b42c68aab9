//! The bf16 pairs of flash's `P·V` on AVX512_BF16 (`bf16_pv.rs`): the proof token, the value
//! pairs as `vdpbf16ps` reads them (packed in the work space or interleaved in registers) and
//! the probabilities rounded to bf16 pairs by `vcvtne2ps2bf16`.

use crate::simd::lanes::LANES;
use core::arch::x86_64::*;
use half::bf16;

/// Proof that this CPU runs AVX-512F, AVX-512BW and AVX512_BF16: the `Avx512<true>` token hands
/// one over (a type of this file's own, so that `avx512.rs` calls in here without this file
/// importing it back).
#[derive(Clone, Copy, Debug)]
pub(super) struct Bf16(());

impl Bf16 {
    /// The proof.
    ///
    /// # Safety
    ///
    /// The CPU must run AVX-512F, AVX-512BW and AVX512_BF16 (as an `Avx512<true>` token proves).
    #[inline(always)]
    pub(super) unsafe fn new_unchecked() -> Self {
        Bf16(())
    }
}

/// The mask of lanes `0..min(n, 16)`.
#[inline(always)]
pub(super) fn prefix_mask(n: usize) -> __mmask16 {
    ((1u32 << n.min(LANES)) - 1) as __mmask16
}

/// A tile's probabilities, row `r` at `r·ld`.
#[derive(Clone, Copy)]
pub(super) enum Probabilities<'a> {
    /// Unrounded `f32`, rounded and packed here.
    Unrounded(&'a [f32]),
    /// Already rounded and packed in pairs by [`store_pairs`] (flash's exponential pass does it).
    Packed(&'a [f32]),
}

/// Where the value pairs come from: chunk `c` (outputs `16c ..`) of pair `m` is 16 words
/// `(V[2m][i], V[2m+1][i])`, zero past `d` and for a key `2m+1 ≥ keys`. (A trait with
/// `#[inline(always)]` methods, not a closure: a closure is compiled without the token's target
/// features and, where it is not inlined, leaves each intrinsic in it an out-of-line call.)
pub(super) trait Pairs: Copy {
    /// Chunk `c` of pair `m`.
    fn pair(self, t: Bf16, m: usize, c: usize) -> __m512i;

    /// Chunks `c0 .. c0 + G` of pair `m`.
    #[inline(always)]
    fn group<const G: usize>(self, t: Bf16, m: usize, c0: usize) -> [__m512i; G] {
        // SAFETY: AVX-512F is present.
        let mut v = [unsafe { _mm512_setzero_si512() }; G];
        for (g, v) in v.iter_mut().enumerate() {
            *v = self.pair(t, m, c0 + g);
        }
        v
    }
}

/// The value tile packed by pairs, `stride` words from one pair to the next.
#[derive(Clone, Copy)]
pub(super) struct Packed<'a> {
    pub(super) vp: &'a [f32],
    pub(super) stride: usize,
}

impl Pairs for Packed<'_> {
    #[inline(always)]
    fn pair(self, _: Bf16, m: usize, c: usize) -> __m512i {
        match self
            .vp
            .get(m * self.stride + c * LANES..)
            .and_then(|x| x.first_chunk::<LANES>())
        {
            // SAFETY: AVX-512F is present; `x` is 16 readable `f32`, 64 bytes.
            Some(x) => unsafe { _mm512_loadu_si512(x.as_ptr().cast()) },
            // SAFETY: AVX-512F is present.
            None => unsafe { _mm512_setzero_si512() },
        }
    }

    /// One bounds check for the group's `16·G` words (they are consecutive), not one a chunk.
    #[inline(always)]
    fn group<const G: usize>(self, t: Bf16, m: usize, c0: usize) -> [__m512i; G] {
        let at = m * self.stride + c0 * LANES;
        let Some(words) = self.vp.get(at..at + G * LANES) else {
            return core::array::from_fn(|g| self.pair(t, m, c0 + g));
        };
        // SAFETY: AVX-512F is present.
        let mut v = [unsafe { _mm512_setzero_si512() }; G];
        for (v, x) in v.iter_mut().zip(words.as_chunks::<LANES>().0) {
            // SAFETY: AVX-512F is present; `x` is 16 readable `f32`, 64 bytes.
            *v = unsafe { _mm512_loadu_si512(x.as_ptr().cast()) };
        }
        v
    }
}

/// The value rows themselves (`keys` rows of `d`), interleaved in registers.
#[derive(Clone, Copy)]
pub(super) struct Interleaved<'a> {
    pub(super) values: &'a [bf16],
    pub(super) d: usize,
    pub(super) keys: usize,
}

impl Pairs for Interleaved<'_> {
    #[inline(always)]
    fn pair(self, t: Bf16, m: usize, c: usize) -> __m512i {
        let (k0, k1, d) = (2 * m, 2 * m + 1, self.d);
        let len = d.saturating_sub(c * LANES).min(LANES);
        let lo = widen_chunk(t, self.values, k0 * d + c * LANES, len);
        if k1 >= self.keys {
            return lo;
        }
        let hi = widen_chunk(t, self.values, k1 * d + c * LANES, len);
        // SAFETY: AVX-512F is present.
        unsafe { _mm512_or_si512(lo, _mm512_slli_epi32::<16>(hi)) }
    }
}

/// `values[at .. at + len]` (`len ≤ 16`) as the low halves of 16 words, the rest zero.
#[inline(always)]
fn widen_chunk(_: Bf16, values: &[bf16], at: usize, len: usize) -> __m512i {
    let Some(x) = values.get(at..at + len).filter(|x| !x.is_empty()) else {
        // SAFETY: AVX-512F is present.
        return unsafe { _mm512_setzero_si512() };
    };
    let mask = ((1u64 << len.min(LANES)) - 1) as __mmask32;
    // SAFETY: AVX-512F and AVX-512BW are present (the token); the masked load reads only the
    // `len` elements of `x` (`bf16` is a transparent `u16`).
    unsafe {
        let h = _mm512_maskz_loadu_epi16(mask, x.as_ptr().cast());
        _mm512_cvtepu16_epi32(_mm512_castsi512_si256(h))
    }
}

/// Rounds `src` (one row's probabilities) to bf16 into `dst` as the bf16 sequence
/// `p̂[0], p̂[1], …` (two per `f32` slot: slot `m` is the pair `(p̂[2m], p̂[2m+1])`), zero past
/// `src.len()` up to the end of the last line written: the lines (16 slots) `src` reaches, no
/// further (a causal row's slots past its keys are never read).
#[inline(always)]
pub(super) fn pack_probabilities(t: Bf16, src: &[f32], dst: &mut [f32]) {
    let (lines, _) = dst.as_chunks_mut::<LANES>();
    let (whole, tail) = src.as_chunks::<{ 2 * LANES }>();
    for (out, x) in lines.iter_mut().zip(whole) {
        // SAFETY: AVX-512F is present; `x` is 32 readable `f32`, so both 16-lane loads are in it.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(x.as_ptr().add(LANES)),
            )
        };
        store_pairs(t, lo, hi, out);
    }
    if let (false, Some(out)) = (tail.is_empty(), lines.get_mut(whole.len())) {
        let (lo, hi) = (load_from(t, tail, 0), load_from(t, tail, LANES));
        store_pairs(t, lo, hi, out);
    }
}

/// `lo` then `hi` rounded to bf16, as 32 bf16 in `out`'s 64 bytes.
#[inline(always)]
pub(super) fn store_pairs(_: Bf16, lo: __m512, hi: __m512, out: &mut [f32; LANES]) {
    // SAFETY: `Bf16` proves AVX512_BF16 is present; `cvtne2ps_pbh(a, b)` puts `b` in bf16
    // elements 0..16 and `a` in 16..32; `out` is 64 writable bytes.
    unsafe {
        let h = _mm512_cvtne2ps_pbh(hi, lo);
        let h = core::mem::transmute::<__m512bh, __m512i>(h);
        _mm512_storeu_si512(out.as_mut_ptr().cast(), h);
    }
}

/// `x[from ..]`'s first 16 elements (fewer: zero-padded; none past `x`).
#[inline(always)]
fn load_from(_: Bf16, x: &[f32], from: usize) -> __m512 {
    match x.get(from..).filter(|x| !x.is_empty()) {
        // SAFETY: AVX-512F is present; the masked load reads only lanes `< x.len()`.
        Some(x) => unsafe { _mm512_maskz_loadu_ps(prefix_mask(x.len()), x.as_ptr()) },
        // SAFETY: AVX-512F is present.
        None => unsafe { _mm512_setzero_ps() },
    }
}
