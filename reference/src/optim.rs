//! One optimizer step, and the hypergradients of a tower of them, at several hundred bits.
//!
//! A hypergradient is the derivative of `L = next_grads · w_{k+1}` (the loss gradient at the new
//! weights dotted with the new weights) with respect to the learned coordinates of the
//! hyperparameters one step used, with that step's inputs (weights, gradient, optimizer state)
//! held constant: the "detach" of *Gradient Descent: The Ultimate Optimizer*. For a tower, the
//! coordinates of the top learned level move the hyperparameters of the level below through that
//! level's step, and so on down to the weights.
//!
//! The derivative is a central finite difference `(L(+h) - L(-h)) / 2h` with `h = 2^-100`,
//! every step evaluated in [`PRECISION`]-bit arithmetic (`sqrt`, `exp`, `ln` included): the
//! truncation error is `O(h^2)`, about `2^-200` relative, and the rounding error about
//! `2^-(PRECISION - 100)`, so the result, rounded to `f64`, is the exact derivative for any
//! practical purpose. It shares no formula with the kernels' closed forms: it only knows how to
//! take a step.
//!
//! Learned coordinates: the learning rate itself, and `atanh(2 beta - 1) = logit(beta) / 2` of each decay rate (`momentum`,
//! `beta1`, `beta2`). A level's hyperparameters at the base point are exactly the values the
//! kernel used ([`StepRecord`]); a change `d` of their coordinates gives `lr + d` and
//! `(tanh(atanh(2 beta - 1) + d) + 1) / 2 = sigmoid(logit(beta) + 2 d)` (gdtuo's parametrisation).
//!
//! [`hypergradient_scale`] gives the yardstick for comparing a kernel's `f32` closed form with the
//! result: the same sums with every term replaced by the sum of the magnitudes of its operands
//! (the condition of the computation), so that a tolerance relative to it is a rounding error
//! bound rather than a guess.
//!
//! ```
//! use tessera_reference::optim::{hypergradient, StepRecord};
//! // SGD: d/d lr of next · (w - lr g) is -next · g.
//! let step = StepRecord::sgd(0.1, 1, vec![1.0, 2.0], vec![0.5, 0.25]);
//! let h = hypergradient(&[step], &[2.0, 4.0]);
//! assert_eq!(h, vec![-(2.0 * 0.5 + 4.0 * 0.25)]);
//! ```

use astro_float::{BigFloat, Consts, RoundingMode};

use crate::bigfloat::{from_f64, to_f64};

/// Bits of every intermediate value.
pub const PRECISION: usize = 512;
/// `h = 2^H_EXPONENT` of the central difference.
const H_EXPONENT: i32 = -100;
const RM: RoundingMode = RoundingMode::ToEven;

/// The optimizer a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// `w <- w - lr g`; learned: `lr`.
    Sgd,
    /// `b <- momentum b + g; w <- w - lr b`; learned: `lr`, `atanh(2 momentum - 1)`.
    Momentum,
    /// Adam/AdamW with bias corrections; learned: `lr`, `atanh(2 beta1 - 1)`, `atanh(2 beta2 - 1)`.
    Adam,
}

impl OptimizerKind {
    /// Number of learned coordinates.
    pub fn learned_count(self) -> usize {
        match self {
            OptimizerKind::Sgd => 1,
            OptimizerKind::Momentum => 2,
            OptimizerKind::Adam => 3,
        }
    }
}

/// One step as a kernel took it: exact copies of the `f32` values it used.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// `momentum` (Momentum) or `beta1` (Adam); unused by SGD.
    pub decay1: f64,
    /// `beta2` (Adam).
    pub decay2: f64,
    /// Adam's `eps`.
    pub eps: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// The step's 1-based number (Adam's bias corrections).
    pub t: u32,
    /// Parameters before the step.
    pub params: Vec<f64>,
    /// The gradient the step was given.
    pub grads: Vec<f64>,
    /// State before the step: the momentum velocity or Adam's `m` (empty for SGD).
    pub first: Vec<f64>,
    /// State before the step: Adam's `v` (empty otherwise).
    pub second: Vec<f64>,
}

