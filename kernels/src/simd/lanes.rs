//! Sixteen virtual `f32` lanes: the one vector abstraction every SIMD backend implements.
//!
//! The row primitives (`rows.rs`) and the exp polynomial (`exp.rs`) are written once over
//! [`Lanes`]; each instruction set only says how to add, multiply, load and compare 16 lanes
//! (AVX-512F: one register, AVX2: two, NEON: four, `core::simd`: one `f32x16`). Element `i` of a row
//! always lives in lane `i % 16`, so every backend performs the same IEEE-754 operations on the same
//! operands in the same order and gets the same bits.
//!
//! Every method must be exact binary32 arithmetic with round-to-nearest-even and no flush-to-zero:
//! `mul_add` is one fused rounding, comparisons are ordered (false on NaN), integer operations wrap.

use half::bf16;

/// Lanes of a virtual vector: element `i` of a row goes to lane `i % LANES`.
pub(crate) const LANES: usize = 16;

/// One instruction set seen as 16 `f32` lanes. Implemented by the zero-sized capability tokens,
/// which exist only where the instructions can run: the methods are safe because `self` proves it.
pub(crate) trait Lanes: Copy {
    /// Sixteen `f32`.
    type F: Copy;
    /// Sixteen `i32` (the bit patterns exp builds its powers of two from).
    type I: Copy;
    /// Sixteen lane flags.
    type M: Copy;
    /// Whether the registers hold 8 keys' dot products at once besides `q` (AVX-512's 32 vector
    /// registers), rather than 4. Only the grouping changes, not any key's order of operations.
    const WIDE_KEY_GROUPS: bool = false;
    /// Whether [`Lanes::bf16_scores`] computes bf16 scores by an instruction of its own (so bf16
    /// attention must call it rather than widen the elements).
    const BF16_DOTS: bool = false;

    /// Whether [`Lanes::scale_pow2`] is an instruction of this ISA (so `exp` uses it instead of
    /// building the power of two from exponent bits).
    const SCALE_POW2: bool = false;

    /// Every lane `x`.
    fn splat(self, x: f32) -> Self::F;
    /// Every lane `x`.
    fn splat_i32(self, x: i32) -> Self::I;
    /// Lanes `0..16` from `x`.
    fn load(self, x: &[f32; LANES]) -> Self::F;
    /// Lanes `0..x.len()` from `x` (at most 16 are read), the others `0.0`.
    fn load_partial(self, x: &[f32]) -> Self::F;
    /// Lanes `0..16` from `x`, widened exactly.
    fn load_bf16(self, x: &[bf16; LANES]) -> Self::F;
    /// Lanes `0..x.len()` from `x` widened exactly (at most 16 are read), the others `0.0`.
    fn load_bf16_partial(self, x: &[bf16]) -> Self::F;
    /// Writes lanes `0..16` to `out`.
    fn store(self, v: Self::F, out: &mut [f32; LANES]);
    /// Writes lanes `0..out.len()` to `out` (at most 16).
    fn store_partial(self, v: Self::F, out: &mut [f32]);

    /// `a + b`.
    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a - b`.
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b`.
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a / b`.
    fn div(self, a: Self::F, b: Self::F) -> Self::F;
    /// `sqrt(a)`, correctly rounded (IEEE 754 square root).
    fn sqrt(self, a: Self::F) -> Self::F;
    /// `a * b + c`, rounded once.
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `a < b` (false if either is NaN).
    fn lt(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a > b` (false if either is NaN).
    fn gt(self, a: Self::F, b: Self::F) -> Self::M;
    /// `m ? a : b` per lane.
    fn select(self, m: Self::M, a: Self::F, b: Self::F) -> Self::F;
    /// `x > acc ? x : acc` per lane: a NaN `x` leaves `acc` unchanged, and so does a zero equal
    /// to `acc` whatever its sign. Backends override this with a native instruction only where
    /// that instruction has exactly these semantics.
    #[inline(always)]
    fn max_keep(self, acc: Self::F, x: Self::F) -> Self::F {
        self.select(self.gt(x, acc), x, acc)
    }
    /// `x < acc ? x : acc` per lane: the mirror of [`Lanes::max_keep`] (a NaN `x` leaves
    /// `acc`, and so does a zero equal to it), overridden where one instruction does exactly
    /// this.
    #[inline(always)]
    fn min_keep(self, acc: Self::F, x: Self::F) -> Self::F {
        self.select(self.lt(x, acc), x, acc)
    }

