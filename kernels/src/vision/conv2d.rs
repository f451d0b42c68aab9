//! 2-D convolution over NHWC images, as im2col tiles fed to the dense primitive.
//!
//! **Why NHWC.** A pixel's channels are contiguous, so an image `[H, W, C]` is a token matrix
//! `[H·W, C]`: a 1×1 convolution *is* the dense layer (no copy at all), the spatial transformer
//! of a UNet reads the same buffer as its tokens (queries in [`Layout::TokenMajor`]), and group
//! norm's groups are contiguous channel runs. NCHW would need a transpose at every
//! convolution/attention boundary.
//!
//! **How.** Output pixels are taken [`CONV_TILE`] at a time. For each, the `k×k×C_in` input
//! patch is gathered into one scratch row (zeros where the padding is), so a tile is a
//! `[CONV_TILE, k·k·C_in]` matrix, multiplied by the weight `[C_out, k·k·C_in]` with the
//! backend's dense primitive (the one [`linear_matmul`](crate::nn::linear_matmul) uses: SIMD
//! where the CPU has it). A 1×1 stride-1 unpadded convolution skips the gather.
//!
//! [`Layout::TokenMajor`]: crate::attention::Layout::TokenMajor

use crate::check::{add, length, mul, product, try_const};
use crate::rows::{self, Job, RowOps};
use crate::simd::Backend;
use crate::{Element, Error, Result};

/// Output pixels gathered into one im2col tile (the dense primitive's row block).
pub const CONV_TILE: usize = 32;

/// The shape of a 2-D convolution over `batch` NHWC images.
///
/// Input `[batch, height, width, in_channels]`, weight `[out_channels, kernel, kernel,
/// in_channels]` (each output channel's filter is one row, in the patch's order), output
/// `[batch, out_height, out_width, out_channels]` with `out = (in + 2·padding − kernel) / stride
/// + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Independent images (a video's frames).
    pub batch: usize,
    /// Input rows.
    pub height: usize,
    /// Input columns.
    pub width: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Side of the square filter (1 and 3 in a UNet; any odd or even size works).
    pub kernel: usize,
    /// Step between output pixels (1, or 2 to downsample).
    pub stride: usize,
    /// Zero rows and columns added on every side.
    pub padding: usize,
}

impl Conv2dShape {
    /// A `kernel × kernel` convolution, stride 1, "same" padding `kernel / 2`.
    pub const fn new(
        batch: usize,
        height: usize,
        width: usize,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
    ) -> Self {
        Conv2dShape {
            batch,
            height,
            width,
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: kernel / 2,
        }
    }

    /// Sets the stride.
    pub const fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    pub const fn with_padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// `(out_height, out_width)`, or `Err` for a zero dimension or a filter larger than the
    /// padded input.
    pub const fn output_size(&self) -> Result<(usize, usize)> {
        let dims = [
            (self.batch, "batch"),
            (self.height, "height"),
            (self.width, "width"),
            (self.in_channels, "in_channels"),
            (self.out_channels, "out_channels"),
            (self.kernel, "kernel"),
            (self.stride, "stride"),
        ];
        let mut i = 0;
        while i < dims.len() {
            if dims[i].0 == 0 {
                return Err(Error::ZeroDimension(dims[i].1));
            }
            i += 1;
        }
        let pad2 = try_const!(mul(self.padding, 2));
        let h = try_const!(add(self.height, pad2));
        let w = try_const!(add(self.width, pad2));
        if h < self.kernel || w < self.kernel {
            return Err(Error::BadParameter(
                "conv2d kernel is larger than the padded input",
            ));
        }
        Ok((
            (h - self.kernel) / self.stride + 1,
            (w - self.kernel) / self.stride + 1,
        ))
    }

    /// Elements of one filter (`kernel²·in_channels`): the im2col row length.
    pub const fn patch_len(&self) -> Result<usize> {
        product(&[self.kernel, self.kernel, self.in_channels])
    }

