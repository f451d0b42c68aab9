//! Blocked dot-product accumulation: `K` sums over a long slice, fast and accurate.
//!
//! Terms are added in `f32` into [`LANES`] independent lanes (so the loop vectorises); every
//! [`FLUSH`] chunks the lanes are added into `f64` totals and cleared. Each `f32` lane therefore
//! sums at most `FLUSH` terms: the error of a total is below `(FLUSH + 1) u · Σ|term|` with
//! `u = 2^-24`, independent of the slice length.

/// Lanes of the `f32` accumulators.
pub(crate) const LANES: usize = 8;
/// Chunks of `LANES` terms summed in `f32` before flushing into `f64`.
pub(crate) const FLUSH: usize = 16;

/// `K` running sums.
pub(crate) struct Sums<const K: usize> {
    lanes: [[f32; LANES]; K],
    total: [f64; K],
    chunks: usize,
}

impl<const K: usize> Sums<K> {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Sums {
            lanes: [[0.0; LANES]; K],
            total: [0.0; K],
            chunks: 0,
        }
    }

    /// Adds one chunk of `LANES` terms to each sum.
    #[inline(always)]
    pub(crate) fn add_chunk(&mut self, terms: &[[f32; LANES]; K]) {
        for (lane, term) in self.lanes.iter_mut().zip(terms) {
            for (a, t) in lane.iter_mut().zip(term) {
                *a += *t;
            }
        }
        self.chunks += 1;
        if self.chunks == FLUSH {
            self.flush();
        }
    }

    /// Adds a single term to each sum (for the tail of a slice).
    #[inline(always)]
    pub(crate) fn add_one(&mut self, terms: [f32; K]) {
        for (total, t) in self.total.iter_mut().zip(terms) {
            *total += t as f64;
        }
    }

    fn flush(&mut self) {
        for (lane, total) in self.lanes.iter_mut().zip(self.total.iter_mut()) {
            *total += lane.iter().map(|&x| x as f64).sum::<f64>();
            *lane = [0.0; LANES];
        }
        self.chunks = 0;
    }

    /// The `K` totals.
    #[inline(always)]
    pub(crate) fn finish(mut self) -> [f64; K] {
        self.flush();
        self.total
    }
}

/// `x` rounded to `f32`, with the magnitude bits used by the fused finiteness checks.
#[inline(always)]
pub(crate) fn magnitude_bits(x: f32) -> u32 {
    x.to_bits() & 0x7fff_ffff
}

/// Magnitude bits at or above this mark a NaN or an infinity.
pub(crate) const NON_FINITE_BITS: u32 = 0x7f80_0000;
