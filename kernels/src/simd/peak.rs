//! A throughput probe: independent fused multiply-add chains on a backend's lanes, for benches
//! that report kernel speed as a fraction of the core's measured peak.

use super::isa::{Isa, LaneJob};
use super::{run_lanes, Backend};
use crate::error::Result;

/// Independent chains: enough to cover the FMA latency of every supported core (4 cycles, two
/// pipes: 8 registers in flight, AVX2's 16 lanes being two), and few enough that AVX2's twelve
/// chain registers and the two constants fit its 16 (12 chains spilled and measured AVX2 at 66%
/// of the AVX-512 peak on Zen 4, whose 512-bit FMAs are two 256-bit halves anyway).
pub const PEAK_CHAINS: usize = 6;

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
        // Through `black_box`: from constants the compiler finds the chains' fixed point
        // (0.9999·1 + 1e-4 rounds to 1) and removes the loop.
        let start = core::hint::black_box(1.0);
        let (a, b) = (l.splat(core::hint::black_box(0.999_9)), l.splat(1.0e-4));
        let mut acc = [l.splat(start); PEAK_CHAINS];
        for _ in 0..self.0 {
            for x in acc.iter_mut() {
                *x = l.mul_add(a, *x, b);
            }
        }
        acc.iter().map(|&x| l.reduce_add(x)).sum()
    }
}
