//! LayerSkip's training schedules (PAPERS.md §3), as published and as the official training code
//! defines them (torchtune `modules/layer_dropout.py` and `modules/early_exit_loss.py`): the
//! per-layer, per-step layer-dropout rate, the exit curriculum and the normalised early-exit loss
//! scales.
//!
//! Layers are numbered `l = 0..L`, steps `t = 0..T`.

/// The time scale `S(t)` of layer dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TimeScale {
    /// `S(t) = 1`: the paper's choice for continual pretraining and fine-tuning.
    Constant,
    /// `S_exp(t) = exp(t·ln2/(T−1)) − 1`, growing from 0 to 1: the paper's choice when
    /// pretraining from scratch.
    Exp,
}

/// Layer dropout: layer `l` of `L` is skipped for one sample at step `t` of `T` with probability
/// `p(l, t) = S(t) · D(l) · p_max`, `D(l) = exp(l·ln2/(L−1)) − 1` (torchtune's `ScaleType.EXP`
/// over the layers: 0 for the first layer, 1 for the last). Each sample of the batch draws its own
/// skips (torchtune drops along the batch dimension); a skipped layer passes its input through
/// unscaled.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LayerDropout {
    /// `p_max`, the rate of the last layer (0 disables dropout; the paper uses 0.1-0.2).
    pub p_max: f32,
    /// `S(t)`.
    pub time_scale: TimeScale,
}

impl LayerDropout {
    /// No dropout.
    pub const OFF: LayerDropout = LayerDropout {
        p_max: 0.0,
        time_scale: TimeScale::Constant,
    };

    /// `S(t)` at step `t` of `steps`.
    pub fn time_factor(&self, t: usize, steps: usize) -> f64 {
        match self.time_scale {
            TimeScale::Constant => 1.0,
            TimeScale::Exp if steps > 1 => {
                (t as f64 * std::f64::consts::LN_2 / (steps - 1) as f64).exp() - 1.0
            }
            TimeScale::Exp => 1.0,
        }
    }

    /// `p(l, t)` for layer `l` of `layers` at step `t` of `steps`.
    pub fn rate(&self, l: usize, layers: usize, t: usize, steps: usize) -> f64 {
        if layers < 2 || self.p_max <= 0.0 {
            return 0.0;
        }
        let d = (l as f64 * std::f64::consts::LN_2 / (layers - 1) as f64).exp() - 1.0;
        (self.time_factor(t, steps) * d * self.p_max as f64).clamp(0.0, 1.0)
    }
}

/// Which early exits are on at a step, `C(t, l)`; the last layer's exit is always on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Curriculum {
    /// Every exit on at every step. Not the paper's: it reports this slows training and hurts the
    /// last layer; kept for comparison.
    All,
    /// Rotational `C_rot,R`: exit `l` is on when `l mod R == t mod R`.
    Rotational {
        /// The rotation period `R`.
        r: usize,
    },
    /// Gradual `C_grad`: exits switch on from the last layer downwards, one more every `T/(2L)`
    /// steps, all on from `T/2`: exit `l` is on once `t/T ≥ (L−l)/(2L)` (torchtune's
    /// `GradualEarlyExitCurriculum` with its default `fraction_scale = 0.5`).
    Gradual,
}

impl Curriculum {
    /// `C(t, l)`.
    pub fn enabled(&self, l: usize, layers: usize, t: usize, steps: usize) -> bool {
        if l + 1 >= layers {
            return true;
        }
        match *self {
            Curriculum::All => true,
            Curriculum::Rotational { r } => r <= 1 || l % r == t % r,
            // t/T >= (L-l)/(2L) in integers (u128: no overflow for any usize inputs).
            Curriculum::Gradual => {
                2 * layers as u128 * t as u128 >= steps as u128 * (layers - l) as u128
            }
        }
    }
}