    /// Whether the gather can be skipped: a 1×1, stride-1, unpadded convolution.
    const fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    /// Element counts `(input, weight, output)`.
    pub const fn lens(&self) -> Result<(usize, usize, usize)> {
        let (oh, ow) = try_const!(self.output_size());
        let x = try_const!(product(&[
            self.batch,
            self.height,
            self.width,
            self.in_channels
        ]));
        let w = try_const!(mul(self.out_channels, try_const!(self.patch_len())));
        let y = try_const!(product(&[self.batch, oh, ow, self.out_channels]));
        Ok((x, w, y))
    }
}

/// Scratch floats [`conv2d`] needs: one im2col tile, `CONV_TILE · kernel² · in_channels` (none
/// for a 1×1 stride-1 unpadded convolution). A `const fn`, so a firmware can size a `static`.
pub const fn conv2d_scratch_len(shape: &Conv2dShape) -> Result<usize> {
    try_const!(shape.lens());
    if shape.is_pointwise() {
        return Ok(0);
    }
    mul(CONV_TILE, try_const!(shape.patch_len()))
}

/// `y = conv(x, w) + bias` on the best backend (see [`conv2d_with`]).
pub fn conv2d<W: Element>(
    shape: &Conv2dShape,
    x: &[f32],
    w: &[W],
    bias: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    conv2d_with(Backend::Auto, shape, x, w, bias, y, scratch)
}

/// 2-D convolution of NHWC `x` by the filters `w` (`[out, k, k, in]`, `f32` or `bf16`) plus
/// `bias` (`out_channels` values, or empty for none) into NHWC `y`, on a chosen backend. Each
/// output is the dense primitive's dot product of its zero-padded patch with its filter, plus the
/// bias (one more rounding): the SIMD backends agree bit for bit, the generic one within the dot
/// product bound (docs/numerics.md). Every length, the shape and the scratch are checked before
/// anything is written.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_with<W: Element>(
    backend: Backend,
    shape: &Conv2dShape,
    x: &[f32],
    w: &[W],
    bias: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let (nx, nw, ny) = shape.lens()?;
    length("x", x.len(), nx)?;
    length("w", w.len(), nw)?;
    length("y", y.len(), ny)?;
    if !bias.is_empty() {
        length("bias", bias.len(), shape.out_channels)?;
    }
    let needed = conv2d_scratch_len(shape)?;
    if scratch.len() < needed {
        return Err(Error::ScratchTooSmall {
            needed,
            actual: scratch.len(),
        });
    }
    let patch = shape.patch_len()?;
    rows::run::<W, f32, _>(
        backend,
        ConvJob {
            shape,
            patch,
            x,
            w,
            bias,
            y,
            scratch,
        },
    )?
}

/// The convolution as a job over the row primitives.
struct ConvJob<'a, W> {
    shape: &'a Conv2dShape,
    patch: usize,
    x: &'a [f32],
    w: &'a [W],
    bias: &'a [f32],
    y: &'a mut [f32],
    scratch: &'a mut [f32],
}

impl<W: Element> Job<W, f32> for ConvJob<'_, W> {
    type Output = Result<()>;
    #[inline(always)]
    fn run<O: RowOps<W, f32>>(self, ops: O) -> Result<()> {
        let ConvJob {
            shape,
            patch,
            x,
            w,
            bias,
            y,
            scratch,
        } = self;
        let cout = shape.out_channels;
        if shape.is_pointwise() {
            ops.linear(patch, x, w, y);
            add_bias(y, bias, cout);
            return Ok(());
        }
        let (oh, ow) = shape.output_size()?;
        let pixels = oh * ow;
        for b in 0..shape.batch {
            let mut p0 = 0;
            while p0 < pixels {
                let rows = CONV_TILE.min(pixels - p0);
                let tile = scratch.get_mut(..rows * patch).ok_or(Error::Overflow)?;
                for r in 0..rows {
                    let dst = tile
                        .get_mut(r * patch..(r + 1) * patch)
                        .ok_or(Error::Overflow)?;
                    let p = p0 + r;
                    gather(shape, x, b, p / ow.max(1), p % ow.max(1), dst);
                }
                let at = (b * pixels + p0) * cout;
                let y_tile = y.get_mut(at..at + rows * cout).ok_or(Error::Overflow)?;
                ops.linear(patch, tile, w, y_tile);
                add_bias(y_tile, bias, cout);
                p0 += rows;
            }
        }
        Ok(())
    }
}