    /// Attention scores of bf16 rows by an instruction of this ISA that multiplies bf16 pairs
    /// (`out[j] = dot(q, key j) * scale`, keys of `q.len()` elements one after another); `false`
    /// where there is none and the caller uses the canonical lane order.
    #[inline(always)]
    fn bf16_scores(self, q: &[bf16], keys: &[bf16], scale: f32, out: &mut [f32]) -> bool {
        let _ = (q, keys, scale, out);
        false
    }

    /// `acc + q·k` by the token's bf16 pair instruction (`vdpbf16ps`): `q` holds the bits of one
    /// bf16 pair (element 0 in the low half), used for every lane, and lane `j` of `k` the bits
    /// of another; each lane adds the pair's two products to `acc` in the instruction's order,
    /// as [`Lanes::bf16_scores`] does for its lane `j`. Flash's bf16 scores micro-kernel calls it
    /// only where [`Lanes::BF16_DOTS`]; tokens without the instruction return `acc`.
    #[inline(always)]
    fn bf16_pair_dot(self, acc: Self::F, q: f32, k: Self::F) -> Self::F {
        let _ = (q, k);
        acc
    }

    /// `p · 2^n` rounded once, for lanes holding integers `n` (AVX-512's `vscalefps`); only called
    /// where [`Lanes::SCALE_POW2`], others return `p`.
    #[inline(always)]
    fn scale_pow2(self, p: Self::F, n: Self::F) -> Self::F {
        let _ = n;
        p
    }

    /// The bits of each lane.
    fn bits(self, v: Self::F) -> Self::I;
    /// Lanes with the given bits.
    fn with_bits(self, v: Self::I) -> Self::F;
    /// `a + b`, wrapping.
    fn add_i32(self, a: Self::I, b: Self::I) -> Self::I;
    /// `a - b`, wrapping.
    fn sub_i32(self, a: Self::I, b: Self::I) -> Self::I;
    /// `a >> 1`, arithmetic.
    fn shr1_i32(self, a: Self::I) -> Self::I;
    /// `a << 23` (into the exponent field of an `f32`).
    fn shl23_i32(self, a: Self::I) -> Self::I;

    /// The sum of the lanes by the canonical tree ([`sum_tree`]).
    #[inline(always)]
    fn reduce_add(self, v: Self::F) -> f32 {
        let mut a = [0.0; LANES];
        self.store(v, &mut a);
        sum_tree(a)
    }
    /// [`Lanes::reduce_add`] of four vectors at once (backends transpose them to share shuffles).
    #[inline(always)]
    fn reduce_add4(self, v: [Self::F; 4]) -> [f32; 4] {
        let mut out = [0.0; 4];
        for (o, x) in out.iter_mut().zip(v) {
            *o = self.reduce_add(x);
        }
        out
    }
    /// The largest lane by the canonical tree ([`max_tree`]).
    #[inline(always)]
    fn reduce_max(self, v: Self::F) -> f32 {
        let mut a = [0.0; LANES];
        self.store(v, &mut a);
        max_tree(a)
    }

    /// Flash's `O += P̂·V` for one tile of `keys` bf16 value rows (`values`, `d` elements each)
    /// by an instruction of this ISA that multiplies bf16 pairs: for each of the `acc.len() / d`
    /// output rows `r`, its first `count(r)` (at most `keys`) probabilities `p[r·ld ..]`, rounded
    /// to bf16 here, times the value rows; or, with `packed`, row `r`'s probabilities already
    /// rounded and packed in pairs at `p[r·ld ..]` by [`Lanes::bf16_store_pairs`] (slot `m` the
    /// pair `(p̂[2m], p̂[2m+1])`, zero past the count up to the end of the 16-slot line). `work`
    /// is 64-byte aligned packing space of at least `rows::tile::tile_work_len` `f32`. `false`
    /// (nothing done) where the token has no such instruction or `work` is too small; the caller
    /// then rounds `P` and uses the canonical order.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
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
        let _ = (acc, d, p, packed, ld, count, keys, values, work);
        false
    }

    /// `lo` then `hi` rounded to bf16 as [`Lanes::bf16_tile_accumulate`] rounds `P`, the 32
    /// results in order in `out`'s 16 words (word `m`: elements `2m` in the low half and `2m + 1`
    /// in the high half). Called only where [`Lanes::BF16_DOTS`] (AVX512_BF16's
    /// `vcvtne2ps2bf16`, which reads a subnormal as zero); the default rounds each lane to
    /// nearest even as IEEE does.
    #[inline(always)]
    fn bf16_store_pairs(self, lo: Self::F, hi: Self::F, out: &mut [f32; LANES]) {
        store_pairs_ieee(self, lo, hi, out)
    }
}

