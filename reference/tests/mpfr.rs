//! The default oracle and the MPFR one agree bit for bit (run with `--features mpfr`).
#![cfg(feature = "mpfr")]

mod common;

use tessera_reference::{attention, attention_row, dot, exp, mpfr, softmax, sum, ReferenceShape};

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn attention_rows_agree_bit_for_bit() {
    let mut rng = common::Rng::new(21);
    for case in 0..60 {
        let n = 1 + rng.below(if case % 10 == 0 { 300 } else { 40 });
        let d = 1 + rng.below(8);
        let amplitude = [1.0, 4.0, 1e-20, 1e20, 3e38, 30.0][case % 6];
        let scale = [0.125, 1.0, -0.5, 3.0e10, 1e-30, 0.0][case % 6 / 2 + case % 4];
        let bf16 = case % 3 == 0;
        let mut gen = |len| -> Vec<f64> {
            (0..len)
                .map(|_| {
                    if bf16 {
                        rng.bf16_value(amplitude)
                    } else {
                        rng.f32_value(amplitude)
                    }
                })
                .collect()
        };
        let q = gen(d);
        let mut keys = gen(n * d);
        let values = gen(n * d);
        if n > 3 {
            let src = keys[..d].to_vec();
            keys[(n - 1) * d..].copy_from_slice(&src);
        }
        let ours = attention_row(&q, &keys, &values, scale);
        let theirs = mpfr::attention_row(&q, &keys, &values, scale);
        assert_eq!(
            bits(&ours),
            bits(&theirs),
            "case {case}: n={n} d={d} scale={scale}"
        );
    }
}

#[test]
fn whole_problems_agree() {
    let shape = ReferenceShape {
        kv_heads: 2,
        causal: true,
        ..ReferenceShape::new(2, 4, 5, 9, 6)
    };
    let mut rng = common::Rng::new(22);
    let q = rng.f32_vec(2 * 4 * 5 * 6, 3.0);
    let k = rng.f32_vec(2 * 2 * 9 * 6, 3.0);
    let v = rng.f32_vec(2 * 2 * 9 * 6, 1.0);
    assert_eq!(
        bits(&attention(&shape, &q, &k, &v)),
        bits(&mpfr::attention(&shape, &q, &k, &v))
    );
}

#[test]
fn scalar_functions_agree() {
    let mut rng = common::Rng::new(23);
    for _ in 0..200 {
        // Arguments over exp's whole interesting range, subnormal results included.
        let x = (rng.uniform() * 2.0 - 1.0) * 750.0;
        assert_eq!(exp(x).to_bits(), mpfr::exp(x).to_bits(), "exp({x})");
    }
    for case in 0..50 {
        let n = 1 + rng.below(50);
        // Full-range f64 values (random bit patterns), not just f32 ones.
        let mut wide = || loop {
            let v = f64::from_bits(rng.next_u64());
            if v.is_finite() {
                return v;
            }
        };
        let a: Vec<f64> = (0..n).map(|_| wide()).collect();
        let b: Vec<f64> = (0..n).map(|_| wide()).collect();
        assert_eq!(
            dot(&a, &b).to_bits(),
            mpfr::dot(&a, &b).to_bits(),
            "case {case}"
        );
        assert_eq!(sum(&a).to_bits(), mpfr::sum(&a).to_bits(), "case {case}");
        let x = rng.f32_vec(n, [1.0, 50.0, 1e4][case % 3]);
        assert_eq!(bits(&softmax(&x)), bits(&mpfr::softmax(&x)), "{x:?}");
    }
}