impl StepRecord {
    /// An SGD step.
    pub fn sgd(lr: f64, t: u32, params: Vec<f64>, grads: Vec<f64>) -> Self {
        StepRecord {
            kind: OptimizerKind::Sgd,
            lr,
            decay1: 0.0,
            decay2: 0.0,
            eps: 0.0,
            weight_decay: 0.0,
            t,
            params,
            grads,
            first: Vec::new(),
            second: Vec::new(),
        }
    }
}

/// Arithmetic at [`PRECISION`] bits.
struct Big {
    cc: Consts,
}

impl Big {
    fn new() -> Self {
        Big {
            cc: Consts::new().expect("astro-float constants cache"),
        }
    }
    fn num(&self, x: f64) -> BigFloat {
        assert!(x.is_finite(), "non-finite input {x}");
        from_f64(x)
    }
    fn add(&self, a: &BigFloat, b: &BigFloat) -> BigFloat {
        a.add(b, PRECISION, RM)
    }
    fn sub(&self, a: &BigFloat, b: &BigFloat) -> BigFloat {
        a.sub(b, PRECISION, RM)
    }
    fn mul(&self, a: &BigFloat, b: &BigFloat) -> BigFloat {
        a.mul(b, PRECISION, RM)
    }
    fn div(&self, a: &BigFloat, b: &BigFloat) -> BigFloat {
        a.div(b, PRECISION, RM)
    }
    fn sqrt(&self, a: &BigFloat) -> BigFloat {
        if a.is_zero() {
            return a.clone();
        }
        a.sqrt(PRECISION, RM)
    }
    fn one(&self) -> BigFloat {
        self.num(1.0)
    }
    /// `1 / (1 + e^-z)`.
    fn sigmoid(&mut self, z: &BigFloat) -> BigFloat {
        let e = z.neg().exp(PRECISION, RM, &mut self.cc);
        self.div(&self.one(), &self.add(&self.one(), &e))
    }
    /// `ln(p / (1 - p))`.
    fn logit(&mut self, p: &BigFloat) -> BigFloat {
        let ratio = self.div(p, &self.sub(&self.one(), p));
        ratio.ln(PRECISION, RM, &mut self.cc)
    }
    fn pow(&self, a: &BigFloat, n: u32) -> BigFloat {
        a.powi(n as usize, PRECISION, RM)
    }
}

/// A level's hyperparameters `[lr, decay1, decay2]` as big numbers.
type Hyper = [BigFloat; 3];

/// The step of `rec` with hyperparameters `hp`: the new parameters.
fn step(big: &Big, rec: &StepRecord, hp: &Hyper) -> Vec<BigFloat> {
    let [lr, d1, d2] = hp;
    let n = rec.params.len();
    assert_eq!(rec.grads.len(), n, "grads length");
    match rec.kind {
        OptimizerKind::Sgd => (0..n)
            .map(|i| {
                big.sub(
                    &big.num(rec.params[i]),
                    &big.mul(lr, &big.num(rec.grads[i])),
                )
            })
            .collect(),
        OptimizerKind::Momentum => {
            assert_eq!(rec.first.len(), n, "velocity length");
            (0..n)
                .map(|i| {
                    let b = big.add(&big.mul(d1, &big.num(rec.first[i])), &big.num(rec.grads[i]));
                    big.sub(&big.num(rec.params[i]), &big.mul(lr, &b))
                })
                .collect()
        }
        OptimizerKind::Adam => {
            assert!(
                rec.first.len() == n && rec.second.len() == n,
                "m, v lengths"
            );
            let one = big.one();
            let c1 = big.sub(&one, &big.pow(d1, rec.t));
            let c2 = big.sub(&one, &big.pow(d2, rec.t));
            let eps = big.num(rec.eps);
            let decay = big.sub(&one, &big.mul(lr, &big.num(rec.weight_decay)));
            (0..n)
                .map(|i| {
                    let g = big.num(rec.grads[i]);
                    let m = big.add(
                        &big.mul(d1, &big.num(rec.first[i])),
                        &big.mul(&big.sub(&one, d1), &g),
                    );
                    let v = big.add(
                        &big.mul(d2, &big.num(rec.second[i])),
                        &big.mul(&big.sub(&one, d2), &big.mul(&g, &g)),
                    );
                    let denom = big.add(&big.sqrt(&big.div(&v, &c2)), &eps);
                    let update = big.div(&big.mul(lr, &big.div(&m, &c1)), &denom);
                    big.sub(&big.mul(&big.num(rec.params[i]), &decay), &update)
                })
                .collect()
        }
    }
}