/// The `f32` of work space a pair instruction's [`Lanes::bf16_tile_accumulate`] needs for `rows`
/// rows, `keys` keys and `d` outputs (`None` on overflow): the value tile packed in pairs,
/// `⌈keys/2⌉` pairs of `16⌈d/16⌉` words, and each row's probabilities as bf16 pairs,
/// `16⌈⌈keys/2⌉/16⌉` words a row (a word of two bf16 per `f32`).
pub(crate) const fn bf16_pair_work_len(rows: usize, keys: usize, d: usize) -> Option<usize> {
    const fn lines(n: usize) -> Option<usize> {
        n.div_ceil(LANES).checked_mul(LANES)
    }
    let pairs = keys.div_ceil(2);
    let (Some(stride), Some(p_stride)) = (lines(d), lines(pairs)) else {
        return None;
    };
    let (Some(v), Some(p)) = (pairs.checked_mul(stride), rows.checked_mul(p_stride)) else {
        return None;
    };
    v.checked_add(p)
}

/// The words a row of `count` probabilities packed in bf16 pairs takes
/// ([`Lanes::bf16_tile_accumulate`]'s `packed` rows): its whole lines of 16 words (32 keys).
#[inline(always)]
pub(crate) const fn bf16_packed_len(count: usize) -> usize {
    count.div_ceil(2 * LANES) * LANES
}

/// [`Lanes::bf16_store_pairs`] by IEEE rounding to nearest even, lane by lane.
#[inline(always)]
pub(crate) fn store_pairs_ieee<L: Lanes>(l: L, lo: L::F, hi: L::F, out: &mut [f32; LANES]) {
    let mut x = [0.0; 2 * LANES];
    let (a, b) = x.split_at_mut(LANES);
    if let (Some(a), Some(b)) = (a.first_chunk_mut(), b.first_chunk_mut()) {
        l.store(lo, a);
        l.store(hi, b);
    }
    let bits = |x: f32| u32::from(bf16::from_f32(x).to_bits());
    for (o, pair) in out.iter_mut().zip(x.chunks_exact(2)) {
        if let [e0, e1] = *pair {
            *o = f32::from_bits(bits(e0) | (bits(e1) << 16));
        }
    }
}

/// [`Lanes::reduce_add`] of each of `G` vectors, four at a time.
#[inline(always)]
pub(crate) fn reduce_group<L: Lanes, const G: usize>(l: L, acc: [L::F; G]) -> [f32; G] {
    let mut out = [0.0; G];
    let mut outs = out.chunks_exact_mut(4);
    let mut accs = acc.chunks_exact(4);
    for (o, a) in (&mut outs).zip(&mut accs) {
        if let Ok(a) = <[L::F; 4]>::try_from(a) {
            o.copy_from_slice(&l.reduce_add4(a));
        }
    }
    for (o, a) in outs.into_remainder().iter_mut().zip(accs.remainder()) {
        *o = l.reduce_add(*a);
    }
    out
}

/// The whole chunks of `R` rows side by side, walked together with another slice: for each `c`,
/// chunk `c` of every row, handed out without a bounds check per row (`new` checked every row
/// once). The dense kernel streams a weight row past up to four input rows with it.
#[derive(Clone, Copy)]
pub(crate) struct Columns<'a, T, const R: usize, const N: usize = LANES> {
    rows: [*const T; R],
    chunks: usize,
    _rows: core::marker::PhantomData<&'a [T]>,
}

