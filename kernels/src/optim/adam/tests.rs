//! Adam's tests: the step, both hypergradient passes and their lanes against scalar references.

use super::lanes::AdamHyperInputs;
use super::scalars::*;
use super::*;
use crate::simd::available_backends;
use crate::Error;

/// The exact pass's five sums by a plain scalar loop, each term added in `f64`; `None` when a
/// gradient is not finite: the reference of the lane pass.
fn scalar_sums(
    last: &HyperScalars,
    params: &[f32],
    grads: &[f32],
    [m, v, prev]: [&[f32]; 3],
) -> Option<[f64; 5]> {
    let mut sums = [0.0f64; 5];
    let weights = params.iter().chain(core::iter::repeat(&0.0));
    for ((((&g, &m), &v), &p), &w) in grads.iter().zip(m).zip(v).zip(prev).zip(weights) {
        if !g.is_finite() {
            return None;
        }
        let terms = adam_hyper_terms(last, [g, m, libm::sqrtf(v), v, p, w]);
        for (s, t) in sums.iter_mut().zip(terms) {
            *s += t as f64;
        }
    }
    Some(sums)
}

/// The exact pass on `backend` (which this CPU has).
fn lane_sums(
    backend: Backend,
    last: &HyperScalars,
    params: &[f32],
    grads: &[f32],
    [m, v, prev]: [&[f32]; 3],
) -> Option<[f64; 5]> {
    let x = AdamHyperInputs {
        grads,
        m,
        v,
        prev,
        params,
    };
    adam_hyper_sums(backend, last, x).expect("available backend")
}

/// Adam in f64, written from the formula in the docs, independent of the fused loop.
fn adam_f64(cfg: &AdamConfig, t: u32, p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
    let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
    let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
    for ((p, g), (m, v)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        let lr = cfg.lr as f64;
        *p = *p * (1.0 - lr * cfg.weight_decay as f64)
            - lr / c1 * *m / ((*v / c2).sqrt() + cfg.eps as f64);
    }
}

#[test]
fn matches_f64_formula_over_steps() {
    let n = 37;
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let mut p: alloc_free::Buf = alloc_free::Buf::new(|i| (i as f32 * 0.3).sin());
    let mut p64 = p.map(|x| x as f64);
    let (mut m, mut v) = (alloc_free::Buf::zero(), alloc_free::Buf::zero());
    let (mut m64, mut v64) = ([0.0f64; 64], [0.0f64; 64]);
    for t in 1..=20u32 {
        let g = alloc_free::Buf::new(|i| ((i as f32 + 1.0) * t as f32 * 0.7).cos());
        adam_step(
            &cfg,
            t,
            &mut p.0[..n],
            &g.0[..n],
            &mut m.0[..n],
            &mut v.0[..n],
        )
        .unwrap();
        let g64 = g.map(|x| x as f64);
        adam_f64(
            &cfg,
            t,
            &mut p64[..n],
            &g64[..n],
            &mut m64[..n],
            &mut v64[..n],
        );
    }
    for (i, (&got, &want)) in p.0[..n].iter().zip(&p64[..n]).enumerate() {
        let err = (got as f64 - want).abs();
        assert!(err <= 1e-5 * want.abs().max(1.0), "i {i}: {got} vs {want}");
    }
}

