//! `exp`, `softmax`, `dot` and `sum` against values known independently (Python's `decimal` at
//! 400 digits from the exact binary value of each `f64` argument, `Decimal(x)`, and rounded by
//! `float()`; or exact arithmetic).

mod common;

use tessera_reference::{dot, exp, naive, softmax, sum};

#[test]
fn exp_is_correctly_rounded_on_known_values() {
    let known = [
        (1.0, std::f64::consts::E),
        (-1.0, 0.36787944117144233),
        (0.5, 1.6487212707001282),
        (700.0, 1.0142320547350045e304),
        (-700.0, 9.85967654375977e-305),
        (709.7, 1.6549840276802644e308),
        (1e-10, 1.0000000001),
        (-0.1, 0.9048374180359595),
        (10.0, 22026.465794806718),
        // Subnormal result: e^-745.1 ≈ 2.6e-324 rounds up to the smallest subnormal.
        (-745.1, 5e-324),
        (0.0, 1.0),
        (-0.0, 1.0),
    ];
    for (x, expected) in known {
        assert_eq!(exp(x), expected, "exp({x})");
    }
    assert_eq!(exp(-746.0), 0.0);
    assert_eq!(exp(710.0), f64::INFINITY);
    assert!(exp(f64::NAN).is_nan());
}

#[test]
fn softmax_known_values() {
    // [1, 0] → [sigmoid(1), sigmoid(-1)].
    assert_eq!(
        softmax(&[1.0, 0.0]),
        vec![0.7310585786300049, 0.2689414213699951]
    );
    // Equal entries: 1/3 each (IEEE division is correctly rounded, so 1.0/3.0 is the answer).
    assert_eq!(softmax(&[5.0, 5.0, 5.0]), vec![1.0 / 3.0; 3]);
    // A logit 1e30 above the others takes everything.
    assert_eq!(softmax(&[1e30, 0.0, -1e30]), vec![1.0, 0.0, 0.0]);
    assert_eq!(softmax(&[]), Vec::<f64>::new());
    assert!(softmax(&[1.0, f64::NAN]).iter().all(|x| x.is_nan()));
}

#[test]
fn softmax_agrees_with_the_naive_path() {
    let mut rng = common::Rng::new(11);
    for case in 0..30 {
        let n = 1 + rng.below(20);
        let amplitude = [1.0, 30.0, 1000.0, 1e-30][case % 4];
        let x = rng.f32_vec(n, amplitude);
        assert_eq!(softmax(&x), naive::softmax(&x), "{x:?}");
    }
}

#[test]
fn dot_and_sum_are_exact() {
    assert_eq!(dot(&[1e30, 1.0, -1e30], &[1.0, 1.0, 1.0]), 1.0);
    // (2^27 + 1)^2 − 2^54 − 2^28 = 1 needs 55 bits in the middle.
    let a = 134217729.0;
    assert_eq!(
        dot(&[a, -1.0, -1.0], &[a, 18014398509481984.0, 268435456.0]),
        1.0
    );
    // A term far below the others still decides the rounding: 1 + 2^-53 + 2^-200 rounds up.
    assert_eq!(
        sum(&[1.0, 2f64.powi(-53), 2f64.powi(-200)]),
        1.0 + f64::EPSILON
    );
    assert_eq!(sum(&[1.0, 2f64.powi(-53)]), 1.0);
    assert_eq!(sum(&[f64::MAX, f64::MAX, -f64::MAX]), f64::MAX);
    assert_eq!(sum(&[f64::MAX, f64::MAX]), f64::INFINITY);
    assert_eq!(dot(&[5e-324], &[0.5]), 0.0);
    assert_eq!(dot(&[5e-324], &[0.75]), 5e-324);
    assert!(dot(&[0.0], &[f64::INFINITY]).is_nan());
    assert_eq!(sum(&[f64::INFINITY, 1.0]), f64::INFINITY);
    assert!(sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
}

#[test]
fn sum_matches_integer_arithmetic_on_scaled_integers() {
    // Random multiples of 2^-40 below 2^20: sums of them are exact in i128, an independent check.
    let mut rng = common::Rng::new(12);
    for _ in 0..50 {
        let ints: Vec<i64> = (0..100)
            .map(|_| (rng.next_u64() >> 4) as i64 - (1 << 59))
            .collect();
        let xs: Vec<f64> = ints.iter().map(|&i| i as f64 * 2f64.powi(-40)).collect();
        // i as f64 may round; the exact value of each term is what the sum must see.
        let exact: i128 = xs.iter().map(|&x| (x * 2f64.powi(40)) as i128).sum();
        assert_eq!(sum(&xs), exact as f64 * 2f64.powi(-40));
    }
}

#[test]
fn public_types_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<tessera_reference::ReferenceShape>();
    send_sync::<tessera_reference::Real>();
    send_sync::<tessera_reference::Dyadic>();
    send_sync::<tessera_reference::ExactAccumulator>();
    // Rows computed on several threads at once (the exp tables are built by whichever is first)
    // equal the rows computed on one.
    let mut rng = common::Rng::new(13);
    let (n, d) = (50, 4);
    let q = rng.f32_vec(d, 2.0);
    let keys = rng.f32_vec(n * d, 2.0);
    let values = rng.f32_vec(n * d, 1.0);
    let threaded: Vec<Vec<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=4)
            .map(|i| {
                let (q, keys, values) = (&q, &keys, &values);
                s.spawn(move || tessera_reference::attention_row(q, keys, values, 0.25 * i as f64))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    for (i, row) in threaded.iter().enumerate() {
        let scale = 0.25 * (i + 1) as f64;
        assert_eq!(
            *row,
            tessera_reference::attention_row(&q, &keys, &values, scale)
        );
    }
}
