//! RMSNorm: `y = x / sqrt(mean(x²) + eps) · g`, row by row.
//!
//! The loops are plain scalar Rust, the same operations in the same order on every backend (so
//! the same bits); a backend runs them compiled for its instruction set (`simd::run_lanes`).

use crate::check::{length, mul};
use crate::simd::{run_lanes, Backend, LaneJob, Lanes};
use crate::{Element, Error, Result};

fn check(dim: usize, eps: f32, x: usize, g: usize, y: usize) -> Result<usize> {
    if dim == 0 {
        return Err(Error::ZeroDimension("dim"));
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::BadParameter(
            "norm eps must be finite and non-negative",
        ));
    }
    length("gain", g, dim)?;
    length("y", y, x)?;
    if !x.is_multiple_of(dim) {
        return Err(Error::LengthMismatch {
            what: "x",
            expected: mul(x / dim + 1, dim)?,
            actual: x,
        });
    }
    Ok(x / dim)
}

/// `1 / sqrt(mean(x²) + eps)` of one row, summed in `f32` in order.
#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    1.0 / libm::sqrtf(ss / x.len() as f32 + eps)
}

/// RMSNorm of every `dim`-long row of `x` into `y`, scaled by the gain `g`, on the best backend.
pub fn rms_norm_forward<W: Element>(
    dim: usize,
    eps: f32,
    x: &[f32],
    g: &[W],
    y: &mut [f32],
) -> Result<()> {
    rms_norm_forward_with(Backend::Auto, dim, eps, x, g, y)
}

/// [`rms_norm_forward`] on a chosen backend (the same bits on every one);
/// `Err(BackendUnavailable)` if it cannot run here.
pub fn rms_norm_forward_with<W: Element>(
    backend: Backend,
    dim: usize,
    eps: f32,
    x: &[f32],
    g: &[W],
    y: &mut [f32],
) -> Result<()> {
    check(dim, eps, x.len(), g.len(), y.len())?;
    run_lanes(backend, Forward { dim, eps, x, g, y })
}

/// The forward loop as a lane job.
struct Forward<'a, W> {
    dim: usize,
    eps: f32,
    x: &'a [f32],
    g: &'a [W],
    y: &'a mut [f32],
}

impl<W: Element> LaneJob for Forward<'_, W> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, _: L) {
        let Forward { dim, eps, x, g, y } = self;
        // Indexed, not zipped: `Zip::new` of two `ChunksExact` may be compiled out of line with
        // a division by the chunk size that could panic (opt-level "s").
        for (t, yr) in y.chunks_exact_mut(dim.max(1)).enumerate() {
            let Some(xr) = x.get(t * dim..(t + 1) * dim) else {
                return;
            };
            let r = inv_rms(xr, eps);
            for ((yi, &xi), &gi) in yr.iter_mut().zip(xr).zip(g) {
                *yi = xi * r * gi.to_f32();
            }
        }
    }
}

/// Backward of [`rms_norm_forward`] from its input `x`: `dx` is overwritten, the gain gradient is
/// *added* into `dg`. With `r = 1/rms`, `x̂ = x·r`: `dg += dy·x̂`,
/// `dx = r·(dy·g − x̂·mean(dy·g·x̂))`. On the best backend.
pub fn rms_norm_backward<W: Element>(
    dim: usize,
    eps: f32,
    x: &[f32],
    g: &[W],
    dy: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
) -> Result<()> {
    rms_norm_backward_with(Backend::Auto, dim, eps, x, g, dy, dx, dg)
}

/// [`rms_norm_backward`] on a chosen backend (the same bits on every one).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_with<W: Element>(
    backend: Backend,
    dim: usize,
    eps: f32,
    x: &[f32],
    g: &[W],
    dy: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
) -> Result<()> {
    check(dim, eps, x.len(), g.len(), dy.len())?;
    length("dx", dx.len(), x.len())?;
    length("dg", dg.len(), dim)?;
    let job = Backward {
        dim,
        eps,
        x,
        g,
        dy,
        dx,
        dg,
    };
    run_lanes(backend, job)
}

/// The backward loop as a lane job.
struct Backward<'a, W> {
    dim: usize,
    eps: f32,
    x: &'a [f32],
    g: &'a [W],
    dy: &'a [f32],
    dx: &'a mut [f32],
    dg: &'a mut [f32],
}

impl<W: Element> LaneJob for Backward<'_, W> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, _: L) {
        let Backward {
            dim,
            eps,
            x,
            g,
            dy,
            dx,
            dg,
        } = self;
        let rows = x.chunks_exact(dim).zip(dy.chunks_exact(dim));
        for ((xr, dyr), dxr) in rows.zip(dx.chunks_exact_mut(dim)) {
            let r = inv_rms(xr, eps);
            let mut proj = 0.0f32;
            for (((&xi, &dyi), &gi), dgi) in xr.iter().zip(dyr).zip(g).zip(dg.iter_mut()) {
                let xhat = xi * r;
                *dgi += dyi * xhat;
                proj += dyi * gi.to_f32() * xhat;
            }
            let mean = proj / dim as f32;
            for (((dxi, &xi), &dyi), &gi) in dxr.iter_mut().zip(xr).zip(dyr).zip(g) {
                *dxi = r * (dyi * gi.to_f32() - xi * r * mean);
            }
        }
    }
}
