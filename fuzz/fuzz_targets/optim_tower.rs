//! Hyperoptimizer towers: any base and stack of SGD/momentum/Adam levels (valid or not), both
//! schedules, both `Learn` modes, a few steps of arbitrary gradients (NaN and infinities too),
//! on every backend. Asserts, step by step:
//! - `Err` changes nothing: weights, state, the `f32`/`bf16` copy and the tower itself;
//! - a tower of height 0 is the plain optimizer bit for bit, on either schedule;
//! - with a frozen top (learning rate 0 everywhere above the base, exact schedule, all
//!   coordinates learned), the weights follow the plain optimizer bit for bit;
//! - every available backend takes the first step with the same bits (later steps may differ
//!   within the hypergradient sums' documented error);
//! - `step_mixed` takes `step`'s bits and writes their rounding into the copy.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{assert_same_up_to_nan, assert_untouched, available, backend, bits, Values};
use tessera_kernels::optim::*;
use tessera_kernels::{bf16, Element, Error};

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Level {
    kind: u8,
    lr: u8,
    beta1: u8,
    beta2: u8,
    weight_decay: u8,
}

const LR: [f32; 7] = [0.0, 1e-3, 1e-2, 0.1, 1.0, -1e-3, f32::NAN];
const BETA: [f32; 5] = [0.9, 0.999, 0.0, 0.5, 1.0];
const WD: [f32; 4] = [0.0, 0.01, 0.1, 10.0];

