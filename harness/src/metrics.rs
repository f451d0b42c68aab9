//! Deviation metrics: how far a computed tensor is from an exact one.

use serde::Serialize;

/// A floating-point format to count ULPs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    /// IEEE binary16 (11 significand bits).
    F16,
    /// bfloat16 (8 significand bits).
    Bf16,
    /// IEEE binary32 (24 significand bits).
    F32,
    /// IEEE binary64 (53 significand bits).
    F64,
}

impl Format {
    /// Significand bits, including the implicit one.
    pub fn precision(self) -> i32 {
        match self {
            Format::F16 => 11,
            Format::Bf16 => 8,
            Format::F32 => 24,
            Format::F64 => 53,
        }
    }

    /// Smallest normal exponent (the ULP stops shrinking below `2^emin`).
    pub fn min_exponent(self) -> i32 {
        match self {
            Format::F16 => -14,
            Format::Bf16 | Format::F32 => -126,
            Format::F64 => -1022,
        }
    }

    /// The unit in the last place of `x` in this format: `2^(max(e, emin) - p + 1)` where
    /// `2^e <= |x| < 2^(e+1)`.
    pub fn ulp(self, x: f64) -> f64 {
        let e = if x == 0.0 || !x.is_finite() {
            self.min_exponent()
        } else {
            x.abs().log2().floor() as i32
        };
        2f64.powi(e.max(self.min_exponent()) - self.precision() + 1)
    }

    /// Parses `f16`, `bf16`, `f32` or `f64`.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "f16" | "fp16" => Some(Format::F16),
            "bf16" => Some(Format::Bf16),
            "f32" | "fp32" => Some(Format::F32),
            "f64" | "fp64" => Some(Format::F64),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Format::F16 => "f16",
            Format::Bf16 => "bf16",
            Format::F32 => "f32",
            Format::F64 => "f64",
        }
    }
}

/// Deviation of `actual` from `exact`, element by element.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Deviation {
    /// Largest `|actual - exact|` (the "Is Flash Attention Stable?" metric).
    pub max_abs: f64,
    /// Mean `|actual - exact|`.
    pub mean_abs: f64,
    /// Largest `|actual - exact| / |exact|` over elements with `exact != 0`.
    pub max_rel: f64,
    /// Largest `|actual - exact|` in ULPs of the exact value in the given format.
    pub max_ulp: f64,
    /// Elements compared.
    pub count: usize,
    /// Elements where exactly one side is NaN, or both are infinite with different signs
    /// (such an element makes every other field meaningless, so it is counted apart).
    pub mismatched_non_finite: usize,
}

impl Deviation {
    /// Compares `actual` with `exact`; `format` sets the ULP. Slices must have equal lengths.
    pub fn measure(actual: &[f64], exact: &[f64], format: Format) -> Deviation {
        assert_eq!(
            actual.len(),
            exact.len(),
            "deviation of slices of different lengths"
        );
        let mut dev = Deviation {
            count: actual.len(),
            ..Deviation::default()
        };
        let mut sum = 0.0;
        for (&a, &e) in actual.iter().zip(exact) {
            if a.is_nan() || e.is_nan() || a.is_infinite() || e.is_infinite() {
                let same = (a.is_nan() && e.is_nan()) || a == e;
                if !same {
                    dev.mismatched_non_finite += 1;
                }
                continue;
            }
            let diff = (a - e).abs();
            sum += diff;
            dev.max_abs = dev.max_abs.max(diff);
            if e != 0.0 {
                dev.max_rel = dev.max_rel.max(diff / e.abs());
            }
            dev.max_ulp = dev.max_ulp.max(diff / format.ulp(e));
        }
        if dev.count > 0 {
            dev.mean_abs = sum / dev.count as f64;
        }
        dev
    }

    /// Merges two measurements over disjoint element sets.
    pub fn merge(self, other: Deviation) -> Deviation {
        let count = self.count + other.count;
        let mean_abs = if count == 0 {
            0.0
        } else {
            (self.mean_abs * self.count as f64 + other.mean_abs * other.count as f64) / count as f64
        };
        Deviation {
            max_abs: self.max_abs.max(other.max_abs),
            mean_abs,
            max_rel: self.max_rel.max(other.max_rel),
            max_ulp: self.max_ulp.max(other.max_ulp),
            count,
            mismatched_non_finite: self.mismatched_non_finite + other.mismatched_non_finite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulp_matches_the_format_spacing() {
        assert_eq!(Format::F32.ulp(1.0), f32::EPSILON as f64);
        assert_eq!(Format::Bf16.ulp(1.5), 2f64.powi(-7));
        assert_eq!(Format::F64.ulp(1.0), f64::EPSILON);
        assert_eq!(Format::F16.ulp(0.0), 2f64.powi(-24));
    }

    #[test]
    fn measures_and_merges() {
        let d = Deviation::measure(&[1.0, 2.5, f64::NAN], &[1.0, 2.0, 3.0], Format::F32);
        assert_eq!(d.max_abs, 0.5);
        assert_eq!(d.max_rel, 0.25);
        assert_eq!(d.mismatched_non_finite, 1);
        let m = d.merge(Deviation::measure(&[0.0], &[1.0], Format::F32));
        assert_eq!(m.max_abs, 1.0);
        assert_eq!(m.count, 4);
    }
}
