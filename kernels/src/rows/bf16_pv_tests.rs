//! Flash's bf16 `P·V` by a pair instruction (`Lanes::bf16_tile_accumulate`, `vdpbf16ps` on
//! `avx512bf16`) against a scalar model of the same operations, bit for bit: `P` rounded to bf16
//! (nearest even, `f32` subnormals read as zero), keys in pairs `(2m, 2m+1)` with the odd key
//! first, each product exact and each sum rounded once, subnormal inputs read as zero and
//! subnormal sums flushed to zero, and an odd last key paired with a zero key. Random tiles of
//! 1 to 9 rows (blocked and not), odd and even key counts, head dims with and without a tail,
//! causal counts, values with subnormals and (sometimes) a non-finite entry, accumulators with
//! subnormals, probabilities with ties, subnormals and garbage past each row's count.

extern crate std;

use super::lanes::{exp_sum, LaneOps};
use super::ops::{Counts, RowOps};
use super::pairs::{exp_sum_packed, pack_row, unpack_rows};
use super::test_rng::Rng;
use super::tile::tile_work_len;
use crate::simd::lanes::fused_mul_add;
use crate::simd::{for_each_row_token, Isa};
use half::bf16;
use std::vec;
use std::vec::Vec;

impl Rng {
    /// Uniform in `[0, 1)`.
    fn unit01(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// A probability: mostly in `[0, 1]`, sometimes 0, 1, a bf16 tie, a subnormal or tiny one.
    fn probability(&mut self) -> f32 {
        match self.below(12) {
            0 => 0.0,
            1 => 1.0,
            // Exactly halfway between two bf16 values: the even one wins.
            2 => f32::from_bits((0x3F00_0000 | (self.below(1 << 7) as u32) << 16) | 0x8000),
            3 => f32::from_bits(self.below(0x0080_0000) as u32), // subnormal
            4 => self.unit01() * pow2(-120),
            _ => self.unit01(),
        }
    }
    /// A value: mostly moderate, sometimes a bf16 subnormal or zero.
    fn bf16_value(&mut self) -> bf16 {
        match self.below(16) {
            0 => bf16::from_bits(self.below(0x80) as u16 | (self.below(2) as u16) << 15),
            1 => bf16::ZERO,
            _ => bf16::from_f32((self.unit01() * 2.0 - 1.0) * 8.0),
        }
    }
    /// An accumulator entry: mostly moderate, sometimes a subnormal, a tiny normal or zero.
    fn accumulator(&mut self) -> f32 {
        match self.below(16) {
            0 => f32::from_bits(self.below(0x0080_0000) as u32 | (self.below(2) as u32) << 31),
            1 => 1.5 * pow2(-126),
            2 => -0.0,
            _ => (self.unit01() * 2.0 - 1.0) * 4.0,
        }
    }
}

/// Subnormal inputs read as zero (sign kept).
fn daz(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// Subnormal results flushed to `+0` (as measured on Zen 4; any zero compares equal below).
fn ftz(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0
    } else {
        x
    }
}

/// One half of `vdpbf16ps`: `acc + a·b`, the product exact (two bf16), the sum rounded once.
fn dot_step(acc: f32, a: f32, b: f32) -> f32 {
    ftz(fused_mul_add(daz(a), daz(b), daz(acc)))
}

/// `p` rounded to bf16 as `vcvtne2ps2bf16` does (a subnormal `f32` reads as zero).
fn round_p(p: f32) -> f32 {
    bf16::from_f32(daz(p)).to_f32()
}

/// The model: each row `r` of `acc` (`d` long) plus its `count(r)` probabilities times the values.
fn model(acc: &mut [f32], d: usize, p: &[f32], ld: usize, counts: Counts, values: &[bf16]) {
    for (r, row) in acc.chunks_exact_mut(d).enumerate() {
        let c = counts.of(r);
        let ph: Vec<f32> = (0..c).map(|j| round_p(p[r * ld + j])).collect();
        for (i, a) in row.iter_mut().enumerate() {
            let v = |j: usize| values[j * d + i].to_f32();
            for m in 0..c / 2 {
                *a = dot_step(*a, ph[2 * m + 1], v(2 * m + 1));
                *a = dot_step(*a, ph[2 * m], v(2 * m));
            }
            if c % 2 == 1 {
                *a = dot_step(*a, 0.0, 0.0);
                *a = dot_step(*a, ph[c - 1], v(c - 1));
            }
        }
    }
}

/// Equal bits, or both NaN, or both zero (the sign of a flushed zero is the vendor's).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a == 0.0 && b == 0.0)
}

