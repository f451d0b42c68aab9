//! The SIMD bodies against a scalar model of the 16 lanes, and the exp polynomial's accuracy.
//!
//! [`Scalar`] implements [`Lanes`] with one scalar IEEE operation per lane (`libm::fmaf`, checked
//! here against [`fused_mul_add`], is the correctly rounded fused multiply-add), so it *defines* the canonical order: every SIMD token
//! available to the test run must give the model's bits on every primitive. Tokens need their
//! features: run with `--features std` (run-time detection), with `-C target-feature=...`, or
//! under Miri (`cargo +nightly miri test -p tessera-kernels simd::` with
//! `RUSTFLAGS="-C target-feature=+avx512f"`, or `--target aarch64-unknown-linux-gnu`).

extern crate std;

use super::lanes::{LaneOps, ScoreElement};
use super::ops::RowOps;
use crate::simd::lanes::{fused_mul_add, max_tree, sum_tree};
use crate::simd::scalar::Scalar;
use crate::simd::{Isa, Lanes, LANES};
use half::bf16;
use std::vec::Vec;
use std::{eprintln, vec};

/// The row primitives on the scalar lanes: the reference every SIMD token must reproduce.
#[allow(non_upper_case_globals)]
const Model: LaneOps<Scalar> = LaneOps(Scalar);

use super::test_rng::Rng;
use crate::simd::{for_each_lane_token, for_each_row_token};

impl Rng {
    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Mostly moderate values, sometimes a special one (NaN, infinities, zeros, subnormals, huge).
    fn value(&mut self, specials: bool) -> f32 {
        if specials && self.next_u64().is_multiple_of(16) {
            let s = [
                f32::NAN,
                -f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                1e-40,
                -3e-39,
                3e38,
                -2e38,
            ];
            return s[(self.next_u64() % s.len() as u64) as usize];
        }
        self.unit() * 4.0
    }
    fn vec(&mut self, n: usize, specials: bool) -> Vec<f32> {
        (0..n).map(|_| self.value(specials)).collect()
    }
}

/// Bitwise equality, except that any two NaNs are equal (payloads are not part of the contract).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same(what: &str, name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            same(g, w),
            "{name} {what}[{i}]: {g:e} ({:#x}), model {w:e} ({:#x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

fn widen<E: ScoreElement + crate::Element>(x: &[E]) -> Vec<f32> {
    x.iter().map(|e| e.to_f32()).collect()
}

fn to_elements<E: ScoreElement + crate::Element>(x: &[f32]) -> Vec<E> {
    x.iter()
        .map(|&v| <E as crate::Element>::from_f32(v))
        .collect()
}

/// Lengths that cover empty, tails only, whole chunks, whole chunks plus tails, several groups.
const LENGTHS: [usize; 16] = [0, 1, 2, 7, 15, 16, 17, 31, 33, 48, 63, 64, 65, 80, 97, 130];

/// Every primitive of `t` on element `E` against the model, bit for bit.
fn rows_match_model<E: ScoreElement + crate::Element, T: RowOps<E, f32>>(
    name: &str,
    t: T,
    exact_scores: bool,
) where
    LaneOps<Scalar>: RowOps<E, f32>,
{
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rounds = if cfg!(miri) { 1 } else { 4 };
    // Under Miri (slow): the lengths that reach every branch (tails, chunks, groups of 4 and 8).
    let (lengths, key_counts): (&[usize], &[usize]) = if cfg!(miri) {
        (&[0, 1, 17, 33, 64], &[0, 1, 9])
    } else {
        (&LENGTHS, &[0, 1, 3, 4, 5, 9, 17])
    };
    for _ in 0..rounds {
        for &d in lengths {
            for &keys in key_counts {
                let specials = rng.next_u64().is_multiple_of(4);
                let q: Vec<E> = to_elements(&rng.vec(d, specials));
                let k: Vec<E> = to_elements(&rng.vec(d * keys, specials));
                let (mut got, mut want) = (vec![f32::NAN; keys], vec![f32::NAN; keys]);
                t.scores(&q, &k, 0.125, &mut got);
                RowOps::<E, f32>::scores(Model, &q, &k, 0.125, &mut want);
                if exact_scores {
                    assert_same("scores", name, &got, &want);
                }

                let p = rng.vec(keys, specials);
                let v: Vec<E> = to_elements(&rng.vec(d * keys, specials));
                let acc0 = rng.vec(d, specials);
                let (mut got, mut want) = (acc0.clone(), acc0.clone());
                t.accumulate(&mut got, &p, &v);
                RowOps::<E, f32>::accumulate(Model, &mut want, &p, &v);
                assert_same("accumulate", name, &got, &want);

                check_linear(name, t, &mut rng, d, keys, specials);

                let denom = rng.value(specials);
                let (mut got, mut want) = (
                    vec![<E as crate::Element>::from_f32(f32::NAN); d],
                    vec![E::default(); d],
                );
                t.store(&mut got, &acc0, denom);
                RowOps::<E, f32>::store(Model, &mut want, &acc0, denom);
                assert_same("store", name, &widen(&got), &widen(&want));
            }
            let s = rng.vec(d, true);
            assert_same(
                "max",
                name,
                &[RowOps::<E, f32>::max(t, &s)],
                &[RowOps::<E, f32>::max(Model, &s)],
            );
            let m = RowOps::<E, f32>::max(Model, &s);
            for shift in [m, 0.0, 50.0, f32::NEG_INFINITY] {
                let (mut got, mut want) = (s.clone(), s.clone());
                let gs = RowOps::<E, f32>::exp_sum(t, &mut got, shift);
                let ws = RowOps::<E, f32>::exp_sum(Model, &mut want, shift);
                assert_same("exp_sum", name, &got, &want);
                assert_same("exp_sum total", name, &[gs], &[ws]);
            }
            let x = rng.value(true);
            let (mut got, mut want) = (s.clone(), s.clone());
            RowOps::<E, f32>::normalize(t, &mut got, x);
            RowOps::<E, f32>::normalize(Model, &mut want, x);
            assert_same("normalize", name, &got, &want);
            let (mut got, mut want) = (s.clone(), s.clone());
            RowOps::<E, f32>::scale(t, &mut got, x);
            RowOps::<E, f32>::scale(Model, &mut want, x);
            assert_same("scale", name, &got, &want);
        }
    }
}