impl<'a, T, const R: usize, const N: usize> Columns<'a, T, R, N> {
    /// The first `chunks` whole chunks (of `N` elements) of each row; `None` if a row holds fewer.
    #[inline(always)]
    pub(crate) fn new(rows: [&'a [T]; R], chunks: usize) -> Option<Self> {
        if N == 0 || rows.iter().any(|r| r.len() / N < chunks) {
            return None;
        }
        Some(Columns {
            rows: rows.map(<[T]>::as_ptr),
            chunks,
            _rows: core::marker::PhantomData,
        })
    }

    /// Chunk `c` of every row (`None` for `c >= chunks`): one bound check for all `R` rows,
    /// where indexing each row would check each (flash's scores micro-kernel, whose loop body
    /// is `R` broadcasts per loaded key vector).
    #[inline(always)]
    pub(crate) fn get(self, c: usize) -> Option<[&'a [T; N]; R]> {
        if c >= self.chunks {
            return None;
        }
        // SAFETY: `c < chunks` and `new` checked that every row holds at least `chunks` whole
        // chunks, so `p + N c .. p + N c + N` lies inside the row (borrowed for `'a`); `[T; N]`
        // has the alignment of `T`.
        Some(
            self.rows
                .map(|p| unsafe { &*p.add(c * N).cast::<[T; N]>() }),
        )
    }

    /// Chunk `c` of every row of `self` and of `other` together, for `c < min` of their chunk
    /// counts, in order: an iterator with one count for both (not a closure: one the compiler
    /// leaves out of line loses the token's target features).
    #[inline(always)]
    pub(crate) fn zip<'b, U, const Q: usize>(
        self,
        other: Columns<'b, U, Q, N>,
    ) -> ColumnPairs<'a, 'b, T, U, R, Q, N> {
        ColumnPairs {
            left: self.chunks.min(other.chunks),
            a: self.rows,
            b: other.rows,
            _rows: core::marker::PhantomData,
        }
    }
}

/// [`Columns::zip`]: the next chunk of each row of two row sets.
pub(crate) struct ColumnPairs<'a, 'b, T, U, const R: usize, const Q: usize, const N: usize> {
    /// Chunks still to hand out; `a` and `b` point at the next one of each row.
    left: usize,
    a: [*const T; R],
    b: [*const U; Q],
    _rows: core::marker::PhantomData<(&'a [T], &'b [U])>,
}

impl<'a, 'b, T, U, const R: usize, const Q: usize, const N: usize> Iterator
    for ColumnPairs<'a, 'b, T, U, R, Q, N>
{
    type Item = ([&'a [T; N]; R], [&'b [U; N]; Q]);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // SAFETY: `Columns::new` checked that every row holds at least as many whole chunks as
        // its `chunks`, `left` started at no more than that and falls by one per chunk handed
        // out, while each pointer moves on by one chunk: so `p .. p + N` lies inside its row
        // (borrowed for `'a` or `'b`), and `p + N` is at most one past the row's end. `[T; N]`
        // and `[U; N]` have the alignment of `T` and `U`.
        unsafe {
            let item = (
                self.a.map(|p| &*p.cast::<[T; N]>()),
                self.b.map(|p| &*p.cast::<[U; N]>()),
            );
            self.a = self.a.map(|p| p.add(N));
            self.b = self.b.map(|p| p.add(N));
            Some(item)
        }
    }
}

/// The canonical sum of 16 lanes: halve the width four times, lane `i` plus lane `i + w`
/// (`w = 8, 4, 2, 1`), the lower lane always the left operand.
#[inline(always)]
pub(crate) fn sum_tree(mut t: [f32; LANES]) -> f32 {
    halving_tree(&mut t, |a, b| a + b)
}

/// The canonical max of 16 lanes: the tree of [`sum_tree`] with [`keep_max`] for `+`.
#[inline(always)]
pub(crate) fn max_tree(mut t: [f32; LANES]) -> f32 {
    halving_tree(&mut t, keep_max)
}