/// With `lr weight_decay` near 1 the decay factor `1 - lr weight_decay` is nearly all
/// cancellation: the decayed weight is within two roundings of its `f64` value only when the factor
/// is rounded once (not `1 - fl(lr weight_decay)`, off by up to `u` absolute). A small step
/// (first moment near 0, second moment large) leaves the decayed weight visible in the update.
#[test]
fn decay_near_one_is_rounded_once() {
    const U: f64 = 1.0 / 16_777_216.0;
    for (lr, weight_decay) in [(0.1f32, 10.0f32), (0.3, 3.333_333_3), (0.7, 1.428_571_4)] {
        let cfg = AdamConfig {
            lr,
            weight_decay,
            ..AdamConfig::default()
        };
        for backend in available_backends() {
            let p0: [f32; 19] = core::array::from_fn(|i| 1.0 + i as f32 * 0.37);
            let g: [f32; 19] = core::array::from_fn(|i| 1e-3 * (i as f32 - 9.0));
            let (mut p, mut m, mut v) = (p0, [0.0f32; 19], [1.0f32; 19]);
            adam_step_with(backend, &cfg, 1, &mut p, &g, &mut m, &mut v).unwrap();
            let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
            let decay = 1.0 - lr as f64 * weight_decay as f64;
            for i in 0..19 {
                // From the kernel's own moments: the step's roundings (about 6 u of it), the
                // decay factor's and the product's (2 u of the decayed weight), the difference.
                let den = (v[i] as f64 / (1.0 - b2)).sqrt() + cfg.eps as f64;
                let step = lr as f64 / (1.0 - b1) * m[i] as f64 / den;
                let decayed = p0[i] as f64 * decay;
                let want = decayed - step;
                let tol = 3.0 * U * decayed.abs() + 8.0 * U * step.abs() + U * want.abs();
                let err = (p[i] as f64 - want).abs();
                assert!(
                    err <= tol,
                    "{backend:?} lr {lr} wd {weight_decay} p[{i}]: {} vs {want:e} (err {err:e}, tol {tol:e})",
                    p[i]
                );
            }
        }
    }
}

/// The update on every backend this CPU has (the scalar lanes included) against the scalar
/// element formula, bit for bit, over whole chunks, a tail, and a block boundary.
#[test]
fn step_equals_the_scalar_formula_bit_for_bit() {
    let n = LANE_BLOCK + 37;
    let val = |i: usize, k: u32| ((i as f32 * 0.37 + k as f32).sin()) * 0.1;
    let mut p: [f32; LANE_BLOCK + 37] = core::array::from_fn(|i| val(i, 1));
    let g: [f32; LANE_BLOCK + 37] = core::array::from_fn(|i| val(i, 2));
    let mut m: [f32; LANE_BLOCK + 37] = core::array::from_fn(|i| val(i, 3));
    let mut v: [f32; LANE_BLOCK + 37] = core::array::from_fn(|i| val(i, 4).abs());
    let (p0, m0, v0) = (p, m, v);
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let s = AdamScalars::from_config(&cfg, 3);
    for backend in available_backends() {
        (p, m, v) = (p0, m0, v0);
        adam_step_with(backend, &cfg, 3, &mut p, &g, &mut m, &mut v).unwrap();
        for i in 0..n {
            let (pe, me, ve, _) = adam_element(&s, p0[i], g[i], m0[i], v0[i]);
            assert_eq!(p[i].to_bits(), pe.to_bits(), "p[{i}]");
            assert_eq!(m[i].to_bits(), me.to_bits(), "m[{i}]");
            assert_eq!(v[i].to_bits(), ve.to_bits(), "v[{i}]");
        }
    }
}

/// `powi` against `libm::pow` (within 1 ulp of the exact power) for the decay rates and
/// step numbers Adam meets, through underflow: within `(t + 2) u` relative, and the bias
/// correction `1 - b^t` within `2e-9` relative.
#[test]
fn powi_matches_pow() {
    for b in [
        0.5f32,
        0.9,
        0.99,
        0.999,
        0.9999,
        0.99999,
        1.0 - f32::EPSILON / 2.0,
    ] {
        let b = b as f64;
        let steps = (1..=2000u32).chain((1..40).map(|i| 1u32 << (i % 32) | i));
        for t in steps.chain([u32::MAX]) {
            let (got, want) = (powi(b, t), libm::pow(b, t as f64));
            let err = (got - want).abs();
            let tol = (t as f64 + 2.0) * (f64::EPSILON / 2.0) * want + f64::MIN_POSITIVE;
            assert!(err <= tol, "{b}^{t}: {got:e} vs {want:e}");
            let bc_err = ((1.0 - got) - (1.0 - want)).abs() / (1.0 - want);
            assert!(bc_err <= 2e-9, "1 - {b}^{t}: relative error {bc_err:e}");
        }
    }
}