impl Level {
    fn optimizer(self, frozen: bool) -> Optimizer {
        let lr = if frozen {
            0.0
        } else {
            LR[self.lr as usize % LR.len()]
        };
        match self.kind % 3 {
            0 => Optimizer::Sgd(SgdConfig { lr }),
            1 => Optimizer::Momentum(MomentumConfig {
                lr,
                momentum: BETA[self.beta1 as usize % 5],
            }),
            _ => Optimizer::Adam(AdamConfig {
                lr,
                beta1: BETA[self.beta1 as usize % 5],
                beta2: BETA[self.beta2 as usize % 5],
                eps: 1e-8,
                weight_decay: WD[self.weight_decay as usize % 4],
            }),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    base: Level,
    hypers: Vec<Level>,
    frozen: bool,
    lagged: bool,
    learning_rate_only: bool,
    n: u8,
    steps: u8,
    backend: u8,
    bf16_copy: bool,
    /// Step `k` (if any) gets a gradient one short, or a NaN, or an infinity.
    bad_step: Option<(u8, u8)>,
    values: Values,
    words: Vec<u32>,
}

fn plain_step(
    opt: &Optimizer,
    t: u32,
    p: &mut [f32],
    g: &[f32],
    state: &mut [f32],
) -> Result<(), Error> {
    match opt {
        Optimizer::Sgd(c) => sgd_step(c, p, g),
        Optimizer::Momentum(c) => momentum_step(c, p, g, state),
        Optimizer::Adam(c) => {
            let (m, v) = state.split_at_mut(p.len());
            adam_step(c, t, p, g, m, v)
        }
    }
}

/// The tower's fields print the same (`==` fails on the NaN a refused hypergradient leaves).
fn assert_same_tower(after: &Tower, before: &Tower, err: &Error) {
    let (a, b) = (format!("{after:?}"), format!("{before:?}"));
    assert_eq!(a, b, "the tower changed although the step returned {err:?}");
}

fn build(inp: &Input) -> Result<Tower, Error> {
    let mut tower: Tower = Tower::new(inp.base.optimizer(false))?;
    if inp.lagged {
        tower = tower.with_schedule(Schedule::Lagged)?;
    }
    if inp.learning_rate_only {
        tower = tower.with_learned(Learn::LearningRate)?;
    }
    for h in inp.hypers.iter().take(5) {
        tower = tower.stacked(h.optimizer(inp.frozen))?;
    }
    Ok(tower)
}

fn run<E: Element>(inp: &Input) {
    let Ok(mut tower) = build(inp) else { return };
    let base = inp.base.optimizer(false);
    let n = 1 + inp.n as usize % 48;
    let Ok(state_len) = tower.state_len(n) else {
        return;
    };
    let draw = |salt: u32| {
        let w: Vec<u32> = inp.words.iter().map(|x| x.rotate_left(salt)).collect();
        inp.values.f32s(&w, n)
    };
    let mut w = draw(0);
    let mut state = vec![0.0f32; state_len];
    let mut copy = vec![E::from_f32(0.0); n];
    // The plain optimizer beside it (height 0 or frozen top).
    let (mut plain_w, mut plain_state) = (w.clone(), vec![0.0f32; n * base.state_per_param(false)]);
    let mut plain_t = 0u32;
    let follows_plain =
        tower.height() == 0 || (inp.frozen && !inp.lagged && !inp.learning_rate_only);
    let chosen = backend(inp.backend);
    for k in 0..(1 + inp.steps % 8) {
        let mut g = draw(5 + 7 * k as u32);
        if let Some((at, how)) = inp.bad_step {
            if at % 8 == k {
                match how % 3 {
                    0 => drop(g.pop()),
                    1 => g[how as usize % n] = f32::NAN,
                    _ => g[how as usize % n] = f32::INFINITY,
                }
            }
        }
        let (before_tower, before_w, before_state) = (tower, bits(&w), bits(&state));
        // The chosen backend first: refused (nothing changed) unless it runs here.
        if !chosen.is_available() {
            let r = tower.step_with(chosen, &mut w, &g, &mut state);
            let e = r.expect_err("an unavailable backend ran");
            assert_same_tower(&tower, &before_tower, &e);
            assert_untouched("weights", &before_w, &w, &e);
        }
        // Every available backend from the same point; the first step must agree bit for bit.
        let mut results = Vec::new();
        for be in available() {
            let (mut t2, mut w2, mut s2) = (before_tower, w.clone(), state.clone());
            let r = t2.step_with(be, &mut w2, &g, &mut s2);
            if let Err(e) = &r {
                assert_same_tower(&t2, &before_tower, e);
                assert_untouched("weights", &before_w, &w2, e);
                assert_untouched("state", &before_state, &s2, e);
            }
            results.push((be, r.is_ok(), t2, w2, s2));
        }
        let (_, ok, t_auto, w_auto, s_auto) = results
            .last()
            .cloned()
            .expect("generic is always available");
        for (be, ok2, _, w2, s2) in &results {
            assert_eq!(
                *ok2, ok,
                "{be:?} and the best backend disagree on accepting step {k}"
            );
            if k == 0 || tower.height() == 0 {
                assert_same_up_to_nan(&format!("weights on {be:?}, step {k}"), w2, &w_auto);
                assert_same_up_to_nan(&format!("state on {be:?}, step {k}"), s2, &s_auto);
            }
        }
        // The mixed step from the same point: the same bits, and the rounded copy.
        let (mut tm, mut wm, mut sm) = (before_tower, w.clone(), state.clone());
        let copy_before = bits(&copy);
        let rm = tm.step_mixed(&mut wm, &mut copy, &g, &mut sm);
        assert_eq!(
            rm.is_ok(),
            ok,
            "step_mixed and step disagree on accepting step {k}"
        );
        if ok {
            assert_eq!(
                bits(&wm),
                bits(&w_auto),
                "step_mixed master differs from step"
            );
            let rounded: Vec<E> = w_auto.iter().map(|&x| E::from_f32(x)).collect();
            assert_eq!(
                bits(&copy),
                bits(&rounded),
                "copy is not the rounded master"
            );
        } else {
            assert_untouched("copy", &copy_before, &copy, &rm.unwrap_err());
        }
        if !ok {
            // A refused gradient changed nothing: carry on from the same point.
            continue;
        }
        (tower, w, state) = (t_auto, w_auto, s_auto);
        if follows_plain {
            plain_t += 1;
            plain_step(&base, plain_t, &mut plain_w, &g, &mut plain_state)
                .expect("the plain step accepts what the tower accepted");
            assert_eq!(
                bits(&w),
                bits(&plain_w),
                "weights leave the plain optimizer at step {k}"
            );
            if tower.height() == 0 && !inp.lagged {
                assert_eq!(
                    bits(&state),
                    bits(&plain_state),
                    "state differs at step {k}"
                );
            }
        }
    }
}

fuzz_target!(|inp: Input| {
    if inp.bf16_copy {
        run::<bf16>(&inp)
    } else {
        run::<f32>(&inp)
    }
});
