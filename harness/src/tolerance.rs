//! The one table of tolerances: every threshold a test compares an error with lives here, each
//! with the reason for its value.
//!
//! Two kinds of threshold appear. The **a-priori bound** ([`row_bound`]) is derived from the
//! algorithm: it holds for every input, and a test that finds an error above it has found a bug.
//! The **constants** below are for checks that compare with something other than the exact
//! oracle, or that pin down a typical error far under the worst case; each says why its value.
//!
//! # The error bound of one attention row
//!
//! Notation for one output row: `u` is the accumulator's unit roundoff (`2^-24` for f32, `2^-53`
//! for f64, `2^-8` bf16, `2^-11` fp16), `u_out` the output element's (f32 `2^-24`, bf16 `2^-8`),
//! `n` the visible keys, `d` the head dimension, `T = ⌈n / Bc⌉` the key tiles of flash (`T = 1`
//! for baseline), `S = max_j scale·Σ_i |q_i k_ji|` the largest logit magnitude the dot products can
//! reach, `R = max_j (m − s_j)` the logit range below the row max `m`, `V = max |v_ji|` over the
//! visible values, and `γ(k) = k·u / (1 − k·u)` (infinite when `k·u ≥ 1`).
//!
//! First-order worst-case bound on `|o_i − o_i^exact|` for every element `i` of the row:
//!
//! ```text
//! δs    = (d + 2)·u·S                                        logit error: d products and sums, the scale
//! bound = V·[ 2·(2·δs + u·R + 4·u) + 2·γ(n + T) + 4·(T − 1)·u ] + u_out·V
//! ```
//!
//! Where each term comes from:
//!
//! 1. **Logits.** `fl(q·k)·scale` has absolute error at most `(d + 2)·u·S`: recursive (or FMA, or
//!    any tree-ordered) summation of `d` products has error `γ(d)·Σ|q_i k_i|` (Higham, *Accuracy
//!    and Stability of Numerical Algorithms*, §3.1), and rounding the scale into the accumulator
//!    and multiplying by it add one `u` each.
//! 2. **Softmax sensitivity.** Write the output as `o = Σ_j w_j v_j` with weights `w_j = p_j / l`.
//!    A relative error `e_j` on each `p_j` moves the output by `Σ_j w_j e_j (v_j − o)` to first
//!    order, at most `2·V·max_j |e_j|` (both `v_j` and `o` are at most `V`). Each
//!    `p_j = exp(s_j − m)` has relative error `2·δs` (the error of `s_j` and of the max `m`, each
//!    at most `δs`, pass through `exp` as relative errors), `u·R` (rounding the difference
//!    `s_j − m`, at most `R` in size) and `4u` (the exp is within two ULPs, and one ULP is up to
//!    `2u` relative).
//! 3. **Sums.** The sum `l = Σ p_j` and the weighted sum `Σ p_j v_j` are sums of `n` terms plus
//!    one combination per key tile: relative error `γ(n + T)` each (Higham §3.1 again; the final
//!    division by `l` fits in the slack of counting `n` rather than `n − 1` additions), on
//!    quantities bounded by `V` after normalisation.
//! 4. **Rescaling (flash only).** Each of the `T − 1` rescalings multiplies the running output and
//!    the running sum by `α = exp(m_old − m_new)`. The error of `α` itself cancels (the same `α`
//!    scales numerator and denominator), but the two multiplications round separately: `2u` on
//!    the ratio each time, counted twice for the sensitivity of step 2: `4·(T − 1)·u`.
//! 5. **Output rounding** into the element type: `u_out·V`.
//!
//! Baseline is the same formula with `T = 1`. The bound is first order: it drops products of two
//! or more roundoffs, which is harmless while the bracket is small; where it is not (BF16 models
//! on long rows) the bound exceeds `2V`, the largest possible error of a convex combination, and
//! is vacuous rather than wrong.

/// Unit roundoff of IEEE binary64 (53 significand bits): `2^-53`.
pub const U_F64: f64 = 1.0 / 9_007_199_254_740_992.0;
/// Unit roundoff of IEEE binary32 (24 significand bits): `2^-24`.
pub const U_F32: f64 = 1.0 / 16_777_216.0;
/// Unit roundoff of IEEE binary16 (11 significand bits): `2^-11`.
pub const U_F16: f64 = 1.0 / 2048.0;
/// Unit roundoff of bfloat16 (8 significand bits): `2^-8`.
pub const U_BF16: f64 = 1.0 / 256.0;