/// The raw per-exit weight before normalisation, over the exits that are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LossScale {
    /// torchtune `uniform_loss_scale`: 1 per exit.
    Uniform,
    /// torchtune `linear_l_loss_scale`: `l + 1`.
    LinearL,
    /// torchtune `sum_l_loss_scale`: the running sum of `l' + 1` over the exits that are on, up to
    /// and including `l` (its `cumsum` over the enabled layer ids).
    SumL,
    /// The paper's equation: `e(l) = Σ_{i≤l} i` for `l < L−1` and `e(L−1) = (L−1)/e_scale +
    /// Σ_{i≤L−2} i` (so after the `e_scale` factor, `L−1 + e_scale·Σ_{i≤L−2} i`).
    Paper,
}

/// Early-exit loss: `J = Σ_l ẽ(t,l)·CE(g(x_{l+1}), Y)` with `ẽ(t,l) = C(t,l)·e(l) / Σ_i C(t,i)·e(i)`,
/// `e(l) = scale(l) · (e_scale if l < L−1 else 1)`, as torchtune's `early_exit_loss` computes it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EarlyExitLoss {
    /// `e_scale` in `[0, 1]`: the weight of every exit but the last.
    pub e_scale: f32,
    /// The raw per-exit weight.
    pub scale: LossScale,
    /// Which exits are on when.
    pub curriculum: Curriculum,
}

impl EarlyExitLoss {
    /// The normalised scales `ẽ(t, l)` of every layer's exit at step `t` (they sum to 1; exits
    /// that are off get 0).
    pub fn scales(&self, layers: usize, t: usize, steps: usize) -> Vec<f32> {
        let es = self.e_scale as f64;
        let tri = |k: usize| (k * (k + 1) / 2) as f64;
        let mut running = 0.0f64;
        let raw: Vec<f64> = (0..layers)
            .map(|l| {
                if !self.curriculum.enabled(l, layers, t, steps) {
                    return 0.0;
                }
                let last = l + 1 == layers;
                running += (l + 1) as f64;
                let base = match self.scale {
                    LossScale::Uniform => 1.0,
                    LossScale::LinearL => (l + 1) as f64,
                    LossScale::SumL => running,
                    LossScale::Paper if last => {
                        return (layers - 1) as f64 + es * tri(layers.saturating_sub(2));
                    }
                    LossScale::Paper => tri(l),
                };
                if last {
                    base
                } else {
                    es * base
                }
            })
            .collect();
        let total: f64 = raw.iter().sum();
        if total <= 0.0 {
            // A one-layer model under the paper's scale: e(L−1) = 0; the only exit takes it all.
            return last_layer_only(layers);
        }
        raw.iter().map(|e| (e / total) as f32).collect()
    }
}

