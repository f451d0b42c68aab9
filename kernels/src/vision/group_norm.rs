//! Group norm (and layer norm, its one-group one-pixel case) over NHWC activations.
//!
//! For each image and each of `groups` contiguous runs of `channels / groups` channels, the mean
//! `μ` and variance `σ²` of those channels over every pixel are computed in the accumulator `A`
//! in two passes (the mean, then the mean squared deviation from it), and
//! `y = (x − μ) / sqrt(σ² + eps) · gamma[c] + beta[c]`. Sums run pixel by pixel: a pixel's
//! channels of the group are added into a partial, which is added into the total, so each input
//! passes through at most `channels/groups + pixels` additions (the bound in docs/numerics.md).

use crate::check::{length, product};
use crate::simd::{run_lanes, Backend, LaneJob, Lanes};
use crate::{Accumulator, Element, Error, Result};

/// The shape of a group norm over `batch` NHWC images of `pixels` pixels (`height·width`, or
/// `frames·height·width` for a video normalised across frames) and `channels` channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormShape {
    /// Independent images, each normalised on its own.
    pub batch: usize,
    /// Pixels per image.
    pub pixels: usize,
    /// Channels per pixel (the innermost dimension).
    pub channels: usize,
    /// Groups of contiguous channels; divides `channels` (32 in Stable Diffusion).
    pub groups: usize,
    /// Added to the variance; finite and non-negative.
    pub eps: f32,
}

impl GroupNormShape {
    /// `groups` groups over `[batch, pixels, channels]`, `eps = 1e-5`.
    pub const fn new(batch: usize, pixels: usize, channels: usize, groups: usize) -> Self {
        GroupNormShape {
            batch,
            pixels,
            channels,
            groups,
            eps: 1e-5,
        }
    }

    /// Layer norm of `rows` rows of `dim` features: one group of one pixel per row.
    pub const fn layer_norm(rows: usize, dim: usize) -> Self {
        GroupNormShape::new(rows, 1, dim, 1)
    }

    /// Sets `eps`.
    pub const fn with_eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Checks the shape; returns the element count of `x` and `y`.
    pub const fn validate(&self) -> Result<usize> {
        let dims = [
            (self.batch, "batch"),
            (self.pixels, "pixels"),
            (self.channels, "channels"),
            (self.groups, "groups"),
        ];
        let mut i = 0;
        while i < dims.len() {
            if dims[i].0 == 0 {
                return Err(Error::ZeroDimension(dims[i].1));
            }
            i += 1;
        }
        if !self.channels.is_multiple_of(self.groups) {
            return Err(Error::BadParameter("groups must divide channels"));
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::BadParameter(
                "norm eps must be finite and non-negative",
            ));
        }
        product(&[self.batch, self.pixels, self.channels])
    }
}

/// Group norm with statistics in `A` on the best backend (see [`group_norm_with`]).
pub fn group_norm<W: Element, A: Accumulator>(
    shape: &GroupNormShape,
    x: &[f32],
    gamma: &[W],
    beta: &[W],
    y: &mut [f32],
) -> Result<()> {
    group_norm_with::<W, A>(Backend::Auto, shape, x, gamma, beta, y)
}

/// Group norm of NHWC `x` into `y` with per-channel `gamma` and `beta` (`channels` values each),
/// the mean and variance accumulated in `A` (`f32` in production; `f64` for research runs), on a
/// chosen backend: plain scalar loops compiled for its instruction set, so every backend gives
/// the same bits. A NaN or infinity in a group makes that group's outputs NaN.
pub fn group_norm_with<W: Element, A: Accumulator>(
    backend: Backend,
    shape: &GroupNormShape,
    x: &[f32],
    gamma: &[W],
    beta: &[W],
    y: &mut [f32],
) -> Result<()> {
    let n = shape.validate()?;
    length("x", x.len(), n)?;
    length("y", y.len(), n)?;
    length("gamma", gamma.len(), shape.channels)?;
    length("beta", beta.len(), shape.channels)?;
    run_lanes(
        backend,
        GroupNormJob::<W, A> {
            shape,
            x,
            gamma,
            beta,
            y,
            acc: core::marker::PhantomData,
        },
    )
}

/// Layer norm of every `dim`-long row (`y = (x − μ)/sqrt(σ² + eps)·gamma + beta`), statistics in
/// `f32`, on the best backend: [`group_norm`] with one group of one pixel per row.
pub fn layer_norm<W: Element>(
    dim: usize,
    eps: f32,
    x: &[f32],
    gamma: &[W],
    beta: &[W],
    y: &mut [f32],
) -> Result<()> {
    if dim == 0 {
        return Err(Error::ZeroDimension("dim"));
    }
    let rows = x.len() / dim;
    length("x", x.len(), rows * dim)?;
    let shape = GroupNormShape::layer_norm(rows.max(1), dim).with_eps(eps);
    if rows == 0 {
        return length("y", y.len(), 0);
    }
    group_norm_with::<W, f32>(Backend::Auto, &shape, x, gamma, beta, y)
}