/// Copies the `k×k×C` patch of output pixel `(oy, ox)` of image `b` into `dst`, zeros outside
/// the input.
#[inline(always)]
fn gather(shape: &Conv2dShape, x: &[f32], b: usize, oy: usize, ox: usize, dst: &mut [f32]) {
    let (k, c) = (shape.kernel, shape.in_channels);
    let run = k * c;
    for ky in 0..k {
        let iy = (oy * shape.stride + ky).wrapping_sub(shape.padding);
        let Some(row_dst) = dst.get_mut(ky * run..(ky + 1) * run) else {
            return;
        };
        if iy >= shape.height {
            row_dst.fill(0.0);
            continue;
        }
        for kx in 0..k {
            let ix = (ox * shape.stride + kx).wrapping_sub(shape.padding);
            let Some(px_dst) = row_dst.get_mut(kx * c..(kx + 1) * c) else {
                return;
            };
            if ix >= shape.width {
                px_dst.fill(0.0);
                continue;
            }
            let at = ((b * shape.height + iy) * shape.width + ix) * c;
            match x.get(at..at + c) {
                Some(src) => {
                    for (d, &s) in px_dst.iter_mut().zip(src) {
                        *d = s;
                    }
                }
                _ => px_dst.fill(0.0),
            }
        }
    }
}

/// `y[r·n + o] += bias[o]` (nothing for an empty bias).
#[inline(always)]
fn add_bias(y: &mut [f32], bias: &[f32], n: usize) {
    if bias.is_empty() {
        return;
    }
    for row in y.chunks_exact_mut(n.max(1)) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_the_formula() {
        let s = Conv2dShape::new(1, 8, 6, 3, 4, 3);
        assert_eq!(s.output_size(), Ok((8, 6)));
        assert_eq!(s.with_stride(2).output_size(), Ok((4, 3)));
        assert_eq!(s.with_padding(0).output_size(), Ok((6, 4)));
        assert!(Conv2dShape::new(1, 1, 1, 1, 1, 3)
            .with_padding(0)
            .output_size()
            .is_err());
        assert_eq!(
            conv2d_scratch_len(&Conv2dShape::new(1, 4, 4, 8, 8, 1)),
            Ok(0)
        );
        assert_eq!(conv2d_scratch_len(&s), Ok(CONV_TILE * 27));
    }

    #[test]
    fn bad_lengths_are_refused_before_writing() {
        let s = Conv2dShape::new(1, 4, 4, 2, 3, 3);
        let (x, w) = ([1.0f32; 32], [1.0f32; 54]);
        let mut y = [7.0f32; 48];
        let mut scratch = [0.0f32; CONV_TILE * 18];
        assert_eq!(conv2d_scratch_len(&s), Ok(scratch.len()));
        assert!(conv2d(&s, &x[..31], &w, &[], &mut y, &mut scratch).is_err());
        assert!(conv2d(&s, &x, &w, &[1.0], &mut y, &mut scratch).is_err());
        assert!(conv2d(&s, &x, &w, &[], &mut y, &mut scratch[..10]).is_err());
        assert!(y.iter().all(|&v| v == 7.0));
        conv2d(&s, &x, &w, &[], &mut y, &mut scratch).unwrap();
        // The centre pixel of a 3×3 all-ones filter over all-ones input sees 9·2 ones.
        assert_eq!(y[(4 + 1) * 3], 18.0);
        // A corner sees 4 pixels.
        assert_eq!(y[0], 8.0);
    }
}