/// The scales without the recipe: only the last layer's loss.
pub fn last_layer_only(layers: usize) -> Vec<f32> {
    let mut s = vec![0.0; layers];
    if let Some(last) = s.last_mut() {
        *last = 1.0;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// The dropout rate against `S(t)·D(l)·p_max` at chosen (l, t), computed here from the
    /// formula's closed values: D(l) = 2^(l/(L−1)) − 1, S_exp(t) = 2^(t/(T−1)) − 1.
    #[test]
    fn dropout_rate_follows_the_formula_at_chosen_steps() {
        let (layers, steps) = (5, 101);
        let d = LayerDropout {
            p_max: 0.1,
            time_scale: TimeScale::Exp,
        };
        let p = 0.1f32 as f64;
        // l = 0: D = 0; l = 4 (last): D = 1; l = 2: D = sqrt(2) − 1.
        // t = 0: S = 0; t = 100 (last): S = 1; t = 50: S = sqrt(2) − 1.
        let s2 = 2f64.sqrt() - 1.0;
        assert_eq!(d.rate(0, layers, 100, steps), 0.0);
        assert_eq!(d.rate(4, layers, 0, steps), 0.0);
        assert!(close(d.rate(4, layers, 100, steps), p));
        assert!(close(d.rate(2, layers, 100, steps), s2 * p));
        assert!(close(d.rate(4, layers, 50, steps), s2 * p));
        assert!(close(d.rate(2, layers, 50, steps), s2 * s2 * p));
        // l = 1 of 5: D = 2^(1/4) − 1; t = 25: S = 2^(1/4) − 1.
        let q = 2f64.powf(0.25) - 1.0;
        assert!(close(d.rate(1, layers, 25, steps), q * q * p));
        let c = LayerDropout {
            time_scale: TimeScale::Constant,
            ..d
        };
        assert!(close(c.rate(1, layers, 0, steps), q * p));
        assert!(close(c.rate(4, layers, 0, steps), p));
        assert_eq!(LayerDropout::OFF.rate(4, layers, 50, steps), 0.0);
    }

    /// Gradual: with L = 4 and T = 80, exit `l` switches on at `(L−l)·T/(2L) = (4−l)·10`: the last
    /// (on anyway) at 10, exit 2 at 20, exit 1 at 30, exit 0 at T/2 = 40.
    #[test]
    fn gradual_switches_one_exit_on_every_t_over_2l_steps() {
        let g = Curriculum::Gradual;
        let on = |t| (0..4).filter(|&l| g.enabled(l, 4, t, 80)).count();
        assert_eq!(
            [on(0), on(9), on(10), on(19), on(20), on(29)],
            [1, 1, 1, 1, 2, 2]
        );
        assert_eq!([on(30), on(39), on(40), on(79)], [3, 3, 4, 4]);
        assert!(!g.enabled(0, 4, 39, 80) && g.enabled(0, 4, 40, 80));
        let r = Curriculum::Rotational { r: 2 };
        assert!(r.enabled(1, 4, 1, 80) && !r.enabled(1, 4, 2, 80) && r.enabled(3, 4, 2, 80));
    }

    /// The loss scales against torchtune's definitions at chosen steps.
    #[test]
    fn loss_scales_follow_torchtune_at_chosen_steps() {
        let all = |scale, e_scale| EarlyExitLoss {
            e_scale,
            scale,
            curriculum: Curriculum::All,
        };
        let check = |got: Vec<f32>, want: &[f64]| {
            let total: f64 = want.iter().sum();
            for (g, w) in got.iter().zip(want) {
                assert!(close(*g as f64, w / total), "{got:?} vs {want:?}");
            }
        };
        // sum_l over ids 0..4 (all on): cumsum(1,2,3,4) = 1,3,6,10; e_scale 0.5 on all but the last.
        check(
            all(LossScale::SumL, 0.5).scales(4, 7, 10),
            &[0.5, 1.5, 3.0, 10.0],
        );
        // linear_l: 1,2,3,4.
        check(
            all(LossScale::LinearL, 1.0).scales(4, 7, 10),
            &[1.0, 2.0, 3.0, 4.0],
        );
        check(
            all(LossScale::Uniform, 0.2).scales(4, 0, 10),
            &[0.2, 0.2, 0.2, 1.0],
        );
        // The paper's: e = [0, 1, 3, 3 + 3] with e_scale 1.
        check(
            all(LossScale::Paper, 1.0).scales(4, 0, 10),
            &[0.0, 1.0, 3.0, 6.0],
        );
        // Under a curriculum the sums run over the exits that are on: gradual, L = 4, T = 80,
        // t = 25: exits 2 and 3 on; sum_l: cumsum(3, 4) = 3, 7.
        let g = EarlyExitLoss {
            e_scale: 1.0,
            scale: LossScale::SumL,
            curriculum: Curriculum::Gradual,
        };
        check(g.scales(4, 25, 80), &[0.0, 0.0, 3.0, 7.0]);
        check(g.scales(4, 0, 80), &[0.0, 0.0, 0.0, 1.0]);
        // Rotational R = 2 at t = 1: exits 1 and 3; sum_l: 2, 2 + 4.
        let r = EarlyExitLoss {
            curriculum: Curriculum::Rotational { r: 2 },
            ..g
        };
        check(r.scales(4, 1, 80), &[0.0, 2.0, 0.0, 6.0]);
        // A one-layer model.
        assert_eq!(all(LossScale::Paper, 1.0).scales(1, 0, 10), vec![1.0]);
    }
}
