//! The dense layer on every token against the definition of its order, written out here per
//! output and independent of how `lane_dense` blocks rows and outputs: lane `j` of output
//! `(r, o)` is the fused multiply-add chain `acc = fma(x[r][16c + j], w[o][16c + j], acc)` from
//! `+0.0` over the whole chunks `c` in order, then the tail as one chunk padded with zeros in
//! both operands, then the canonical tree. Row counts 1 to 9 (blocks of 4 rows and every remainder), output counts
//! around the output blocks (odd, primes, multiples of 4 and 8 with and without a remainder),
//! lengths with and without a tail, values with zeros of both signs, subnormals, infinities and
//! NaN; `f32` and `bf16` weights. A blocking that changed any output's operations or their order
//! changes bits here.

extern crate std;

use super::lanes::{LaneOps, ScoreElement};
use super::ops::RowOps;
use super::test_rng::Rng;
use crate::simd::lanes::{fused_mul_add, sum_tree};
use crate::simd::scalar::Scalar;
use crate::simd::{for_each_row_token, Isa, LANES};
use crate::Element;
use half::bf16;
use std::vec;
use std::vec::Vec;

impl Rng {
    /// Mostly moderate, one in eight a zero (either sign), and with `specials` one in 32 a
    /// subnormal, a huge value, an infinity or NaN.
    fn dense_value(&mut self, specials: bool) -> f32 {
        let roll = self.next_u64() % 32;
        if specials && roll == 0 {
            let s = [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                1e-40,
                -3e-39,
                3e38,
            ];
            return s[(self.next_u64() % s.len() as u64) as usize];
        }
        match roll {
            1..=2 => 0.0,
            3..=4 => -0.0,
            _ => ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * 4.0,
        }
    }
}

/// Output `(r, o)` by the definition: 16 chains in chunk order, the zero-padded tail, the tree.
fn reference<W: Element>(k: usize, x_row: &[f32], w_row: &[W]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for c in 0..k.div_ceil(LANES) {
        for (j, a) in acc.iter_mut().enumerate() {
            let i = c * LANES + j;
            let (xi, wi) = if i < k {
                (x_row[i], w_row[i].to_f32())
            } else {
                (0.0, 0.0)
            };
            *a = fused_mul_add(xi, wi, *a);
        }
    }
    sum_tree(acc)
}

/// Bitwise equality, except that any two NaNs are equal (payloads are not part of the contract).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn check_dense<W: ScoreElement + Element, T: RowOps<W, f32>>(name: &str, t: T) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (lengths, outputs): (&[usize], &[usize]) = if cfg!(miri) {
        (&[7, 33], &[1, 5, 9])
    } else {
        (
            &[1, 15, 16, 17, 33, 71, 130],
            &[1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 23, 33],
        )
    };
    let max_rows = if cfg!(miri) { 5 } else { 9 };
    for &k in lengths {
        for &n in outputs {
            let specials = rng.next_u64().is_multiple_of(2);
            let w: Vec<W> = (0..n * k)
                .map(|_| <W as Element>::from_f32(rng.dense_value(specials)))
                .collect();
            for rows in 1..=max_rows {
                let x: Vec<f32> = (0..rows * k).map(|_| rng.dense_value(specials)).collect();
                let mut y = vec![f32::NAN; rows * n];
                t.linear(k, &x, &w, &mut y);
                for (r, (x_row, y_row)) in x.chunks_exact(k).zip(y.chunks_exact(n)).enumerate() {
                    for (o, (w_row, &got)) in w.chunks_exact(k).zip(y_row).enumerate() {
                        let want = reference(k, x_row, w_row);
                        assert!(
                            same(got, want),
                            "{name} {}: k {k}, {n} outputs, {rows} rows: y[{r}][{o}] = {got:e} \
                             ({:#x}), the chain gives {want:e} ({:#x})",
                            core::any::type_name::<W>(),
                            got.to_bits(),
                            want.to_bits()
                        );
                    }
                }
            }
        }
    }
}

fn check_token<L: Isa>(name: &str, l: L) {
    check_dense::<f32, _>(name, LaneOps(l));
    check_dense::<bf16, _>(name, LaneOps(l));
}

#[test]
fn every_dense_output_is_its_own_chain_on_every_token() {
    check_token("scalar", Scalar);
    for_each_row_token!(check_token);
}