/// f32 kernels against a naive f64 attention (`tests/run_cli.rs`), absolute, for inputs drawn
/// uniformly from `[-1, 1]`, `head_dim ≤ 64` and `kv_len ≤ 64`.
///
/// Why `2e-6`: that is an *observed-error* threshold, not a worst case. For those inputs the
/// a-priori [`row_bound`] is around `1e-4` (it assumes every rounding error has the same sign), but
/// independent roundings add like a random walk, so observed errors are a few `1e-7`. `2e-6` (about
/// 30 f32 ULPs of 1) leaves an order of magnitude of headroom, while every real defect a
/// whole-program test can catch (a wrong mask, head mapping, scale or tile edge) moves outputs by
/// `1e-2` or more.
pub const NAIVE_F32_ABS: f64 = 2e-6;

/// The exact oracle, written as float32 by `tessera run --kernel reference`, against a naive f64
/// attention: allowed distance beyond half an f32 ULP of the naive value, absolute.
///
/// Why: the oracle's output is the exact result correctly rounded to f64 and then to f32, so it is
/// within half an f32 ULP of the exact value; the naive f64 triple loop is within about
/// `(d + n)·2^-53` relative of exact (below `1e-13` for the test sizes). `1e-12` covers the
/// latter with margin and nothing else: an oracle that rounded once more, or used another scale,
/// would be off by a whole ULP (`6e-8` near 1).
pub const REFERENCE_VS_NAIVE_F64_ABS: f64 = 1e-12;

/// `f64` accumulator with `f64` elements against the exact oracle, relative to `max |v|` of the
/// row.
///
/// Why `1e-14`: about `90·2^-53`. For the property tests' inputs (standard normal, `d ≤ 32`,
/// `n ≤ 64`) the a-priori [`row_bound`] with `u = 2^-53` is a few `1e-14`, and observed errors are
/// a few ULPs of f64 (`1e-16`); an f64 run that silently went through f32 anywhere would show
/// `1e-8`.
pub const F64_ACCUMULATOR_REL: f64 = 1e-14;

/// Two runs that each satisfy the a-priori bound against the same exact result may differ by
/// twice the bound (triangle inequality). Used where the exact result is the same for both runs
/// by a symmetry, such as a permutation of the key/value rows.
pub const SYMMETRY_BOUND_FACTOR: f64 = 2.0;

/// `γ(k) = k·u / (1 − k·u)`, the relative error bound of `k` successive roundings; infinite when
/// `k·u ≥ 1`.
pub fn gamma(k: usize, u: f64) -> f64 {
    let ku = k as f64 * u;
    if ku >= 1.0 {
        f64::INFINITY
    } else {
        ku / (1.0 - ku)
    }
}

/// Key tiles one row visits: `⌈n / block_k⌉` for flash (`block_k = Some(..)`), `1` for baseline
/// (`None`), and at least 1 so an empty row has no rescaling term.
pub fn key_tiles(visible_keys: usize, block_k: Option<usize>) -> usize {
    match block_k {
        Some(bc) if bc > 0 => visible_keys.div_ceil(bc).max(1),
        _ => 1,
    }
}

/// The quantities the bound depends on, for one row (see the module docs for each symbol).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowBound {
    /// `u`: unit roundoff of the accumulator.
    pub u: f64,
    /// `u_out`: unit roundoff of the output element.
    pub u_out: f64,
    /// `n`: visible keys.
    pub visible_keys: usize,
    /// `d`: head dimension.
    pub head_dim: usize,
    /// `T`: key tiles visited (1 for baseline).
    pub key_tiles: usize,
    /// `S = max_j scale·Σ_i |q_i k_ji|`.
    pub logit_magnitude: f64,
    /// `R = max_j (m − s_j)`.
    pub logit_range: f64,
    /// `V = max |v_ji|`.
    pub value_max: f64,
    /// `u_P`: the rounding of flash's probabilities to the element format before `P·V`
    /// (`u_out` when the element is narrower than the accumulator, else 0; 0 for baseline).
    pub u_p: f64,
}

impl RowBound {
    /// Measures `S`, `R` and `V` on one row: `q` has `d` entries, `keys` and `values` hold the
    /// `n` visible rows of `d` entries each (row-major). The logits are evaluated in f64, whose
    /// error (`2^-53` relative) is far below any `u` the bound is used with. `block_k` is the
    /// flash key tile, `None` for baseline.
    pub fn measure(
        q: &[f64],
        keys: &[f64],
        values: &[f64],
        scale: f64,
        block_k: Option<usize>,
        u: f64,
        u_out: f64,
    ) -> RowBound {
        let d = q.len();
        let n = keys.len().checked_div(d).unwrap_or(0);
        let (mut s_max, mut m, mut s_min) = (0.0f64, f64::NEG_INFINITY, f64::INFINITY);
        for key in keys.chunks_exact(d.max(1)).take(n) {
            let (dot, abs) = q.iter().zip(key).fold((0.0, 0.0), |(s, a), (&x, &y)| {
                (s + x * y, a + (x * y).abs())
            });
            s_max = s_max.max(scale * abs);
            m = m.max(scale * dot);
            s_min = s_min.min(scale * dot);
        }
        let value_max = values
            .iter()
            .take(n * d)
            .fold(0.0f64, |acc, &v| acc.max(v.abs()));
        RowBound {
            u,
            u_out,
            visible_keys: n,
            head_dim: d,
            key_tiles: key_tiles(n, block_k),
            logit_magnitude: s_max,
            logit_range: if n == 0 { 0.0 } else { m - s_min },
            value_max,
            u_p: if block_k.is_some() && u_out > u {
                u_out
            } else {
                0.0
            },
        }
    }