/// The lagged pass (SIMD where this CPU has it) against its scalar element: the same new
/// `p`, `m`, `sqrt(v)` and saved gradient bit for bit, over two blocks and a tail, with and
/// without weight decay, some `sqrt(v) = 0`; the sums within 20 u of their scale (the SIMD
/// pass adds each product with a fused multiply-add and sums 16 per lane in `f32`).
#[test]
fn lagged_pass_equals_its_scalar_element() {
    // Interpreted under Miri: a tail and a few lane blocks of the scalar fallback suffice.
    const N: usize = if cfg!(miri) {
        16 * 3 + 5
    } else {
        2 * LANE_BLOCK + 37
    };
    let val = |i: usize, k: u32| ((i as f32 * 0.37 + k as f32).sin()) * 0.1;
    for wd in [0.0, 0.01] {
        let last = AdamConfig {
            weight_decay: wd,
            ..AdamConfig::default()
        };
        let now = AdamConfig {
            lr: 2e-3,
            beta1: 0.8,
            ..last
        };
        let (ls, ns) = (
            HyperScalars::new(&last, 4),
            AdamScalars::from_config(&now, 5),
        );
        let mut p: [f32; N] = core::array::from_fn(|i| val(i, 1));
        let g: [f32; N] = core::array::from_fn(|i| val(i, 2));
        let mut m: [f32; N] = core::array::from_fn(|i| val(i, 3));
        let mut root: [f32; N] = core::array::from_fn(|i| val(i, 4).abs());
        let mut prev: [f32; N] = core::array::from_fn(|i| val(i, 5));
        for i in (0..N).step_by(97) {
            (m[i], root[i], prev[i]) = (1e-30, 0.0, 0.0); // v underflowed, m did not
        }
        let (p0, m0, r0, q0) = (p, m, root, prev);
        for backend in available_backends() {
            (p, m, root, prev) = (p0, m0, r0, q0);
            let sums = adam_fused_loop(
                backend,
                &ls,
                &ns,
                wd != 0.0,
                &mut p,
                &g,
                [&mut m, &mut root, &mut prev],
                nowhere(),
            )
            .expect("available backend");
            let (mut want, mut scale) = ([0.0f64; 5], [0.0f64; 5]);
            for i in 0..N {
                let w = if wd != 0.0 { p0[i] } else { 0.0 };
                let (new, t) = adam_lagged_element(&ls, &ns, [p0[i], g[i], m0[i], r0[i], q0[i], w]);
                assert_eq!(p[i].to_bits(), new[0].to_bits(), "p[{i}]");
                assert_eq!(m[i].to_bits(), new[1].to_bits(), "m[{i}]");
                assert_eq!(root[i].to_bits(), new[2].to_bits(), "root[{i}]");
                assert_eq!(prev[i].to_bits(), g[i].to_bits(), "prev[{i}]");
                for c in 0..5 {
                    want[c] += t[c] as f64;
                    scale[c] += (t[c] as f64).abs();
                }
            }
            for c in 0..5 {
                let err = (sums[c] - want[c]).abs();
                assert!(
                    err <= 20.0 * f32::EPSILON as f64 / 2.0 * scale[c],
                    "sum {c}: {err:e}"
                );
            }
            assert!(scale[..4].iter().all(|&s| s > 0.0));
            assert_eq!(scale[4] > 0.0, wd != 0.0);
        }
    }
}

