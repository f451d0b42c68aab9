//! A throughput probe: independent fused multiply-add chains on a backend's lanes, for benches
//! that report kernel speed as a fraction of the core's measured peak.

use super::isa::{Isa, LaneJob};
use super::{run_lanes, Backend};
use crate::error::Result;

/// Independent chains: enough to cover the FMA latency of every supported core (4 cycles, two
/// pipes) with registers to spare.
pub const PEAK_CHAINS: usize = 12;

/// Runs [`PEAK_CHAINS`] independent chains of `steps` fused multiply-adds on 16 lanes each
/// (`2·16·PEAK_CHAINS·steps` FLOP) on `backend`, and returns their sum so that nothing is
/// optimised away. Time it to measure the backend's FMA peak (pass `steps` through
/// `std::hint::black_box`, or the compiler evaluates the chains at compile time).
pub fn fma_chains(backend: Backend, steps: usize) -> Result<f32> {
    run_lanes(backend, Chains(steps))
}

struct Chains(usize);

impl LaneJob for Chains {
    type Output = f32;
    #[inline(always)]
    fn run<L: Isa>(self, l: L) -> f32 {
        let (a, b) = (l.splat(0.999_9), l.splat(1.0e-4));
        let mut acc = [l.splat(1.0); PEAK_CHAINS];
        for _ in 0..self.0 {
            for x in acc.iter_mut() {
                *x = l.mul_add(a, *x, b);
            }
        }
        acc.iter().map(|&x| l.reduce_add(x)).sum()
    }
}