/// Folds the upper half of `t` into the lower half with `f(lower, upper)` until one lane is left.
#[inline(always)]
fn halving_tree(mut t: &mut [f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    while t.len() > 1 {
        let whole = core::mem::take(&mut t);
        let half = whole.len() / 2;
        let Some((lo, hi)) = whole.split_at_mut_checked(half) else {
            return 0.0;
        };
        for (a, &b) in lo.iter_mut().zip(hi.iter()) {
            *a = f(*a, b);
        }
        t = lo;
    }
    t.first().copied().unwrap_or(0.0)
}

/// `x > acc ? x : acc`: the scalar [`Lanes::max_keep`].
#[inline(always)]
pub(crate) fn keep_max(acc: f32, x: f32) -> f32 {
    if x > acc {
        x
    } else {
        acc
    }
}

/// `a * b + c` rounded once, in portable arithmetic: the product is exact in `f64` (48 bits),
/// the sum is rounded to odd in `f64` (the exact error by two-sum decides the last bit), and
/// rounding that to `f32` is then correct because `f64` carries more than `24 + 2` bits
/// (Boldo and Melquiond, 2008). Used where no fused instruction is at hand (`core::simd` without
/// `std`, and the scalar lane model of the tests).
#[cfg(any(test, feature = "nightly"))]
#[inline(always)]
pub(crate) fn fused_mul_add(a: f32, b: f32, c: f32) -> f32 {
    let (ab, c) = (a as f64 * b as f64, c as f64);
    let s = ab + c;
    if !s.is_finite() || s == 0.0 {
        // Infinities and NaN come out right; a zero sum of two f64 is exact (no underflow here).
        return s as f32;
    }
    let back = s - ab;
    let err = (ab - (s - back)) + (c - back);
    let bits = s.to_bits();
    if err == 0.0 || bits & 1 == 1 {
        return s as f32;
    }
    // Inexact with an even last bit: step to the odd neighbour on the side of the exact value.
    let odd = if (err > 0.0) == (s > 0.0) {
        bits + 1
    } else {
        bits - 1
    };
    f64::from_bits(odd) as f32
}

/// Storage formats the lanes load and store: `f32` and `bf16`.
pub(crate) trait LaneElement: Copy + 'static {
    /// Rounds one `f32` into the format (nearest, ties to even; NaN stays NaN).
    fn from_f32(x: f32) -> Self;
    /// Lanes `0..16` from `x`, as `f32`.
    fn load<L: Lanes>(l: L, x: &[Self; LANES]) -> L::F;
    /// Lanes `0..x.len()` from `x` as `f32`, the others `0.0`.
    fn load_partial<L: Lanes>(l: L, x: &[Self]) -> L::F;
    /// Rounds lanes `0..16` into `out` (nearest, ties to even; NaN stays NaN).
    fn store<L: Lanes>(l: L, v: L::F, out: &mut [Self; LANES]);
}

impl LaneElement for f32 {
    #[inline(always)]
    fn from_f32(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn load<L: Lanes>(l: L, x: &[f32; LANES]) -> L::F {
        l.load(x)
    }
    #[inline(always)]
    fn load_partial<L: Lanes>(l: L, x: &[f32]) -> L::F {
        l.load_partial(x)
    }
    #[inline(always)]
    fn store<L: Lanes>(l: L, v: L::F, out: &mut [f32; LANES]) {
        l.store(v, out)
    }
}

impl LaneElement for bf16 {
    #[inline(always)]
    fn from_f32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    #[inline(always)]
    fn load<L: Lanes>(l: L, x: &[bf16; LANES]) -> L::F {
        l.load_bf16(x)
    }
    #[inline(always)]
    fn load_partial<L: Lanes>(l: L, x: &[bf16]) -> L::F {
        l.load_bf16_partial(x)
    }
    #[inline(always)]
    fn store<L: Lanes>(l: L, v: L::F, out: &mut [bf16; LANES]) {
        // Once per output row: round with half's own conversion, so the rule (nearest, ties to
        // even, NaN kept NaN, overflow to infinity) is by construction the one `Element` uses.
        let mut wide = [0.0; LANES];
        l.store(v, &mut wide);
        for (o, w) in out.iter_mut().zip(wide) {
            *o = bf16::from_f32(w);
        }
    }
}