/// `linear` of `t` against the model for 0..=5 and 9 rows of `d` inputs and `outs` outputs, and
/// every row of the batch against that row alone (the grouping must not change any bits).
fn check_linear<E: ScoreElement + crate::Element, T: RowOps<E, f32>>(
    name: &str,
    t: T,
    rng: &mut Rng,
    d: usize,
    outs: usize,
    specials: bool,
) where
    LaneOps<Scalar>: RowOps<E, f32>,
{
    let w: Vec<E> = to_elements(&rng.vec(d * outs, specials));
    for rows in [0usize, 1, 2, 3, 4, 5, 9] {
        let x = rng.vec(rows * d, specials);
        let (mut got, mut want) = (vec![f32::NAN; rows * outs], vec![f32::NAN; rows * outs]);
        t.linear(d, &x, &w, &mut got);
        RowOps::<E, f32>::linear(Model, d, &x, &w, &mut want);
        assert_same("linear", name, &got, &want);
        if d == 0 || outs == 0 {
            continue;
        }
        for (x_row, got_row) in x.chunks_exact(d).zip(got.chunks_exact(outs)) {
            let mut alone = vec![f32::NAN; outs];
            t.linear(d, x_row, &w, &mut alone);
            assert_same("linear row alone", name, &alone, got_row);
        }
    }
}

fn check_rows<L: Isa>(name: &str, l: L) {
    eprintln!("checking {name} against the lane model");
    let t = LaneOps(l);
    rows_match_model::<f32, _>(name, t, true);
    // vdpbf16ps sums pairs in its own order: only avx512bf16's bf16 `scores` may differ.
    rows_match_model::<bf16, _>(name, t, name != "avx512bf16");
}

#[test]
fn every_token_matches_the_lane_model() {
    for_each_row_token!(check_rows);
}

fn check_reductions<L: Lanes>(name: &str, l: L) {
    let mut rng = Rng(7);
    for _ in 0..if cfg!(miri) { 4 } else { 200 } {
        let v: [[f32; LANES]; 4] =
            core::array::from_fn(|_| core::array::from_fn(|_| rng.value(true)));
        let lanes = v.map(|x| l.load(&x));
        let sums = l.reduce_add4(lanes);
        for (x, s) in v.iter().zip(sums) {
            assert!(
                same(l.reduce_add(l.load(x)), sum_tree(*x)),
                "{name} reduce_add"
            );
            assert!(same(s, sum_tree(*x)), "{name} reduce_add4");
            assert!(
                same(l.reduce_max(l.load(x)), max_tree(*x)),
                "{name} reduce_max"
            );
            let mut root = [0.0f32; LANES];
            l.store(l.sqrt(l.load(x)), &mut root);
            for (r, &xi) in root.iter().zip(x) {
                assert!(same(*r, libm::sqrtf(xi)), "{name} sqrt({xi})");
            }
        }
    }
}

#[test]
fn every_token_reduces_by_the_canonical_tree() {
    check_reductions("scalar", Scalar);
    for_each_lane_token!(check_reductions);
}