/// The group norm loop as a lane job.
struct GroupNormJob<'a, W, A> {
    shape: &'a GroupNormShape,
    x: &'a [f32],
    gamma: &'a [W],
    beta: &'a [W],
    y: &'a mut [f32],
    acc: core::marker::PhantomData<A>,
}

impl<W: Element, A: Accumulator> LaneJob for GroupNormJob<'_, W, A> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, _: L) {
        let GroupNormJob {
            shape,
            x,
            gamma,
            beta,
            y,
            ..
        } = self;
        let c = shape.channels;
        let cpg = c / shape.groups.max(1);
        let image = shape.pixels * c;
        let count = A::from_f64((shape.pixels * cpg) as f64);
        for b in 0..shape.batch {
            let Some(xb) = x.get(b * image..(b + 1) * image) else {
                return;
            };
            let Some(yb) = y.get_mut(b * image..(b + 1) * image) else {
                return;
            };
            for g in 0..shape.groups {
                let c0 = g * cpg;
                let pixel = |p: usize| xb.get(p * c + c0..p * c + c0 + cpg).unwrap_or(&[]);
                let mut total = A::ZERO;
                for p in 0..shape.pixels {
                    let mut part = A::ZERO;
                    for &v in pixel(p) {
                        part = part.add(A::from_f32(v));
                    }
                    total = total.add(part);
                }
                let mean = total.div(count);
                let mut total = A::ZERO;
                for p in 0..shape.pixels {
                    let mut part = A::ZERO;
                    for &v in pixel(p) {
                        let d = A::from_f32(v).sub(mean);
                        part = part.add(d.mul(d));
                    }
                    total = total.add(part);
                }
                let var = total.div(count).to_f64() + shape.eps as f64;
                // One square root per group: `f64` keeps it correctly rounded on every target.
                let inv = (1.0 / libm::sqrt(var)) as f32;
                let (gs, bs) = (
                    gamma.get(c0..c0 + cpg).unwrap_or(&[]),
                    beta.get(c0..c0 + cpg).unwrap_or(&[]),
                );
                for p in 0..shape.pixels {
                    let Some(out) = yb.get_mut(p * c + c0..p * c + c0 + cpg) else {
                        return;
                    };
                    for (((o, &v), &gv), &bv) in out.iter_mut().zip(pixel(p)).zip(gs).zip(bs) {
                        // The deviation in `A` (the same bits as `f32` for `A = f32`; a wider
                        // accumulator keeps the mean's digits below `f32`'s).
                        let d = A::from_f32(v).sub(mean).to_f64() as f32;
                        *o = d * inv * gv.to_f32() + bv.to_f32();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_group_to_zero_mean_unit_variance() {
        // Two groups of two channels over three pixels.
        let x = [
            1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0, 5.0, 50.0, 6.0, 60.0,
        ];
        let s = GroupNormShape::new(1, 3, 4, 2).with_eps(0.0);
        let (g, b) = ([1.0f32; 4], [0.0f32; 4]);
        let mut y = [f32::NAN; 12];
        group_norm::<f32, f32>(&s, &x, &g, &b, &mut y).unwrap();
        for grp in 0..2 {
            let mut vals = [0.0f32; 6];
            for p in 0..3 {
                vals[2 * p] = y[p * 4 + grp * 2];
                vals[2 * p + 1] = y[p * 4 + grp * 2 + 1];
            }
            let mean: f32 = vals.iter().sum::<f32>() / 6.0;
            let var: f32 = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 6.0;
            assert!(mean.abs() < 1e-6, "{mean}");
            assert!((var - 1.0).abs() < 1e-5, "{var}");
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let mut y = [0.0f32; 6];
        let s = GroupNormShape::new(1, 2, 3, 2);
        assert!(group_norm::<f32, f32>(&s, &[0.0; 6], &[1.0; 3], &[0.0; 3], &mut y).is_err());
        let s = GroupNormShape::new(1, 2, 3, 3).with_eps(-1.0);
        assert!(group_norm::<f32, f32>(&s, &[0.0; 6], &[1.0; 3], &[0.0; 3], &mut y).is_err());
        assert!(layer_norm(4, 1e-5, &[0.0; 6], &[1.0f32; 4], &[0.0; 4], &mut y).is_err());
    }
}
