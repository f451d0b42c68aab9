//! Hyper-Adam's read-only pass one parameter at a time: the unit of work of a GPU thread
//! (feature `cuda`, see `docs/gpu.md`). The GPU sums the terms by its own reduction (a block
//! tree, then a second pass over the blocks) and hands the five sums to
//! [`HyperAdamTerms::finish`].

use super::scalars::{adam_hyper_finish, adam_hyper_terms, HyperScalars};
use super::AdamConfig;
use crate::check::require;
use crate::Result;

/// The per-parameter terms of the hypergradient of an Adam step `(cfg, k)` with respect to
/// `(lr, logit(beta1), logit(beta2))`, as the exact schedule's pass forms them (the same `f32`
/// operations as the CPU's lanes, so the same bits per element), and the closed form that turns
/// their sums into the hypergradient.
#[derive(Clone, Copy, Debug)]
pub struct HyperAdamTerms {
    last: HyperScalars,
    weight_decay: f32,
}

impl HyperAdamTerms {
    /// Terms per parameter.
    pub const TERMS: usize = 5;

    /// The step `k >= 1` of `cfg`. Errors: an invalid `cfg`, `k == 0`, or `1 - lr weight_decay`
    /// not positive (the previous weights cannot be recovered).
    pub fn new(cfg: &AdamConfig, k: u32) -> Result<Self> {
        cfg.validate()?;
        require(k >= 1, "k")?;
        let last = HyperScalars::new(cfg, k);
        require(
            cfg.weight_decay == 0.0 || last.s.decay > 0.0,
            "lr * weight_decay",
        )?;
        Ok(HyperAdamTerms {
            last,
            weight_decay: cfg.weight_decay,
        })
    }

    /// The five terms of one parameter from the gradient `g` of the new step, the moments `m`,
    /// `v` and the gradient `prev` the step `k` used, and the weight `w` after it (give `0.0`
    /// without weight decay). Not finite when `g` is not.
    #[inline(always)]
    pub fn terms(&self, g: f32, m: f32, v: f32, prev: f32, w: f32) -> [f32; 5] {
        let w = if self.weight_decay == 0.0 { 0.0 } else { w };
        adam_hyper_terms(&self.last, [g, m, libm::sqrtf(v), v, prev, w])
    }

    /// The hypergradient `[d lr, d logit(beta1), d logit(beta2)]` from the sums of the terms
    /// over every parameter.
    pub fn finish(&self, sums: [f64; 5]) -> [f64; 3] {
        adam_hyper_finish(self.weight_decay, &self.last, sums)
    }
}

#[cfg(test)]
mod tests {
    use super::super::lanes::{adam_hyper_sums, AdamHyperInputs};
    use super::*;
    use crate::simd::Backend;

    /// The terms summed one by one in `f64` agree with the CPU pass's blocked sums within the
    /// two summations' bounds (`17 u32` for the `f32` lanes, `n u64` for the sequential sum, of
    /// `Σ|term|`), and give the same hypergradient through the same closed form.
    #[test]
    fn summed_terms_are_the_cpu_pass() {
        const N: usize = 1000;
        let n = N;
        let f = |i: usize, a: f32| libm::sinf(i as f32 * a) * 0.5;
        let g: [f32; N] = core::array::from_fn(|i| f(i, 0.37));
        let m: [f32; N] = core::array::from_fn(|i| f(i, 0.11) * 0.1);
        let prev: [f32; N] = core::array::from_fn(|i| f(i, 0.23));
        let w: [f32; N] = core::array::from_fn(|i| f(i, 0.05) + 1.0);
        let v: [f32; N] = core::array::from_fn(|i| prev[i] * prev[i] * 0.01 + 1e-6);
        for weight_decay in [0.0, 0.01] {
            let cfg = AdamConfig {
                weight_decay,
                ..AdamConfig::DEFAULT
            };
            let pass = HyperAdamTerms::new(&cfg, 3).unwrap();
            let (mut sums, mut magnitude) = ([0.0f64; 5], [0.0f64; 5]);
            for i in 0..n {
                let terms = pass.terms(g[i], m[i], v[i], prev[i], w[i]);
                for j in 0..5 {
                    sums[j] += terms[j] as f64;
                    magnitude[j] += (terms[j] as f64).abs();
                }
            }
            let x = AdamHyperInputs {
                grads: &g,
                m: &m,
                v: &v,
                prev: &prev,
                params: if weight_decay != 0.0 { &w } else { &[] },
            };
            let cpu = adam_hyper_sums(Backend::Generic, &pass.last, x)
                .unwrap()
                .unwrap();
            for j in 0..5 {
                let bound = (17.0 * f32::EPSILON as f64 / 2.0 + n as f64 * f64::EPSILON / 2.0)
                    * magnitude[j];
                assert!(
                    (sums[j] - cpu[j]).abs() <= bound,
                    "sum {j}: {} vs {} (bound {bound})",
                    sums[j],
                    cpu[j]
                );
            }
            assert_ne!(sums[0], 0.0, "the learning-rate term is exercised");
        }
    }

    #[test]
    fn bad_steps_are_refused() {
        assert!(HyperAdamTerms::new(&AdamConfig::DEFAULT, 0).is_err());
        let cfg = AdamConfig {
            lr: 1.0,
            weight_decay: 1.0,
            ..AdamConfig::DEFAULT
        };
        assert!(HyperAdamTerms::new(&cfg, 1).is_err());
    }
}
