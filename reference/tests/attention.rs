//! Attention rows whose exact answers are known independently: one key, equal logits, exact
//! cancellation, huge logits, tiny weights, NaN; values of transcendental answers below were
//! computed with Python's `decimal` at 400 digits and rounded by `float()`.

mod common;

use tessera_reference::{attention_row, naive};

#[test]
fn one_key_returns_its_value() {
    let v = [1.5, -2.25e-30, 3.0e38, 7.0];
    let out = attention_row(&[0.3, 0.1, -4.0, 2.0], &[1.0, 2.0, 3.0, 4.0], &v, 0.125);
    assert_eq!(out, v);
}

#[test]
fn no_keys_give_zeros() {
    assert_eq!(attention_row(&[1.0, 2.0], &[], &[], 1.0), vec![0.0, 0.0]);
}

#[test]
fn equal_logits_give_the_exact_mean() {
    let mut rng = common::Rng::new(1);
    for n in [2usize, 4, 8, 64] {
        let d = 3;
        // Multiples of 2^-12 below 2^8: every partial sum is exact in f64, so the mean is too.
        let values: Vec<f64> = (0..n * d)
            .map(|_| (rng.below(1 << 20) as f64 - (1 << 19) as f64) * 2f64.powi(-12))
            .collect();
        let keys = rng.f32_vec(n * d, 1.0);
        let expected: Vec<f64> = (0..d)
            .map(|c| (0..n).map(|j| values[j * d + c]).sum::<f64>() / n as f64)
            .collect();
        // A zero query makes every logit 0.
        assert_eq!(attention_row(&[0.0; 3], &keys, &values, 0.5), expected);
    }
    // Naive f64 summation loses the 1s here; the exact mean is (1 + 1) / 4.
    let out = attention_row(&[0.0], &[1.0, 2.0, 3.0, 4.0], &[1e30, 1.0, -1e30, 1.0], 1.0);
    assert_eq!(out, vec![0.5]);
}

#[test]
fn equal_logits_round_ties_to_even() {
    // Mean of 1 and 2^-52 + 2^-53... is (1 + 2^-53)/1 after halving: exactly halfway between 1 and
    // 1 + 2^-52, which rounds to even (1). With 3/4 in place of 1/2 it rounds up.
    let tie = attention_row(&[0.0], &[0.0, 0.0], &[2.0, 2f64.powi(-52)], 1.0);
    assert_eq!(tie, vec![1.0]);
    let above = attention_row(&[0.0], &[0.0, 0.0], &[2.0, 3.0 * 2f64.powi(-53)], 1.0);
    assert_eq!(above, vec![1.0 + f64::EPSILON]);
}

#[test]
fn permuting_keys_changes_nothing() {
    let mut rng = common::Rng::new(2);
    let (n, d) = (37, 8);
    let q = rng.f32_vec(d, 2.0);
    let keys = rng.f32_vec(n * d, 2.0);
    let values = rng.f32_vec(n * d, 1.0);
    let out = attention_row(&q, &keys, &values, 0.35);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let gather = |x: &[f64]| -> Vec<f64> {
        order
            .iter()
            .flat_map(|&j| x[j * d..(j + 1) * d].to_vec())
            .collect()
    };
    assert_eq!(
        attention_row(&q, &gather(&keys), &gather(&values), 0.35),
        out
    );
}

#[test]
fn cancelling_dot_product_is_exact() {
    // q·k1 = 1e30 + 1 − 1e30 = 1 and q·k2 = 0: the answer is sigmoid(1) = e / (e + 1). Naive f64
    // loses the 1 and answers 0.5.
    let q = [1.0, 1.0, 1.0];
    let keys = [1e30, 1.0, -1e30, 0.0, 0.0, 0.0];
    let values = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    assert_eq!(
        attention_row(&q, &keys, &values, 1.0),
        vec![0.7310585786300049, 0.2689414213699951, 0.0]
    );
}

#[test]
fn huge_logits_select_the_largest_key_or_differ_exactly() {
    let big = 3.0e38f32 as f64;
    // Logits 1e30, -1e30 and 5e29: every weight but the first is e^-5e29, which is zero.
    let out = attention_row(&[1e30], &[1.0, -1.0, 0.5], &[7.0, 11.0, 13.0], 1.0);
    assert_eq!(out, vec![7.0]);
    // Products of ±3e38 (logits near ±1.8e77) do not overflow.
    let out = attention_row(
        &[big, big],
        &[-big, big, big, big],
        &[1.0, 3.0, 2.0, 5.0],
        1.0,
    );
    assert_eq!(out, vec![2.0, 5.0]);
    // Logits 9e76 + 1 and 9e76: they differ by exactly 1, which f64 cannot see.
    let keys = [big, 1.0, big, 0.0];
    let out = attention_row(&[big, 1.0], &keys, &[1.0, 0.0, 0.0, 1.0], 1.0);
    assert_eq!(out, vec![0.7310585786300049, 0.2689414213699951]);
}

