//! Image kernels of diffusion models: 2-D convolution (exact) and group norm (at 512 bits), each
//! output rounded once to `f64`. Layouts are NHWC, as in the kernel crate.

use crate::kulisch::ExactAccumulator;
use crate::real::Real;

/// Working precision of [`group_norm`], in bits: sums of `f32` data are exact at it.
const NORM_BITS: usize = 512;

/// The shape of a convolution: `batch` images `[height, width, in_channels]`, filters
/// `[out_channels, kernel, kernel, in_channels]`, `stride`, zero `padding` on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Images.
    pub batch: usize,
    /// Input rows.
    pub height: usize,
    /// Input columns.
    pub width: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Filter side.
    pub kernel: usize,
    /// Step between output pixels.
    pub stride: usize,
    /// Zeros added on each side.
    pub padding: usize,
}

impl ConvShape {
    /// `(out_height, out_width)`.
    ///
    /// # Panics
    /// If the filter is larger than the padded input or the stride is zero.
    pub fn output_size(&self) -> (usize, usize) {
        let h = self.height + 2 * self.padding - self.kernel;
        let w = self.width + 2 * self.padding - self.kernel;
        (h / self.stride + 1, w / self.stride + 1)
    }
}

/// The convolution `y = conv(x, w) + bias` (`bias` empty for none), NHWC, each output the exact
/// sum of its patch's products and its bias, correctly rounded to `f64`.
///
/// # Panics
/// If a length does not match the shape.
pub fn conv2d(shape: &ConvShape, x: &[f64], w: &[f64], bias: &[f64]) -> Vec<f64> {
    let s = shape;
    let (oh, ow) = s.output_size();
    let (k, c) = (s.kernel, s.in_channels);
    assert_eq!(x.len(), s.batch * s.height * s.width * c, "x");
    assert_eq!(w.len(), s.out_channels * k * k * c, "w");
    assert!(bias.is_empty() || bias.len() == s.out_channels, "bias");
    let mut y = Vec::with_capacity(s.batch * oh * ow * s.out_channels);
    let mut acc = ExactAccumulator::new();
    for b in 0..s.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..s.out_channels {
                    acc.clear();
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s.stride + ky) as isize - s.padding as isize;
                            let ix = (ox * s.stride + kx) as isize - s.padding as isize;
                            if iy < 0 || ix < 0 || iy >= s.height as isize || ix >= s.width as isize
                            {
                                continue;
                            }
                            let at = ((b * s.height + iy as usize) * s.width + ix as usize) * c;
                            let wt = ((o * k + ky) * k + kx) * c;
                            acc.add_dot(&x[at..at + c], &w[wt..wt + c]);
                        }
                    }
                    if let Some(&bo) = bias.get(o) {
                        acc.add(bo);
                    }
                    y.push(acc.to_f64());
                }
            }
        }
    }
    y
}

/// Group norm of NHWC `x` (`batch` images of `pixels` pixels and `channels` channels, `groups`
/// contiguous channel groups): `y = (x − μ)/sqrt(σ² + eps)·gamma[c] + beta[c]` with the group's
/// mean `μ` and population variance `σ²`, all at 512 bits, rounded once to `f64`.
///
/// # Panics
/// If `groups` does not divide `channels` or a length does not match.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    batch: usize,
    pixels: usize,
    channels: usize,
    groups: usize,
    eps: f64,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
) -> Vec<f64> {
    assert_eq!(channels % groups, 0, "groups must divide channels");
    assert_eq!(x.len(), batch * pixels * channels, "x");
    assert_eq!(gamma.len(), channels, "gamma");
    assert_eq!(beta.len(), channels, "beta");
    let cpg = channels / groups;
    let real = |v: f64| Real::with_precision(v, NORM_BITS);
    let count = real((pixels * cpg) as f64);
    let mut y = vec![0.0; x.len()];
    for b in 0..batch {
        for g in 0..groups {
            let idx = |p: usize, j: usize| (b * pixels + p) * channels + g * cpg + j;
            let all = || (0..pixels).flat_map(move |p| (0..cpg).map(move |j| (p, j)));
            let mean = all().fold(real(0.0), |s, (p, j)| s + real(x[idx(p, j)])) / &count;
            let var = all().fold(real(0.0), |s, (p, j)| {
                let d = real(x[idx(p, j)]) - &mean;
                s + d.clone() * d
            }) / &count;
            let inv = (var + real(eps)).sqrt().recip();
            for (p, j) in all() {
                let c = g * cpg + j;
                let v = (real(x[idx(p, j)]) - &mean) * &inv * real(gamma[c]) + real(beta[c]);
                y[idx(p, j)] = v.to_f64();
            }
        }
    }
    y
}
