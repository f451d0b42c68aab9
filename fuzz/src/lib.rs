//! Helpers shared by the fuzz targets: turning fuzzer bytes into float tensors of a chosen kind,
//! picking backends, and the checks every target makes (an `Err` leaves outputs untouched, a
//! result is close to an `f64` reference).

use arbitrary::Arbitrary;
use tessera_kernels::simd::Backend;
use tessera_kernels::Element;

/// How a target turns the fuzzer's raw words into floats.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Every bit pattern: NaN, infinities, subnormals, the format's limits.
    Raw,
    /// Every finite bit pattern (NaN and infinities become the largest finite value).
    Finite,
    /// Uniform in `[-2, 2]`: where the documented error bounds are tight.
    Unit,
    /// Sign, a significand and an exponent in `[-30, 30]`: wide but far from overflow.
    Wide,
}

impl Values {
    /// Whether every value this kind gives is finite.
    pub fn finite(self) -> bool {
        !matches!(self, Values::Raw)
    }

    /// `n` `f32` values from `words` (cycled; zeros when `words` is empty), the `i`th value
    /// also salted by `i` so a short input still gives distinct values.
    pub fn f32s(self, words: &[u32], n: usize) -> Vec<f32> {
        (0..n).map(|i| self.f32_at(words, i)).collect()
    }

    /// `n` `f64` values (`Raw` and `Finite` draw the full `f64` range from two words).
    pub fn f64s(self, words: &[u32], n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| match self {
                Values::Raw | Values::Finite => {
                    let hi = word(words, 2 * i) as u64;
                    let lo = word(words, 2 * i + 1) as u64;
                    let x = f64::from_bits(hi << 32 | lo);
                    if self == Values::Finite && !x.is_finite() {
                        f64::MAX.copysign(x)
                    } else {
                        x
                    }
                }
                _ => self.f32_at(words, i) as f64,
            })
            .collect()
    }

    fn f32_at(self, words: &[u32], i: usize) -> f32 {
        let w = word(words, i);
        match self {
            Values::Raw => f32::from_bits(w),
            Values::Finite => {
                let x = f32::from_bits(w);
                if x.is_finite() {
                    x
                } else {
                    f32::MAX.copysign(x)
                }
            }
            Values::Unit => (w as i32) as f32 / 1_073_741_824.0,
            Values::Wide => {
                let significand = 1.0 + (w & 0xffff) as f32 / 65536.0;
                let exponent = ((w >> 16) & 0x3f) as i32 % 61 - 30;
                let sign = if w >> 31 == 1 { -1.0 } else { 1.0 };
                sign * significand * 2f32.powi(exponent)
            }
        }
    }
}

/// Word `i` of `words` salted by `i` (zero-based; `words` cycled).
fn word(words: &[u32], i: usize) -> u32 {
    if words.is_empty() {
        return 0;
    }
    let w = words[i % words.len()];
    // Past the first cycle, perturb the low bits so repeated words are not identical.
    w ^ ((i / words.len()) as u32).wrapping_mul(0x9e37_79b9) & 0x000f_ffff
}

/// Every backend the kernels name, available here or not (an unavailable one must be refused).
pub fn backend(pick: u8) -> Backend {
    Backend::ALL[pick as usize % Backend::ALL.len()]
}

/// The backends that run here and serve `f32`, for cross-backend comparisons.
pub fn available() -> Vec<Backend> {
    tessera_kernels::simd::available_backends().collect()
}

/// A value a kernel is unlikely to write: a NaN with an unusual payload. Outputs are pre-filled
/// with it so that an `Err` that wrote anything, or an `Ok` that left an element out, shows up.
pub const SENTINEL_BITS: u32 = 0x7fa5_a5a5;

/// The sentinel as an `f32`.
pub fn sentinel() -> f32 {
    f32::from_bits(SENTINEL_BITS)
}

/// Bit patterns of `xs` widened to `f64` (exact for every element type, NaN payloads kept).
pub fn bits<E: Element>(xs: &[E]) -> Vec<u64> {
    xs.iter().map(|x| x.to_f64().to_bits()).collect()
}

/// Asserts that `after` has the bits of `before` (an `Err` must not write).
#[track_caller]
pub fn assert_untouched<E: Element>(
    what: &str,
    before: &[u64],
    after: &[E],
    err: &dyn core::fmt::Debug,
) {
    assert_eq!(
        before,
        &bits(after)[..],
        "{what} changed although the call returned {err:?}"
    );
}

/// `|got - want| <= tol·(1 + |want|)` element by element.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g:e}, want {w:e} (error {err:e}, tolerance {tol:e})"
        );
    }
}

/// `x·Wᵀ` for row-major `x: [rows, n_in]`, `w: [n_out, n_in]`, in `f64`.
pub fn ref_linear(x: &[f64], w: &[f64], rows: usize, n_in: usize, n_out: usize) -> Vec<f64> {
    let mut y = vec![0.0; rows * n_out];
    for r in 0..rows {
        for o in 0..n_out {
            y[r * n_out + o] = (0..n_in).map(|i| x[r * n_in + i] * w[o * n_in + i]).sum();
        }
    }
    y
}

/// `Σ|x_i w_i|` rows of [`ref_linear`]: the scale a dot product's rounding error is relative to.
pub fn ref_linear_abs(x: &[f64], w: &[f64], rows: usize, n_in: usize, n_out: usize) -> Vec<f64> {
    let ax: Vec<f64> = x.iter().map(|v| v.abs()).collect();
    let aw: Vec<f64> = w.iter().map(|v| v.abs()).collect();
    ref_linear(&ax, &aw, rows, n_in, n_out)
}

/// Widens `f32` values.
pub fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// `n` tokens below `vocab` (`vocab > 0`) from fuzzer words.
pub fn tokens(words: &[u32], n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| (word(words, i) as usize % vocab.max(1)) as u32)
        .collect()
}

/// Asserts `a` and `b` have the same bits, except that a NaN may differ from another NaN in sign
/// and payload (backends propagate NaN operands in different orders).
#[track_caller]
pub fn assert_same_up_to_nan(what: &str, a: &[f32], b: &[f32]) {
    let same = |(x, y): (&f32, &f32)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
    assert!(
        a.len() == b.len() && a.iter().zip(b).all(same),
        "{what}: {a:?} vs {b:?}"
    );
}

/// [`assert_same_up_to_nan`] for any element type (compared through their exact `f64` values).
#[track_caller]
pub fn assert_same_elements_up_to_nan<E: Element>(what: &str, a: &[E], b: &[E]) {
    let same = |(x, y): (&E, &E)| {
        let (x, y) = (x.to_f64(), y.to_f64());
        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
    };
    assert!(
        a.len() == b.len() && a.iter().zip(b).all(same),
        "{what}: {:?} vs {:?}",
        bits(a),
        bits(b)
    );
}
