//! The one part of the lane backends' row primitives that depends on the element type
//! ([`ScoreElement`]): bf16 scores and `P·V` by a token's own pair instruction where it has one.

use super::ops::{Counts, QTile};
use super::row_kernels::scores;
use super::tile_scores;
use crate::simd::{LaneElement, Lanes};

/// The one score computation that depends on the element type: bf16 rows go to the token's
/// own bf16 dot products where it has them (`Lanes::bf16_scores`).
pub(crate) trait ScoreElement: LaneElement {
    /// Whether this is `bf16` (whose scores some tokens compute by their own instruction).
    const IS_BF16: bool;
    /// A tile's scores by the token's own instruction for this element (`rows::tile_scores`);
    /// `false` where there is none.
    #[allow(clippy::too_many_arguments)]
    fn tile_scores_own<L: Lanes>(
        l: L,
        q: QTile<'_, Self>,
        keys: &[Self],
        scale: f32,
        counts: Counts,
        s: &mut [f32],
        ld: usize,
        work: &mut [f32],
    ) -> bool {
        let _ = (l, q, keys, scale, counts, s, ld, work);
        false
    }
    /// `out[j] = dot(q, key j) * scale`.
    fn scores<L: Lanes>(l: L, q: &[Self], keys: &[Self], scale: f32, out: &mut [f32]);
    /// `x` rounded to this format and back (`Element::round_f32`: the rule of the generic
    /// backend's `round_to`, so both round flash's probabilities to the same bits).
    #[inline(always)]
    fn round_probability(x: f32) -> f32 {
        x
    }
    /// A tile's `O += P̂·V` ([`RowOps::tile_accumulate`], `P` unrounded, or with `packed`
    /// already rounded and packed in pairs: [`packs`]) by the token's own instruction for this
    /// element (`Lanes::bf16_tile_accumulate`); `false` (nothing done, `p` untouched) where
    /// there is none.
    #[allow(clippy::too_many_arguments)]
    fn tile_accumulate_own<L: Lanes>(
        l: L,
        acc: &mut [f32],
        d: usize,
        p: &[f32],
        packed: bool,
        ld: usize,
        counts: Counts,
        values: &[Self],
        work: &mut [f32],
    ) -> bool {
        let _ = (l, acc, d, p, packed, ld, counts, values, work);
        false
    }
}

impl ScoreElement for f32 {
    const IS_BF16: bool = false;
    #[inline(always)]
    fn scores<L: Lanes>(l: L, q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
        scores(l, q, keys, scale, out)
    }
}

impl ScoreElement for half::bf16 {
    const IS_BF16: bool = true;
    #[inline(always)]
    fn tile_scores_own<L: Lanes>(
        l: L,
        q: QTile<'_, Self>,
        keys: &[Self],
        scale: f32,
        counts: Counts,
        s: &mut [f32],
        ld: usize,
        work: &mut [f32],
    ) -> bool {
        tile_scores::tile_scores_bf16(l, q, keys, scale, counts, s, ld, work)
    }
    #[inline(always)]
    fn scores<L: Lanes>(l: L, q: &[Self], keys: &[Self], scale: f32, out: &mut [f32]) {
        if !l.bf16_scores(q, keys, scale, out) {
            scores(l, q, keys, scale, out)
        }
    }
    #[inline(always)]
    fn round_probability(x: f32) -> f32 {
        <Self as crate::Element>::round_f32(x)
    }
    #[inline(always)]
    fn tile_accumulate_own<L: Lanes>(
        l: L,
        acc: &mut [f32],
        d: usize,
        p: &[f32],
        packed: bool,
        ld: usize,
        counts: Counts,
        values: &[Self],
        work: &mut [f32],
    ) -> bool {
        let count = |r: usize| counts.of(r);
        l.bf16_tile_accumulate(acc, d, p, packed, ld, count, counts.n, values, work)
    }
}