/// `e^x` of each value through a token's `exp_sum` (`x - 0 = x`).
fn exp_of<T: RowOps<f32, f32>>(t: T, x: &[f32]) -> Vec<f32> {
    let mut s = x.to_vec();
    t.exp_sum(&mut s, 0.0);
    s
}

/// Error of `y` against the exact `e` in units of the f32 ulp at `e` (subnormal ulp `2^-149`).
/// Infinity counts as `2^128`, the first value past `f32::MAX`, and so does any larger `e`.
fn ulps(y: f32, e: f64) -> f64 {
    let top = 2f64.powi(128);
    let y = if y == f32::INFINITY { top } else { y as f64 };
    let e = e.min(top);
    let exponent = if e > 0.0 {
        libm::floor(libm::log2(e)) as i32
    } else {
        -149
    };
    let ulp = 2f64.powi(exponent.clamp(-126, 127) - 23);
    (y - e).abs() / ulp
}

#[test]
fn exp_is_within_two_ulp_over_the_f32_range() {
    // Every 2039th bit pattern between -104.5 and 89.5 (about a million values), both signs.
    let step = if cfg!(miri) { 2_000_003 } else { 2039 };
    let xs: Vec<f32> = (0..0x42B3_0000u32)
        .step_by(step)
        .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
        .filter(|x| (-104.5..=89.5).contains(x))
        .collect();
    let ys = exp_of(Model, &xs);
    let mut worst = (0.0, 0.0);
    for (&x, &y) in xs.iter().zip(&ys) {
        let err = ulps(y, libm::exp(x as f64));
        if err > worst.0 {
            worst = (err, x);
        }
    }
    eprintln!("exp: worst error {:.3} ulp at x = {:e}", worst.0, worst.1);
    assert!(
        worst.0 <= 2.0,
        "exp error {} ulp at x = {:e}",
        worst.0,
        worst.1
    );

    fn check<L: Isa>(name: &str, l: L, xs: &[f32], want: &[f32]) {
        assert_same("exp", name, &exp_of(LaneOps(l), xs), want);
    }
    for_each_lane_token!(check, &xs, &ys);
}

#[test]
fn exp_special_values() {
    let cases = [
        (f32::NEG_INFINITY, 0.0),
        (f32::INFINITY, f32::INFINITY),
        (0.0, 1.0),
        (-0.0, 1.0),
        (89.0, f32::INFINITY),
        (88.8, f32::INFINITY),
        (1e30, f32::INFINITY),
        (-104.0, 0.0),
        (-1e30, 0.0),
        (-f32::MAX, 0.0),
    ];
    let xs: Vec<f32> = cases
        .iter()
        .map(|c| c.0)
        .chain([f32::NAN, -f32::NAN])
        .collect();
    let ys = exp_of(Model, &xs);
    for (&(x, want), &y) in cases.iter().zip(&ys) {
        assert_eq!(
            y.to_bits(),
            want.to_bits(),
            "exp({x:e}) = {y:e}, want {want:e}"
        );
    }
    assert!(
        ys[ys.len() - 2].is_nan() && ys[ys.len() - 1].is_nan(),
        "exp(NaN) must be NaN"
    );
    // The largest input with a finite result, and the smallest with a non-zero one.
    let edge = exp_of(Model, &[88.72283, -103.27893]);
    assert!(
        edge[0].is_finite() && edge[0] > 3.4e38,
        "exp(88.72283) = {:e}",
        edge[0]
    );
    assert!(edge[1] > 0.0, "exp(-103.27893) = {:e}", edge[1]);
}

#[test]
fn max_ignores_nan_like_f32_max() {
    let mut rng = Rng(11);
    for n in LENGTHS {
        for _ in 0..8 {
            let mut s = rng.vec(n, true);
            if n > 2 && rng.next_u64().is_multiple_of(3) {
                s.iter_mut().for_each(|x| *x = f32::NAN);
            }
            let want = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let got = RowOps::<f32, f32>::max(Model, &s);
            assert!(got == want, "max of {s:?}: {got}, f32::max fold {want}");
        }
    }
}

/// The softmax step's finiteness check sees one infinity or NaN at every position of rows long
/// enough to fill all four chains of the max pass (and their tails), on every token; a row with
/// none passes with its max.
fn check_finite_positions<L: Isa>(name: &str, l: L) {
    let t = LaneOps(l);
    let mut rng = Rng(13);
    let lengths: &[usize] = if cfg!(miri) {
        &[17, 80]
    } else {
        &[1, 15, 16, 17, 63, 64, 65, 80, 130, 200]
    };
    for &n in lengths {
        let s = rng.vec(n, false);
        let want = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let got = RowOps::<f32, f32>::finite_max_exp_sum(t, &mut s.clone(), f32::NEG_INFINITY);
        assert_eq!(got.map(|g| g.0), Some(want), "{name}: finite row of {n}");
        let step = if cfg!(miri) { 7 } else { 1 };
        for at in (0..n).step_by(step) {
            for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
                let mut row = s.clone();
                row[at] = bad;
                let got = RowOps::<f32, f32>::finite_max_exp_sum(t, &mut row, f32::NEG_INFINITY);
                assert!(got.is_none(), "{name}: {bad} at {at} of {n} not seen");
            }
        }
    }
}