fn check_pairs<L: Isa>(name: &str, l: L) {
    if !L::BF16_DOTS {
        return;
    }
    std::eprintln!("checking {name}'s bf16 P·V against the pair model");
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut blocked_rows_seen = 0;
    let mut packed_rows_seen = 0;
    for &d in &[1usize, 7, 16, 17, 33, 64, 65, 130] {
        for &keys in &[1usize, 2, 3, 4, 7, 8, 16, 17, 33, 70] {
            for &rows in &[1usize, 2, 3, 4, 5, 7, 8, 9] {
                for causal in [false, true] {
                    let counts = Counts {
                        at0: if causal {
                            rng.below(keys as u64 + 4) as isize - 3
                        } else {
                            keys as isize
                        },
                        step: isize::from(causal),
                        n: keys,
                    };
                    let ld = keys + rng.below(3) as usize;
                    let mut p: Vec<f32> = (0..rows * ld).map(|_| rng.probability()).collect();
                    // Past each row's count the scores are unspecified: NaN, never read.
                    for r in 0..rows {
                        for x in &mut p[r * ld + counts.of(r)..(r + 1) * ld] {
                            *x = f32::NAN;
                        }
                    }
                    let mut values: Vec<bf16> = (0..keys * d).map(|_| rng.bf16_value()).collect();
                    if rng.below(4) == 0 {
                        // A non-finite value: NaN for the rows that see its key, none other.
                        let at = rng.below((keys * d) as u64) as usize;
                        values[at] = [bf16::NAN, bf16::INFINITY][rng.below(2) as usize];
                    }
                    let acc0: Vec<f32> = (0..rows * d).map(|_| rng.accumulator()).collect();
                    let mut want = acc0.clone();
                    model(&mut want, d, &p, ld, counts, &values);

                    let work_len = tile_work_len(rows, keys, d).unwrap();
                    let mut work = vec![f32::NAN; work_len];
                    let mut got = acc0.clone();
                    let count = |r: usize| counts.of(r);
                    let done = l.bf16_tile_accumulate(
                        &mut got, d, &p, false, ld, count, keys, &values, &mut work,
                    );
                    assert!(
                        done,
                        "{name}: the pair kernel refused d {d} keys {keys} rows {rows}"
                    );
                    // And through the row primitive flash calls (in the token's features), on
                    // `P` in the form flash's softmax leaves it: packed in pairs where the rows
                    // have room (`ld >= 16`), else as it is.
                    let mut via_ops = acc0.clone();
                    let mut p_ops = p.clone();
                    for (r, row) in p_ops.chunks_exact_mut(ld).enumerate() {
                        RowOps::<bf16, f32>::finish_probabilities(LaneOps(l), row, counts.of(r));
                    }
                    packed_rows_seen += usize::from(ld >= 16);
                    RowOps::<bf16, f32>::tile_accumulate(
                        LaneOps(l),
                        &mut via_ops,
                        d,
                        &mut p_ops,
                        ld,
                        counts,
                        &values,
                        &mut work,
                    );
                    for (k, ((&g, &o), &w)) in got.iter().zip(&via_ops).zip(&want).enumerate() {
                        assert!(
                            same(g, w) && same(o, w),
                            "{name} d {d} keys {keys} rows {rows} causal {causal} ({counts:?}): \
                             row {} element {}: {g:e} ({:#x}) / via ops {o:e}, model {w:e} ({:#x})",
                            k / d,
                            k % d,
                            g.to_bits(),
                            w.to_bits()
                        );
                    }
                    if rows >= 4 {
                        blocked_rows_seen += 1;
                    }
                }
            }
        }
    }
    assert!(blocked_rows_seen > 0 && packed_rows_seen > 0);
}