#[test]
fn three_keys_match_the_analytic_answer() {
    // Logits 2, 1, 0 (the query's second feature is zero).
    let out = attention_row(
        &[1.0, 0.0],
        &[2.0, 9.0, 1.0, -3.0, 0.0, 0.5],
        &[1.0, 0.5, -2.0, 0.25, 4.0, 0.125],
        1.0,
    );
    assert_eq!(out, vec![0.5359063063467484, 0.40505641729740793]);
}

#[test]
fn tiny_weights_are_kept_where_they_matter() {
    // Weight e^-300 on the only nonzero value: e^-300 / (1 + e^-300).
    let out = attention_row(&[1.0], &[0.0, -300.0], &[0.0, 1.0], 1.0);
    assert_eq!(out, vec![5.148200222412013e-131]);
    // 2^-149 + 2^128 · e^-228 (about 1.07 ulp of 2^-149), over 1 + e^-228: rounds up one ulp.
    let out = attention_row(
        &[1.0],
        &[0.0, -228.0],
        &[2f64.powi(-149), 2f64.powi(128)],
        1.0,
    );
    assert_eq!(out, vec![1.4012984643248174e-45]);
}

#[test]
fn groups_of_equal_logits_cancel_exactly() {
    // Logits 0, 0, -1, -1, -1 with values summing to zero within each group: exactly 0.
    let keys = [0.0, 0.0, -1.0, -1.0, -1.0];
    let values = [1.0, -1.0, 0.5, 0.25, -0.75];
    assert_eq!(attention_row(&[1.0], &keys, &values, 1.0), vec![0.0]);
}

#[test]
fn negative_and_zero_scales() {
    let keys = [2.0, 1.0, 0.0];
    let values = [1.0, -2.0, 4.0];
    // scale -1 turns logits 2, 1, 0 into -2, -1, 0: the same as values reversed with scale 1.
    let flipped = attention_row(&[1.0], &keys, &values, -1.0);
    assert_eq!(
        flipped,
        attention_row(&[1.0], &[0.0, 1.0, 2.0], &values, 1.0)
    );
    assert_eq!(attention_row(&[1.0], &keys, &values, 0.0), vec![1.0]);
}

#[test]
fn nan_or_infinity_anywhere_gives_a_nan_row() {
    let q = [1.0, 2.0];
    let keys = [0.5, 0.25, -1.0, 3.0];
    let values = [1.0, 2.0, 3.0, 4.0];
    let all_nan = |row: Vec<f64>| row.len() == 2 && row.iter().all(|x| x.is_nan());
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for slot in 0..2 {
            let mut q2 = q;
            q2[slot] = bad;
            assert!(all_nan(attention_row(&q2, &keys, &values, 1.0)));
        }
        for slot in 0..4 {
            let (mut k2, mut v2) = (keys, values);
            k2[slot] = bad;
            v2[slot] = bad;
            assert!(all_nan(attention_row(&q, &k2, &values, 1.0)));
            assert!(all_nan(attention_row(&q, &keys, &v2, 1.0)));
        }
        assert!(all_nan(attention_row(&q, &keys, &values, bad)));
    }
}

#[test]
fn fast_path_agrees_with_the_naive_big_float_path() {
    let mut rng = common::Rng::new(3);
    for case in 0..40 {
        let n = 1 + rng.below(24);
        let d = 1 + rng.below(6);
        let amplitude = [1.0, 8.0, 1e-20, 1e20, 3e38][case % 5];
        let scale = [0.125, 1.0, -0.5, 3.0e10, 1e-30][case % 5 / 2 + case % 3];
        let bf16 = case % 2 == 0;
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
        // Duplicate some keys, so that equal logits occur.
        if n > 2 {
            let (a, b) = (case % n, (case * 7) % n);
            let src = keys[a * d..(a + 1) * d].to_vec();
            keys[b * d..(b + 1) * d].copy_from_slice(&src);
        }
        let fast = attention_row(&q, &keys, &values, scale);
        let slow = naive::attention_row(&q, &keys, &values, scale);
        assert_eq!(
            fast.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            slow.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "case {case}: n={n} d={d} amplitude={amplitude} scale={scale} q={q:?} keys={keys:?} values={values:?}"
        );
    }
}

#[test]
fn rows_mixing_huge_and_tiny_magnitudes_agree_with_the_naive_path() {
    // Each element scaled by a random power of two in 2^±120: products span far more than an
    // i128, so logits take the general accumulator.
    let mut rng = common::Rng::new(4);
    for case in 0..12 {
        let n = 1 + rng.below(16);
        let d = 1 + rng.below(5);
        let mut gen = |len: usize| -> Vec<f64> {
            (0..len)
                .map(|_| {
                    let scale = 2f64.powi(rng.below(241) as i32 - 120);
                    ((rng.f32_value(1.0) * scale) as f32) as f64
                })
                .collect()
        };
        let (q, keys, values) = (gen(d), gen(n * d), gen(n * d));
        let scale = [1e-70, 1e-40, 1.0][case % 3];
        let fast = attention_row(&q, &keys, &values, scale);
        let slow = naive::attention_row(&q, &keys, &values, scale);
        assert_eq!(
            fast.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            slow.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "case {case}: q={q:?} keys={keys:?} values={values:?} scale={scale}"
        );
    }
}