#[test]
fn the_finite_check_sees_every_position() {
    check_finite_positions("scalar", Scalar);
    for_each_row_token!(check_finite_positions);
}

#[test]
fn bf16_store_rounds_like_half() {
    let mut values = vec![
        1.0 + 1.0 / 256.0,                    // tie, rounds to even (down)
        1.0 + 3.0 / 256.0,                    // tie, rounds to even (up)
        1.0 + 2f32.powi(-8) + 2f32.powi(-20), // above the tie
        f32::MAX,                             // rounds to infinity
        f32::from_bits(0x7F7F_8000),          // tie at the top: rounds to infinity
        1e-40,                                // subnormal
        -f32::from_bits(0x0000_8000),         // subnormal tie
        f32::NAN,
        f32::from_bits(0x7F80_0001), // signalling NaN whose payload is below bf16's bits
        f32::from_bits(0xFF81_0000),
        f32::INFINITY,
        -0.0,
    ];
    let mut rng = Rng(3);
    values.extend((0..300).map(|_| f32::from_bits(rng.next_u64() as u32)));
    for denom in [1.0f32, 3.0, -0.7, 0.0] {
        let mut out = vec![bf16::ZERO; values.len()];
        RowOps::<bf16, f32>::store(Model, &mut out, &values, denom);
        for (o, &v) in out.iter().zip(&values) {
            let want = bf16::from_f32(v / denom);
            // A NaN must stay NaN; its payload is not specified (Miri even randomises it).
            let ok = o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan());
            assert!(
                ok,
                "store({v:e} / {denom}) = {o} ({:#x}), half gives {want}",
                o.to_bits()
            );
        }
    }
}

/// Random triples whose exact `a·b + c` lands near, on and between rounding boundaries.
fn fma_cases() -> Vec<[f32; 3]> {
    let mut rng = Rng(5);
    let mut cases = vec![
        [1.0 + f32::EPSILON, 1.0 - f32::EPSILON, -1.0],
        [f32::MAX, 2.0, -f32::MAX],
        [1e-30, 1e-30, -0.0],
        [-0.0, 5.0, 0.0],
        [0.0, -5.0, -0.0],
        [f32::INFINITY, 0.0, 1.0],
        [f32::NAN, 1.0, 1.0],
        [1e-45, 0.5, 0.0],
        [3.0, 1e-45, -1e-45],
    ];
    for _ in 0..if cfg!(miri) { 500 } else { 200_000 } {
        let a = f32::from_bits(rng.next_u64() as u32 & 0xBFFF_FFFF);
        let b = rng.value(false) * 2f32.powi((rng.next_u64() % 40) as i32 - 20);
        // c close to -a·b makes the sum cancel, where a separately rounded product would show.
        let c = -(a * b) * (1.0 + rng.unit() * f32::EPSILON * 4.0);
        cases.push([a, b, c]);
        cases.push([a, b, rng.value(true)]);
    }
    cases
}

#[test]
fn soft_fused_mul_add_is_correctly_rounded() {
    let cases = fma_cases();
    if !cfg!(miri) {
        for &[a, b, c] in &cases {
            let (got, want) = (fused_mul_add(a, b, c), libm::fmaf(a, b, c));
            assert!(
                same(got, want),
                "fma({a:e}, {b:e}, {c:e}) = {got:e}, libm {want:e}"
            );
        }
    }
    fn check<L: Lanes>(name: &str, l: L, cases: &[[f32; 3]]) {
        for chunk in cases.chunks(LANES) {
            let lane = |k: usize| -> [f32; LANES] {
                core::array::from_fn(|i| chunk.get(i).map_or(0.0, |t| t[k]))
            };
            let mut out = [0.0; LANES];
            l.store(
                l.mul_add(l.load(&lane(0)), l.load(&lane(1)), l.load(&lane(2))),
                &mut out,
            );
            for (&[a, b, c], &got) in chunk.iter().zip(&out) {
                let want = fused_mul_add(a, b, c);
                assert!(
                    same(got, want),
                    "{name} fma({a:e}, {b:e}, {c:e}) = {got:e}, soft {want:e}"
                );
            }
        }
    }
    check("scalar", Scalar, &cases);
    for_each_lane_token!(check, &cases);
}