#[test]
fn bf16_pair_pv_matches_its_scalar_model() {
    for_each_row_token!(check_pairs);
}

/// Flash's exponential pass with the pair packing (`rows::pairs`) against the two passes it
/// replaces: the same sum, bit for bit, as `exp_sum`, and the words of `exp_sum`'s values
/// rounded to bf16 in pairs (by `vcvtne2ps2bf16`'s rule where the token has it, IEEE otherwise),
/// zero past the count to the line's end; `pack_row` gives the same words from the `f32`
/// values, and `unpack_rows` gives back the rounded values.
fn check_packing<L: Isa>(name: &str, l: L) {
    std::eprintln!("checking {name}'s packed exponential pass");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let round = |x: f32| {
        let x = if L::BF16_DOTS { daz(x) } else { x };
        u32::from(bf16::from_f32(x).to_bits())
    };
    for count in (1..=100).chain([127, 128, 129, 300]) {
        let ld = count.max(16) + rng.below(8) as usize;
        let mut row: Vec<f32> = (0..ld).map(|_| f32::NAN).collect();
        for x in &mut row[..count] {
            *x = match rng.below(8) {
                0 => -120.0 + rng.unit01(), // exponentials in the subnormal range, or zero
                _ => (rng.unit01() - 0.8) * 30.0,
            };
        }
        let m = row[..count]
            .iter()
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
            + rng.unit01();
        let mut two_pass = row.clone();
        let want_sum = exp_sum(l, &mut two_pass[..count], m);
        let exps = two_pass.clone();
        let got_sum = exp_sum_packed(l, &mut row, count, m).expect("room for the lines");
        assert_eq!(
            got_sum.to_bits(),
            want_sum.to_bits(),
            "{name} count {count}"
        );
        pack_row(l, &mut two_pass, count);
        let words = count.div_ceil(32) * 16;
        for w in 0..words {
            let e = |i: usize| if i < count { round(exps[i]) } else { 0 };
            let want = e(2 * w) | (e(2 * w + 1) << 16);
            assert_eq!(row[w].to_bits(), want, "{name} count {count} word {w}");
            assert_eq!(two_pass[w].to_bits(), want, "{name} count {count} word {w}");
        }
        unpack_rows(&mut row, ld, 1, |_| count);
        for (j, &x) in row[..count].iter().enumerate() {
            assert_eq!(
                x.to_bits(),
                round(exps[j]) << 16,
                "{name} count {count} slot {j}"
            );
        }
    }
}

#[test]
fn the_packed_exponential_pass_matches_the_two_passes() {
    for_each_row_token!(check_packing);
}

/// The model itself can fail: on a tile whose sums round differently in pairs than by one FMA
/// per key in key order (the canonical order), the two disagree.
#[test]
fn the_pair_model_is_not_the_canonical_order() {
    // acc = 1, p = (2^-15, 1), v = (2^-15, -1): the pair order adds key 1 first (1 − 1 = 0, then
    // + 2^-30), key order adds key 0 first (1 + 2^-30 rounds to 1, then − 1 = 0).
    let (p, v) = (
        [pow2(-15), 1.0],
        [bf16::from_f32(pow2(-15)), bf16::from_f32(-1.0)],
    );
    let counts = Counts {
        at0: 2,
        step: 0,
        n: 2,
    };
    let mut pair = [1.0f32];
    model(&mut pair, 1, &p, 2, counts, &v);
    let key_order = fused_mul_add(1.0, -1.0, fused_mul_add(pow2(-15), pow2(-15), 1.0));
    assert_eq!(pair[0], pow2(-30));
    assert_eq!(key_order, 0.0);
}

/// `2^e` exactly, for a normal `e` (Miri perturbs `powi`'s result, so the tests build their powers
/// of two from the exponent bits).
fn pow2(e: i32) -> f32 {
    f32::from_bits(((127 + e) as u32) << 23)
}