#[test]
fn exact_pass_sums_match_the_scalar_pass() {
    // The exact schedule's read-only pass on the SIMD backend (where there is one) against
    // the scalar pass over the same state, with and without the weight term, and its
    // finiteness check in a chunk and in the tail.
    const N: usize = 3 * 16 * 16 + 21;
    let val = |i: usize, k: u32| ((i as f32 * 0.61 + k as f32).sin()) * 0.1;
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let last = HyperScalars::new(&cfg, 3);
    let p: [f32; N] = core::array::from_fn(|i| val(i, 1));
    let mut g: [f32; N] = core::array::from_fn(|i| val(i, 2));
    let mut m: [f32; N] = core::array::from_fn(|i| val(i, 3));
    let mut v: [f32; N] = core::array::from_fn(|i| val(i, 4).abs() * 0.01);
    let mut prev: [f32; N] = core::array::from_fn(|i| val(i, 5));
    for i in (0..N).step_by(89) {
        (m[i], v[i], prev[i]) = (1e-30, 0.0, 0.0);
    }
    for params in [&p[..], &[]] {
        let want = scalar_sums(&last, params, &g, [&m, &v, &prev]).expect("finite");
        for backend in available_backends() {
            let got = lane_sums(backend, &last, params, &g, [&m, &v, &prev]).expect("finite");
            let scale = |c: usize| -> f64 {
                let w = |i: usize| if params.is_empty() { 0.0 } else { p[i] };
                (0..N)
                    .map(|i| {
                        let terms = [g[i], m[i], libm::sqrtf(v[i]), v[i], prev[i], w(i)];
                        adam_hyper_terms(&last, terms)[c].abs() as f64
                    })
                    .sum()
            };
            for c in 0..5 {
                let err = (got[c] - want[c]).abs();
                assert!(
                    err <= 20.0 * f32::EPSILON as f64 / 2.0 * scale(c),
                    "sum {c}: {err:e}"
                );
            }
            assert_eq!(want[4] == 0.0, params.is_empty());
        }
    }
    for at in [5, N - 2] {
        let keep = g[at];
        g[at] = f32::NAN;
        assert_eq!(scalar_sums(&last, &[], &g, [&m, &v, &prev]), None);
        for backend in available_backends() {
            assert_eq!(lane_sums(backend, &last, &[], &g, [&m, &v, &prev]), None);
        }
        g[at] = keep;
    }
}

#[test]
fn non_finite_gradient_modifies_nothing() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut p = [1.0f32, 2.0, 3.0];
        let mut g = [0.1f32, 0.2, 0.3];
        g[2] = bad;
        let (mut m, mut v) = ([0.5f32; 3], [0.25f32; 3]);
        let r = adam_step(&AdamConfig::default(), 3, &mut p, &g, &mut m, &mut v);
        assert_eq!(r, Err(Error::NonFinite("grads")));
        assert_eq!((p, m, v), ([1.0, 2.0, 3.0], [0.5; 3], [0.25; 3]));
    }
}

#[test]
fn bad_arguments_are_errors() {
    let (mut p, g, mut m, mut v) = ([0.0f32; 4], [0.0f32; 4], [0.0f32; 4], [0.0f32; 4]);
    let cfg = AdamConfig::default();
    assert_eq!(
        adam_step(&cfg, 0, &mut p, &g, &mut m, &mut v),
        Err(Error::BadHyperparameter("t"))
    );
    let bad = AdamConfig { beta1: 1.0, ..cfg };
    assert!(adam_step(&bad, 1, &mut p, &g, &mut m, &mut v).is_err());
    let bad = AdamConfig { eps: 0.0, ..cfg };
    assert!(adam_step(&bad, 1, &mut p, &g, &mut m, &mut v).is_err());
    assert!(matches!(
        adam_step(&cfg, 1, &mut p, &g[..3], &mut m, &mut v),
        Err(Error::LengthMismatch { what: "grads", .. })
    ));
}

/// Fixed 64-element buffers: the kernel crate's tests run without `alloc`.
mod alloc_free {
    pub struct Buf(pub [f32; 64]);
    impl Buf {
        pub fn new(f: impl Fn(usize) -> f32) -> Self {
            Buf(core::array::from_fn(f))
        }
        pub fn zero() -> Self {
            Buf([0.0; 64])
        }
        pub fn map(&self, f: impl Fn(f32) -> f64) -> [f64; 64] {
            core::array::from_fn(|i| f(self.0[i]))
        }
    }
}
