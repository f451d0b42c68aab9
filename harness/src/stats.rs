//! Small statistics for studies that repeat a measurement over seeds: least-squares slopes and
//! Student-t confidence intervals.

use serde::Serialize;

/// The least-squares slope of `y` against `x` (with an intercept), or `None` with fewer than two
/// distinct `x` or a non-finite value.
pub fn least_squares_slope(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (two-sided 95% intervals);
/// tabulated to 3 decimals for `df <= 30`, the normal quantile above (within 0.05 of t there).
pub fn t_975(df: usize) -> Option<f64> {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => None,
        d if d <= 30 => Some(TABLE[d - 1]),
        _ => Some(1.960),
    }
}

/// A mean with its two-sided 95% Student-t interval over independent samples (seeds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// The point estimate.
    pub mean: f64,
    /// Lower end of the 95% interval.
    pub lo: f64,
    /// Upper end of the 95% interval.
    pub hi: f64,
    /// Samples it rests on.
    pub n: usize,
}

impl Interval {
    /// Mean ± t·s/√n of `samples` (`None` with fewer than 2 or a non-finite sample).
    pub fn t(samples: &[f64]) -> Option<Interval> {
        let n = samples.len();
        if samples.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let t = t_975(n.checked_sub(1)?)?;
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
        let half = t * (var / n as f64).sqrt();
        Some(Interval {
            mean,
            lo: mean - half,
            hi: mean + half,
            n,
        })
    }

    /// For ratios: the t interval of `ln(samples)` mapped back by `exp` (a geometric mean with
    /// its interval); `None` unless every sample is positive.
    pub fn t_log(samples: &[f64]) -> Option<Interval> {
        if samples.iter().any(|&v| v.is_nan() || v <= 0.0) {
            return None;
        }
        let logs: Vec<f64> = samples.iter().map(|v| v.ln()).collect();
        let i = Interval::t(&logs)?;
        Some(Interval {
            mean: i.mean.exp(),
            lo: i.lo.exp(),
            hi: i.hi.exp(),
            n: i.n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_degenerate_inputs() {
        let x = [0.0, 1.0, 2.0, 3.0];
        let y: Vec<f64> = x.iter().map(|v| 2.5 * v - 1.0).collect();
        assert!((least_squares_slope(&x, &y).unwrap() - 2.5).abs() < 1e-12);
        assert_eq!(least_squares_slope(&[1.0, 1.0], &[0.0, 1.0]), None);
        assert_eq!(least_squares_slope(&[1.0], &[0.0]), None);
    }

    #[test]
    fn t_interval_matches_a_hand_computation() {
        // Mean 2, s = 1, n = 3: half-width 4.303 / sqrt(3).
        let i = Interval::t(&[1.0, 2.0, 3.0]).unwrap();
        let half = 4.303 / 3f64.sqrt();
        assert!((i.mean - 2.0).abs() < 1e-12);
        assert!((i.lo - (2.0 - half)).abs() < 1e-12 && (i.hi - (2.0 + half)).abs() < 1e-12);
        assert!(Interval::t(&[1.0]).is_none());
        // Ratios 2 and 8: geometric mean 4.
        let g = Interval::t_log(&[2.0, 8.0]).unwrap();
        assert!((g.mean - 4.0).abs() < 1e-12 && g.lo < 4.0 && g.hi > 4.0);
        assert!(Interval::t_log(&[2.0, -1.0]).is_none());
    }
}