    /// The logit error `δs = (d + 2)·u·S`.
    pub fn logit_error(&self) -> f64 {
        (self.head_dim + 2) as f64 * self.u * self.logit_magnitude
    }

    /// `V·[ 2·(2·δs + u·R + 4·u) + 2·γ(n + T) + 4·(T − 1)·u ] + u_P·V + u_out·V`; zero for a row that sees
    /// no key (its output is exactly zero) or whose values are all zero.
    pub fn bound(&self) -> f64 {
        let v = self.value_max;
        if self.visible_keys == 0 || v == 0.0 {
            return 0.0;
        }
        let u = self.u;
        let t = self.key_tiles as f64;
        let weights = 2.0 * self.logit_error() + u * self.logit_range + 4.0 * u;
        let sums = 2.0 * gamma(self.visible_keys + self.key_tiles, u);
        let rescaling = 4.0 * (t - 1.0) * u;
        v * (2.0 * weights + sums + rescaling) + self.u_p * v + self.u_out * v
    }
}

/// `2^-126`, the smallest normal `f32`: below it `vdpbf16ps` and `vcvtne2ps2bf16` read inputs as
/// zero and flush results to zero.
pub const F32_MIN_NORMAL: f64 = 1.175_494_350_822_287_5e-38;

/// The absolute error flash's bf16 `P·V` by `vdpbf16ps` (the `avx512bf16` backend on bf16
/// elements, `docs/numerics.md`) may add to [`row_bound`] through its flushes to zero:
/// `2^-126·(n·(V + 2) + 2T)`.
///
/// Why: every product is exact and every sum rounded once, as [`row_bound`] counts; what it does
/// not count is the subnormal range, lost absolutely. Per key, a probability below `2^-126`
/// rounds to 0 (at most `2^-126·V` lost), a subnormal value reads as 0 (at most `2^-126`, `p ≤ 1`)
/// and a subnormal sum flushes to 0 (at most `2^-126`); per key tile, the zero key paired with an
/// odd last key adds one more flushed sum and the accumulator rescaled into the subnormal range
/// reads as 0 (`2^-126` each). The numerator's error is divided by `l ≥ 1` (the row max's
/// term is `exp(0) = 1`).
pub fn pair_flush_bound(visible_keys: usize, key_tiles: usize, value_max: f64) -> f64 {
    F32_MIN_NORMAL * (visible_keys as f64 * (value_max + 2.0) + 2.0 * key_tiles as f64)
}

/// The largest magnitude a computed output element may have when the row's values are at most
/// `value_max`: attention is a convex combination of value rows, so the exact output is at most
/// `V`, and the computed one exceeds it only by rounding, whatever the logits (this holds where
/// the error bound does not: logits that overflow and are saturated, for instance).
///
/// Why `V·(1 + 2·γ(n + T) + 2·T·u) + u_out·V`: the numerator `Σ p_j·v_j` is at most
/// `(1 + γ(n + T))·V·Σ p_j` and the denominator `l` at least `(1 − γ(n + T))·Σ p_j` for the same
/// computed weights `p_j`, a ratio of at most `1 + 2·γ(n + T)` to first order; flash's `T − 1`
/// rescalings and the final division add one rounding each to numerator or denominator (`2·T·u`),
/// and the output rounding `u_out·V`.
pub fn output_magnitude_limit(
    value_max: f64,
    visible_keys: usize,
    key_tiles: usize,
    u: f64,
    u_out: f64,
) -> f64 {
    let t = key_tiles.max(1);
    value_max * (1.0 + 2.0 * gamma(visible_keys + t, u) + 2.0 * t as f64 * u + u_out)
}

/// The a-priori bound on `max_i |o_i − o_i^exact|` for one row, from the row's own data: see
/// [`RowBound::measure`] for the arguments and the module docs for the derivation.
pub fn row_bound(
    q: &[f64],
    keys: &[f64],
    values: &[f64],
    scale: f64,
    block_k: Option<usize>,
    u: f64,
    u_out: f64,
) -> f64 {
    RowBound::measure(q, keys, values, scale, block_k, u, u_out).bound()
}