/// The hyperparameters of `rec` moved by the coordinate changes `delta`.
fn moved(big: &mut Big, rec: &StepRecord, delta: &[BigFloat]) -> Hyper {
    let zero = big.num(0.0);
    let d = |c: usize| delta.get(c).cloned().unwrap_or_else(|| zero.clone());
    let lr = big.add(&big.num(rec.lr), &d(0));
    let k = rec.kind.learned_count();
    let d1 = if k >= 2 {
        moved_decay(big, rec.decay1, &d(1))
    } else {
        big.num(rec.decay1)
    };
    let d2 = if k >= 3 {
        moved_decay(big, rec.decay2, &d(2))
    } else {
        big.num(rec.decay2)
    };
    [lr, d1, d2]
}

/// `sigmoid(logit(x) + 2 d)`, that is `(tanh(atanh(2 x - 1) + d) + 1) / 2`: exactly `x` when `d = 0`.
fn moved_decay(big: &mut Big, x: f64, d: &BigFloat) -> BigFloat {
    if d.is_zero() {
        return big.num(x);
    }
    let z = big.logit(&big.num(x));
    let twice = big.add(d, d);
    big.sigmoid(&big.add(&z, &twice))
}

/// Runs the chain with the top level's coordinates moved by `delta`; returns the new weights and
/// each level's output.
fn run_chain(
    big: &mut Big,
    chain: &[StepRecord],
    delta: &[BigFloat],
    base: Option<&[Vec<BigFloat>]>,
) -> Vec<Vec<BigFloat>> {
    let top = chain.len() - 1;
    let mut outs = vec![Vec::new(); chain.len()];
    let hp = moved(big, &chain[top], delta);
    outs[top] = step(big, &chain[top], &hp);
    for j in (0..top).rev() {
        // Level j + 1's output is level j's new coordinates: their change from the base point
        // moves level j's hyperparameters.
        let change: Vec<BigFloat> = match base {
            Some(b) => outs[j + 1]
                .iter()
                .zip(&b[j + 1])
                .map(|(x, x0)| big.sub(x, x0))
                .collect(),
            None => vec![big.num(0.0); outs[j + 1].len()],
        };
        assert_eq!(
            change.len(),
            chain[j].kind.learned_count(),
            "level {j}: coordinates"
        );
        let hp = moved(big, &chain[j], &change);
        outs[j] = step(big, &chain[j], &hp);
    }
    outs
}

/// The hypergradient of the top level of `chain` (one value per learned coordinate of
/// `chain[last]`), rounded to `f64`.
///
/// `chain[0]` is the step that updated the weights; `chain[j]` (`j >= 1`) is the step level `j`
/// took at the same time on the coordinates of level `j - 1` (its parameters), with the
/// hypergradient it was given as its gradient. `next_grads` is the loss gradient at the new
/// weights. A chain of one step gives the base level's hypergradient (height 1); of two, the
/// hypergradient of level 1 (height 2).
pub fn hypergradient(chain: &[StepRecord], next_grads: &[f64]) -> Vec<f64> {
    assert!(!chain.is_empty(), "empty chain");
    let mut big = Big::new();
    let zero = vec![big.num(0.0); 3];
    let base = run_chain(&mut big, chain, &zero, None);
    assert_eq!(base[0].len(), next_grads.len(), "next_grads length");
    let h = from_f64(2f64.powi(H_EXPONENT));
    let objective = |big: &mut Big, delta: &[BigFloat]| {
        let w = run_chain(big, chain, delta, Some(&base)).swap_remove(0);
        w.iter().zip(next_grads).fold(big.num(0.0), |acc, (w, g)| {
            big.add(&acc, &big.mul(w, &big.num(*g)))
        })
    };
    let top = chain.len() - 1;
    (0..chain[top].kind.learned_count())
        .map(|c| {
            let mut plus = zero.clone();
            let mut minus = zero.clone();
            plus[c] = h.clone();
            minus[c] = h.neg();
            let (up, down) = (objective(&mut big, &plus), objective(&mut big, &minus));
            let diff = big.sub(&up, &down);
            to_f64(&big.div(&diff, &big.add(&h, &h)), false)
        })
        .collect()
}

