//! Plain optimizer steps (SGD, momentum, Adam/AdamW), plain and mixed (`f32` master with a
//! `bf16`/`f32` copy), on every backend, with arbitrary hyperparameters, step numbers, lengths and
//! float bits. Asserts:
//! - `Err` changes nothing: parameters, state and copy keep their bits;
//! - every available backend gives the same bits (documented), and the chosen backend, when it
//!   cannot run here, is refused;
//! - a mixed step takes the plain step's bits and writes their rounding into the copy;
//! - for inputs of moderate range, the step is within a few roundings of the update formula in
//!   `f64` (bounds beside each check).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{
    assert_same_elements_up_to_nan, assert_same_up_to_nan, assert_untouched, available, backend,
    bits, Values,
};
use tessera_kernels::optim::*;
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Element, Error};

const U: f64 = 1.0 / 16_777_216.0;
const TINY: f64 = 1e-35;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Hyper {
    Pick(u8),
    Bits(u32),
}

impl Hyper {
    fn get(self, table: &[f32]) -> f32 {
        match self {
            Hyper::Pick(i) => table[i as usize % table.len()],
            Hyper::Bits(b) => f32::from_bits(b),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: u8,
    lr: Hyper,
    beta1: Hyper,
    beta2: Hyper,
    eps: Hyper,
    weight_decay: Hyper,
    t: u8,
    n: u8,
    backend: u8,
    bf16_copy: bool,
    /// One slice (params, grads, state 1, state 2, copy) one element short.
    short: Option<u8>,
    values: Values,
    words: Vec<u32>,
}

const LR: [f32; 6] = [0.0, 1e-3, 0.1, 1.0, -1.0, f32::NAN];
const BETA: [f32; 6] = [0.0, 0.5, 0.9, 0.999, 1.0, -0.1];
const EPS: [f32; 5] = [1e-8, 1e-3, 0.0, 1.0, f32::INFINITY];
const WD: [f32; 5] = [0.0, 0.01, 0.5, -0.1, 2.0];

#[derive(Clone, PartialEq)]
struct Slices {
    p: Vec<f32>,
    g: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

fn step(opt: &Optimizer, t: u32, be: Backend, s: &mut Slices) -> Result<(), Error> {
    match opt {
        Optimizer::Sgd(c) => sgd_step_with(be, c, &mut s.p, &s.g),
        Optimizer::Momentum(c) => momentum_step_with(be, c, &mut s.p, &s.g, &mut s.a),
        Optimizer::Adam(c) => adam_step_with(be, c, t, &mut s.p, &s.g, &mut s.a, &mut s.b),
    }
}

fn step_mixed<E: Element>(
    opt: &Optimizer,
    t: u32,
    be: Backend,
    s: &mut Slices,
    copy: &mut [E],
) -> Result<(), Error> {
    match opt {
        Optimizer::Sgd(c) => sgd_step_mixed_with(be, c, &mut s.p, copy, &s.g),
        Optimizer::Momentum(c) => momentum_step_mixed_with(be, c, &mut s.p, copy, &s.g, &mut s.a),
        Optimizer::Adam(c) => {
            adam_step_mixed_with(be, c, t, &mut s.p, copy, &s.g, &mut s.a, &mut s.b)
        }
    }
}

fn assert_same(what: &str, a: &Slices, b: &Slices, err: &dyn core::fmt::Debug) {
    for (name, x, y) in [
        ("params", &a.p, &b.p),
        ("state", &a.a, &b.a),
        ("state 2", &a.b, &b.b),
    ] {
        assert_untouched(&format!("{what} {name}"), &bits(x), y, err);
    }
}

/// The update formula in `f64` on the inputs, checked against the kernel's outputs.
fn check_formula(opt: &Optimizer, t: u32, before: &Slices, after: &Slices) {
    for i in 0..before.p.len() {
        let (p, g) = (before.p[i] as f64, before.g[i] as f64);
        let got = after.p[i] as f64;
        match opt {
            Optimizer::Sgd(c) => {
                // One product and one difference (or one FMA): 2 roundings.
                let step = c.lr as f64 * g;
                let tol = 2.0 * U * (p.abs() + step.abs()) + TINY;
                assert!(
                    (got - (p - step)).abs() <= tol,
                    "sgd p[{i}] {got:e} vs {:e}",
                    p - step
                );
            }
            Optimizer::Momentum(c) => {
                let b = c.momentum as f64 * before.a[i] as f64 + g;
                let b_got = after.a[i] as f64;
                let tol_b =
                    2.0 * U * ((c.momentum as f64 * before.a[i] as f64).abs() + g.abs()) + TINY;
                assert!(
                    (b_got - b).abs() <= tol_b,
                    "momentum b[{i}] {b_got:e} vs {b:e}"
                );
                // From the kernel's own b: one product, one difference.
                let step = c.lr as f64 * b_got;
                let tol = 2.0 * U * (p.abs() + step.abs()) + TINY;
                assert!(
                    (got - (p - step)).abs() <= tol,
                    "momentum p[{i}] {got:e} vs {:e}",
                    p - step
                );
            }
            Optimizer::Adam(c) => {
                let (b1, b2) = (c.beta1 as f64, c.beta2 as f64);
                let (m0, v0) = (before.a[i] as f64, before.b[i] as f64);
                let m = b1 * m0 + (1.0 - b1) * g;
                let v = b2 * v0 + (1.0 - b2) * g * g;
                let (m_got, v_got) = (after.a[i] as f64, after.b[i] as f64);
                // Two products and a sum (the `1 - beta` factors rounded once more): 4 roundings.
                let tol_m = 4.0 * U * ((b1 * m0).abs() + ((1.0 - b1) * g).abs()) + TINY;
                assert!((m_got - m).abs() <= tol_m, "adam m[{i}] {m_got:e} vs {m:e}");
                let tol_v = 5.0 * U * ((b2 * v0).abs() + ((1.0 - b2) * g * g).abs()) + TINY;
                assert!((v_got - v).abs() <= tol_v, "adam v[{i}] {v_got:e} vs {v:e}");
                // From the kernel's own m, v: bias corrections and the step scalars in f64 then
                // rounded (2 u), the square root, the sum with eps, the quotient and the products
                // (about 6 u relative to the step), the decay product and the difference.
                let c1 = 1.0 - b1.powi(t as i32);
                let c2 = 1.0 - b2.powi(t as i32);
                let den = v_got.sqrt() / c2.sqrt() + c.eps as f64;
                let step = c.lr as f64 / c1 * m_got / den;
                let decayed = p * (1.0 - c.lr as f64 * c.weight_decay as f64);
                let want = decayed - step;
                let tol = 16.0 * U * (decayed.abs() + step.abs()) + TINY;
                // An update beyond f32's range is ±inf in f32, as IEEE rounding gives.
                let overflows = want.abs() > f32::MAX as f64 * (1.0 + 16.0 * U);
                assert!(
                    (got - want).abs() <= tol
                        || (overflows && got.is_infinite() && got.signum() == want.signum()),
                    "adam p[{i}] {got:e} vs {want:e} (tol {tol:e})"
                );
            }
        }
    }
}

/// A mixed step on `be` takes the plain step's bits (`after`) and writes their rounding into the
/// copy; refused (a short copy), it changes nothing.
fn check_mixed<E: Element>(
    opt: &Optimizer,
    t: u32,
    be: Backend,
    before: &Slices,
    after: &Slices,
    copy_len: usize,
) {
    let n = before.p.len();
    let mut mixed = before.clone();
    let mut copy = vec![E::from_f32(f32::from_bits(0x7fa5_a5a5)); copy_len];
    let copy_before = bits(&copy);
    match step_mixed(opt, t, be, &mut mixed, &mut copy) {
        Ok(()) => {
            let what = format!("mixed master on {be:?} vs the plain step");
            assert_same_up_to_nan(&what, &mixed.p, &after.p);
            let rounded: Vec<E> = mixed.p.iter().map(|&x| E::from_f32(x)).collect();
            let what = format!("the copy on {be:?} vs the rounded master");
            assert_same_elements_up_to_nan(&what, &copy, &rounded);
        }
        Err(e) => {
            assert_ne!(
                copy_len, n,
                "mixed step on {be:?} refused what the plain step accepted: {e:?}"
            );
            assert_same(&format!("mixed on {be:?}"), before, &mixed, &e);
            assert_untouched("copy", &copy_before, &copy, &e);
        }
    }
}

fn run<E: Element>(inp: &Input) {
    let opt = match inp.kind % 3 {
        0 => Optimizer::Sgd(SgdConfig {
            lr: inp.lr.get(&LR),
        }),
        1 => Optimizer::Momentum(MomentumConfig {
            lr: inp.lr.get(&LR),
            momentum: inp.beta1.get(&BETA),
        }),
        _ => Optimizer::Adam(AdamConfig {
            lr: inp.lr.get(&LR),
            beta1: inp.beta1.get(&BETA),
            beta2: inp.beta2.get(&BETA),
            eps: inp.eps.get(&EPS),
            weight_decay: inp.weight_decay.get(&WD),
        }),
    };
    let t = inp.t as u32 % 40;
    let n = inp.n as usize % 80;
    let draw = |salt: u32| {
        let w: Vec<u32> = inp.words.iter().map(|x| x.rotate_left(salt)).collect();
        inp.values.f32s(&w, n)
    };
    let mut s = Slices {
        p: draw(0),
        g: draw(8),
        a: draw(16),
        b: draw(24),
    };
    // Adam's second moment is a running mean of squares: non-negative in any real state.
    s.b.iter_mut().for_each(|x| *x = x.abs());
    if opt.state_per_param(false) < 2 {
        s.b.clear();
    }
    if opt.state_per_param(false) < 1 {
        s.a.clear();
    }
    let mut copy_len = n;
    match inp.short.map(|i| i % 5) {
        Some(0) => drop(s.p.pop()),
        Some(1) => drop(s.g.pop()),
        Some(2) => drop(s.a.pop()),
        Some(3) => drop(s.b.pop()),
        Some(_) => copy_len = n.saturating_sub(1),
        None => {}
    }
    let chosen = backend(inp.backend);
    let before = s.clone();
    let mut first: Option<Slices> = None;
    for be in core::iter::once(chosen).chain(available()) {
        let mut mine = before.clone();
        match step(&opt, t, be, &mut mine) {
            Err(e) => {
                assert_same(&format!("{} on {be:?}", opt.name()), &before, &mine, &e);
                if be != chosen {
                    // Available backends agree on refusing as on accepting.
                    assert!(
                        first.is_none(),
                        "{be:?} refused what another backend accepted: {e:?}"
                    );
                }
            }
            Ok(()) => {
                assert!(be.is_available(), "{be:?} is not available here but ran");
                match &first {
                    None => first = Some(mine),
                    Some(f) => {
                        for (name, x, y) in [
                            ("params", &f.p, &mine.p),
                            ("state", &f.a, &mine.a),
                            ("state 2", &f.b, &mine.b),
                        ] {
                            let what = format!("{} {name} on {be:?}", opt.name());
                            assert_same_up_to_nan(&what, x, y);
                        }
                    }
                }
            }
        }
    }
    let Some(after) = first else {
        return;
    };
    // Mixed, on every available backend: the plain step's bits, and their rounding in the copy.
    for be in available() {
        check_mixed::<E>(&opt, t, be, &before, &after, copy_len);
    }
    let moderate = matches!(inp.values, Values::Unit | Values::Wide);
    if moderate && opt.lr().abs() <= 1.0 {
        check_formula(&opt, t, &before, &after);
    }
}

fuzz_target!(|inp: Input| {
    if inp.bf16_copy {
        run::<bf16>(&inp)
    } else {
        run::<f32>(&inp)
    }
});
