//! Resampling of NHWC images as a UNet needs it: nearest-neighbour 2× upsampling (the decoder's
//! `Upsample`, before its 3×3 convolution). Downsampling is a stride-2 3×3
//! [`conv2d`](super::conv2d), as in Stable Diffusion.

use crate::check::{length, mul, product};
use crate::{Error, Result};

/// Nearest-neighbour 2× upsampling of `batch` NHWC images `[height, width, channels]` into
/// `[2·height, 2·width, channels]`: each pixel is copied into a 2×2 block (exact).
pub fn upsample_nearest2x(
    batch: usize,
    height: usize,
    width: usize,
    channels: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    let n = product(&[batch, height, width, channels])?;
    length("x", x.len(), n)?;
    length("y", y.len(), mul(n, 4)?)?;
    if channels == 0 {
        return Ok(());
    }
    let out_row = 2 * width * channels;
    for (r, src_row) in x.chunks_exact(width.max(1) * channels).enumerate() {
        // Input row `r` (image `r / height`, row `r % height`) becomes output rows `2r`, `2r + 1`.
        let Some(dst) = y.get_mut(2 * r * out_row..(2 * r + 2) * out_row) else {
            return Err(Error::Overflow);
        };
        let (top, bottom) = dst.split_at_mut(out_row.min(dst.len()));
        for (col, px) in src_row.chunks_exact(channels).enumerate() {
            for half in [&mut *top, &mut *bottom] {
                let at = 2 * col * channels;
                let Some(pair) = half.get_mut(at..at + 2 * channels) else {
                    return Err(Error::Overflow);
                };
                let (a, b) = pair.split_at_mut(channels);
                for ((da, db), &v) in a.iter_mut().zip(b.iter_mut()).zip(px) {
                    *da = v;
                    *db = v;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pixel_fills_a_two_by_two_block() {
        // One image 2×2, 2 channels.
        let x = [1.0f32, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0];
        let mut y = [f32::NAN; 32];
        upsample_nearest2x(1, 2, 2, 2, &x, &mut y).unwrap();
        let at = |r: usize, c: usize| &y[(r * 4 + c) * 2..(r * 4 + c) * 2 + 2];
        assert_eq!(at(0, 0), &[1.0, -1.0]);
        assert_eq!(at(1, 1), &[1.0, -1.0]);
        assert_eq!(at(0, 3), &[2.0, -2.0]);
        assert_eq!(at(3, 0), &[3.0, -3.0]);
        assert_eq!(at(3, 3), &[4.0, -4.0]);
        assert!(upsample_nearest2x(1, 2, 2, 2, &x, &mut y[..31]).is_err());
    }
}