/// Per-element operand magnitudes of the derivative of one step's output with respect to each
/// learned coordinate, in `f64` (a yardstick, not a result).
fn magnitudes(rec: &StepRecord) -> Vec<[f64; 3]> {
    let n = rec.params.len();
    let (lr, d1, d2) = (rec.lr, rec.decay1, rec.decay2);
    match rec.kind {
        OptimizerKind::Sgd => rec.grads.iter().map(|g| [g.abs(), 0.0, 0.0]).collect(),
        OptimizerKind::Momentum => (0..n)
            .map(|i| {
                let g = rec.grads[i].abs();
                let b = d1 * rec.first[i].abs() + g;
                // The factor 2: d mu / d z = 2 mu (1 - mu) for mu = (tanh z + 1) / 2.
                [b, 2.0 * lr.abs() * (1.0 - d1) * (b + g), 0.0]
            })
            .collect(),
        OptimizerKind::Adam => {
            let t = rec.t as i32;
            let c1 = 1.0 / (1.0 - d1.powi(t));
            let cb2 = 1.0 / (1.0 - d2.powi(t));
            let ib = cb2.sqrt();
            let step = (lr * c1).abs();
            let decay = (1.0 - lr * rec.weight_decay).abs();
            // d beta / d z = 2 beta (1 - beta) for beta = (tanh z + 1) / 2: the factors 2.
            let p1 = 2.0 * step * (1.0 - d1);
            let p2 = 2.0 * step * t as f64 * d1.powi(t) * (1.0 - d1) * c1;
            let q1 = step * (1.0 - d2) * ib;
            let q2 = step * t as f64 * d2.powi(t) * (1.0 - d2) * cb2 * ib;
            (0..n)
                .map(|i| {
                    let g = rec.grads[i];
                    let m = d1 * rec.first[i].abs() + (1.0 - d1) * g.abs();
                    let v = d2 * rec.second[i] + (1.0 - d2) * g * g;
                    let sv = v.sqrt();
                    let r = 1.0 / (sv * ib + rec.eps);
                    let q = m * r;
                    let lr_term =
                        c1 * q + rec.weight_decay * (rec.params[i].abs() + step * q / decay);
                    let b1_term = r * (p1 * (m + g.abs()) + p2 * m);
                    let first = if sv > 0.0 { q1 * (v + g * g) / sv } else { 0.0 };
                    let b2_term = q * r * (first + q2 * sv);
                    [lr_term, b1_term, b2_term]
                })
                .collect()
        }
    }
}

