//! LayerSkip's training schedules (PAPERS.md §3): the per-layer, per-step layer-dropout rate and
//! the normalised early-exit loss scales with their curriculum.

/// Layer dropout: layer `l` of `L` is skipped at step `t` of `T` with probability
/// `p(l, t) = S(t) · D(l) · p_max`, `D(l) = exp(l·ln2/(L−1)) − 1` (0 for the first layer, 1 for the
/// last), `S(t) = 1` or, with `time_scale`, `exp(t·ln2/(T−1)) − 1` (growing from 0 to 1).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LayerDropout {
    /// `p_max`, the rate of the last layer (0 disables dropout).
    pub p_max: f32,
    /// Whether the rate grows over training (`S(t)` exponential) instead of staying constant.
    pub time_scale: bool,
}

impl LayerDropout {
    /// `p(l, t)` for layer `l` of `layers` at step `t` of `steps`.
    pub fn rate(&self, l: usize, layers: usize, t: usize, steps: usize) -> f64 {
        if layers < 2 || self.p_max <= 0.0 {
            return 0.0;
        }
        let ln2 = std::f64::consts::LN_2;
        let d = (l as f64 * ln2 / (layers - 1) as f64).exp() - 1.0;
        let s = if self.time_scale && steps > 1 {
            (t as f64 * ln2 / (steps - 1) as f64).exp() - 1.0
        } else {
            1.0
        };
        (s * d * self.p_max as f64).clamp(0.0, 1.0)
    }
}

/// Which early exits are on at a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Curriculum {
    /// Every exit on at every step.
    All,
    /// Rotational: exit `l` is on when `l mod r == t mod r`; the last layer always.
    Rotational {
        /// The rotation period `R`.
        r: usize,
    },
    /// Gradual: exits are switched on from the last layer downwards as training proceeds; exit `l`
    /// is on once `t ≥ (L−1−l)·T/(L−1)`, so all are on by the last step.
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
            Curriculum::Gradual => {
                let from_top = (layers - 1 - l) as u128;
                (t as u128 + 1) * (layers as u128 - 1) >= from_top * steps as u128
            }
        }
    }
}

/// Early-exit loss: `J = sum_l ẽ(t,l)·CE(g(x_{l+1}), Y)` with `ẽ(t,l) = C(t,l)·e(l) / sum_i C(t,i)·e(i)`,
/// `e(l) = e_scale·sum_{i≤l} i` for `l < L−1` and `e(L−1) = L−1 + e_scale·sum_{i≤L−2} i`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EarlyExitLoss {
    /// `e_scale` in `[0, 1]`.
    pub e_scale: f32,
    /// Which exits are on when.
    pub curriculum: Curriculum,
}

impl EarlyExitLoss {
    /// The normalised scales `ẽ(t, l)` of every layer's exit at step `t` (they sum to 1).
    pub fn scales(&self, layers: usize, t: usize, steps: usize) -> Vec<f32> {
        let es = self.e_scale as f64;
        let raw: Vec<f64> = (0..layers)
            .map(|l| {
                let tri = |k: usize| (k * (k + 1) / 2) as f64;
                let e = if l + 1 == layers {
                    (layers - 1) as f64 + es * tri(layers.saturating_sub(2))
                } else {
                    es * tri(l)
                };
                if self.curriculum.enabled(l, layers, t, steps) {
                    e
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = raw.iter().sum();
        if total <= 0.0 {
            // A one-layer model: e(L−1) = 0; the only exit takes all the weight.
            let mut s = vec![0.0; layers];
            if let Some(last) = s.last_mut() {
                *last = 1.0;
            }
            return s;
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

    #[test]
    fn dropout_rate_is_zero_for_the_first_layer_and_p_max_for_the_last() {
        let d = LayerDropout {
            p_max: 0.2,
            time_scale: false,
        };
        assert_eq!(d.rate(0, 8, 5, 100), 0.0);
        assert!((d.rate(7, 8, 5, 100) - 0.2f32 as f64).abs() < 1e-12);
        let t = LayerDropout {
            p_max: 0.2,
            time_scale: true,
        };
        assert_eq!(t.rate(7, 8, 0, 100), 0.0);
        assert!((t.rate(7, 8, 99, 100) - 0.2f32 as f64).abs() < 1e-12);
    }

    #[test]
    fn exit_scales_sum_to_one_and_favour_the_last_layer() {
        let e = EarlyExitLoss {
            e_scale: 1.0,
            curriculum: Curriculum::All,
        };
        let s = e.scales(4, 0, 10);
        // e = [0, 1, 3, 3 + 3]: normalised by 10.
        let want = [0.0, 0.1, 0.3, 0.6];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{s:?}");
        }
        let r = EarlyExitLoss {
            e_scale: 1.0,
            curriculum: Curriculum::Rotational { r: 2 },
        };
        let s = r.scales(4, 1, 10); // layers 1 and 3 on: e = [0, 1, 0, 6]
        assert!((s[1] - 1.0 / 7.0).abs() < 1e-6 && s[2] == 0.0, "{s:?}");
        let g = EarlyExitLoss {
            e_scale: 1.0,
            curriculum: Curriculum::Gradual,
        };
        assert_eq!(g.scales(4, 0, 9), vec![0.0, 0.0, 0.0, 1.0]);
        assert!(g.scales(4, 8, 9)[1] > 0.0);
    }
}