/// The a-priori bound of one [`conv2d`](tessera_kernels::vision::conv2d) output in `f32`
/// (docs/numerics.md, "Convolution"): the output is a dot product of `patch_len` products plus
/// a bias, so `|ŷ − y| ≤ γ(patch_len + 1)·(Σ|x_i·w_i| + |b|)` with `u = 2^-24` (`abs_sum` is the
/// exact `Σ|x_i·w_i| + |b|`).
pub fn conv2d_bound(patch_len: usize, abs_sum: f64) -> f64 {
    gamma(patch_len + 1, F32_UNIT_ROUNDOFF) * abs_sum
}

/// `u = 2^-24`, the unit roundoff of `f32`.
pub const F32_UNIT_ROUNDOFF: f64 = 5.960_464_477_539_063e-8;

/// The a-priori bound of one [`group_norm`](tessera_kernels::vision::group_norm) output with
/// statistics in an accumulator of unit roundoff `u` (docs/numerics.md, "Group norm"): with
/// `m = channels/groups + pixels` (the additions an input passes through), `x̂ = (x − μ)/σ` the
/// exact normalised value, `M/σ` the group's largest `|x|` over its exact `σ = sqrt(var + eps)`,
/// `|ŷ − y| ≤ |g|·(γ(m + 2)·M/σ + (γ(m + 8) + 4·u₃₂)·|x̂|) + 2·u₃₂·(|g·x̂| + |b|)`.
pub fn group_norm_bound(
    m: usize,
    u: f64,
    max_over_sigma: f64,
    x_hat: f64,
    gain: f64,
    bias: f64,
) -> f64 {
    let u32 = F32_UNIT_ROUNDOFF;
    gain.abs() * (gamma(m + 2, u) * max_over_sigma + (gamma(m + 8, u) + 4.0 * u32) * x_hat.abs())
        + 2.0 * u32 * ((gain * x_hat).abs() + bias.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_roundoffs_are_powers_of_two() {
        assert_eq!(U_F64, 2f64.powi(-53));
        assert_eq!(U_F32, 2f64.powi(-24));
        assert_eq!(U_F16, 2f64.powi(-11));
        assert_eq!(U_BF16, 2f64.powi(-8));
    }

    #[test]
    fn pair_flush_bound_by_hand() {
        assert_eq!(F32_MIN_NORMAL, 2f64.powi(-126));
        assert_eq!(
            pair_flush_bound(3, 2, 4.0),
            2f64.powi(-126) * (3.0 * 6.0 + 4.0)
        );
    }

    #[test]
    fn gamma_and_tiles() {
        assert_eq!(gamma(0, U_F32), 0.0);
        assert!((gamma(4, 0.01) - 0.04 / 0.96).abs() < 1e-15);
        assert_eq!(gamma(256, U_BF16), f64::INFINITY);
        assert_eq!(key_tiles(0, Some(4)), 1);
        assert_eq!(key_tiles(9, Some(4)), 3);
        assert_eq!(key_tiles(9, None), 1);
    }

    #[test]
    fn bound_matches_the_formula_by_hand() {
        // d = 2, n = 2, scale 0.5: logits 0.5·(1·1 + 2·(−1)) = −0.5 and 0.5·(1·3 + 2·1) = 2.5.
        let (q, k, v) = ([1.0, 2.0], [1.0, -1.0, 3.0, 1.0], [0.5, -4.0, 1.0, 2.0]);
        let b = RowBound::measure(&q, &k, &v, 0.5, Some(1), U_F32, U_BF16);
        assert_eq!(b.logit_magnitude, 2.5);
        assert_eq!(b.logit_range, 3.0);
        assert_eq!(b.value_max, 4.0);
        assert_eq!(b.key_tiles, 2);
        let u = U_F32;
        let ds = 4.0 * u * 2.5;
        let g = 4.0 * u / (1.0 - 4.0 * u);
        // Flash on bf16 elements with an f32 accumulator also stores P in bf16: u_P = U_BF16.
        assert_eq!(b.u_p, U_BF16);
        let want =
            4.0 * (2.0 * (2.0 * ds + 3.0 * u + 4.0 * u) + 2.0 * g + 4.0 * u) + 2.0 * U_BF16 * 4.0;
        assert!((b.bound() - want).abs() <= 1e-15 * want);
        // Baseline drops the rescaling term and one tile of the sum.
        let base = RowBound::measure(&q, &k, &v, 0.5, None, u, U_BF16);
        assert_eq!(base.u_p, 0.0);
        assert!(base.bound() < b.bound());
        // Same element and accumulator: the rounding of P is the identity, no term.
        assert_eq!(RowBound::measure(&q, &k, &v, 0.5, Some(1), u, u).u_p, 0.0);
        assert_eq!(row_bound(&q, &[], &[], 0.5, None, u, u), 0.0);
    }
}