/// The yardstick of [`hypergradient`] (one value per learned coordinate of the top level): the
/// same sums over operand magnitudes. For one step, `sum_i |next_i| M_i`; for a chain, the
/// scale of the level below replaces `|next|`.
pub fn hypergradient_scale(chain: &[StepRecord], next_grads: &[f64]) -> Vec<f64> {
    assert!(!chain.is_empty(), "empty chain");
    let mut weights: Vec<f64> = next_grads.iter().map(|g| g.abs()).collect();
    for rec in chain {
        let mags = magnitudes(rec);
        assert_eq!(mags.len(), weights.len(), "chain lengths");
        let k = rec.kind.learned_count();
        weights = (0..k)
            .map(|c| mags.iter().zip(&weights).map(|(m, w)| m[c] * w).sum())
            .collect();
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adam(t: u32) -> StepRecord {
        StepRecord {
            kind: OptimizerKind::Adam,
            lr: 0.01,
            decay1: 0.9,
            decay2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            t,
            params: vec![0.5, -1.5, 2.0],
            grads: vec![0.25, 0.75, -1.0],
            first: vec![0.1, -0.2, 0.3],
            second: vec![0.01, 0.04, 0.09],
        }
    }

    #[test]
    fn sgd_and_momentum_match_their_closed_forms() {
        let next = [0.3, -0.7, 1.1];
        let sgd = StepRecord::sgd(0.05, 4, vec![1.0, 2.0, 3.0], vec![-0.5, 0.25, 2.0]);
        let want: f64 = -sgd.grads.iter().zip(&next).map(|(g, n)| g * n).sum::<f64>();
        let got = hypergradient(&[sgd], &next);
        assert!(
            (got[0] - want).abs() <= 1e-15 * want.abs(),
            "{got:?} vs {want}"
        );

        let mut mom = StepRecord::sgd(0.05, 4, vec![1.0, 2.0, 3.0], vec![-0.5, 0.25, 2.0]);
        mom.kind = OptimizerKind::Momentum;
        mom.decay1 = 0.8;
        mom.first = vec![0.1, -0.3, 0.6];
        let got = hypergradient(&[mom.clone()], &next);
        let b: Vec<f64> = (0..3).map(|i| 0.8 * mom.first[i] + mom.grads[i]).collect();
        let d_lr: f64 = -(0..3).map(|i| next[i] * b[i]).sum::<f64>();
        // d/dz of mu = (tanh z + 1) / 2 is 2 mu (1 - mu); d w / d mu = -lr b_prev.
        let d_z: f64 =
            -(0..3).map(|i| next[i] * 0.05 * mom.first[i]).sum::<f64>() * 2.0 * 0.8 * 0.2;
        assert!((got[0] - d_lr).abs() <= 1e-15 * d_lr.abs(), "{got:?}");
        assert!(
            (got[1] - d_z).abs() <= 1e-14 * d_z.abs(),
            "{got:?} vs {d_z}"
        );
    }

    #[test]
    fn adam_derivative_is_smooth_and_bounded_by_its_scale() {
        let next = [1.0, -2.0, 0.5];
        for t in [1, 2, 7] {
            let h = hypergradient(&[adam(t)], &next);
            let s = hypergradient_scale(&[adam(t)], &next);
            for c in 0..3 {
                assert!(h[c].is_finite() && h[c] != 0.0, "t {t}: {h:?}");
                assert!(
                    h[c].abs() <= s[c] * (1.0 + 1e-12),
                    "t {t} c {c}: {} > {}",
                    h[c],
                    s[c]
                );
            }
            // The lr derivative of Adam is -next · update / lr: check it against the step.
            let mut big = Big::new();
            let zero = [big.num(0.0), big.num(0.0), big.num(0.0)];
            let hp = moved(&mut big, &adam(t), &zero);
            let w = step(&big, &adam(t), &hp);
            let want: f64 = (0..3)
                .map(|i| next[i] * (to_f64(&w[i], false) - adam(t).params[i]) / 0.01)
                .sum();
            assert!(
                (h[0] - want).abs() <= 1e-12 * want.abs(),
                "t {t}: {} vs {want}",
                h[0]
            );
        }
    }

    #[test]
    fn a_chain_of_two_differentiates_through_the_lower_step() {
        // Level 1 is SGD on level 0's learning rate: lr0' = lr0 - kappa H, so
        // d L / d kappa = -H dL/d lr0.
        let base = StepRecord::sgd(0.1, 3, vec![1.0, -1.0], vec![0.5, 0.5]);
        let h_prev = 0.2;
        let level1 = StepRecord::sgd(0.01, 2, vec![0.1 + 0.01 * h_prev], vec![h_prev]);
        let mut base_used = base.clone();
        base_used.lr = 0.1;
        let next = [1.0, 3.0];
        let got = hypergradient(&[base_used.clone(), level1.clone()], &next);
        let d_lr0 = hypergradient(&[base_used], &next)[0];
        assert!(
            (got[0] - (-h_prev * d_lr0)).abs() <= 1e-15 * got[0].abs(),
            "{got:?}"
        );
        let scale = hypergradient_scale(&[base, level1], &next);
        assert!(got[0].abs() <= scale[0]);
    }
}
