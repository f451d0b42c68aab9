//! Throughput probes: independent chains of fused multiply-adds (and of bf16 pair dot products,
//! `vdpbf16ps`) on a backend's lanes, for benches that report kernel speed as a fraction of the
//! core's measured peak.

use super::isa::{Isa, LaneJob};
use super::{run_lanes, with_token, Backend};
use crate::error::{Error, Result};

/// Chains on tokens with 32 vector registers (AVX-512): enough to cover two pipes of latency up
/// to 8 cycles. Zen 5 runs 512-bit FMAs at full width (two a cycle, 4 cycles each: 8 in flight),
/// where the 6 chains this probe once ran on every token measured 75% of the peak and flash
/// "beat" it; `vdpbf16ps` has a longer latency still.
const WIDE_CHAINS: usize = 16;
const _: () = assert!(WIDE_CHAINS >= 2 * 8);
/// Chains on 16-register tokens (AVX2's 16 lanes being two registers): enough for two pipes of
/// latency 4 (12 registers in flight), few enough that the chains and the two constants fit
/// (12 chains spilled and measured AVX2 at 66% of the AVX-512 peak on Zen 4).
const NARROW_CHAINS: usize = 6;

/// The number of independent 16-lane chains the probes run on `backend` (`Auto`: the best):
/// [`fma_chains`] does `2·16·chains·steps` FLOP, [`bf16_dot_chains`] `4·16·chains·steps`.
/// `Err(BackendUnavailable)` when this build or CPU cannot run it.
pub fn peak_chains(backend: Backend) -> Result<usize> {
    run_lanes(backend, ChainCount)
}

/// Runs [`peak_chains`] independent chains of `steps` fused multiply-adds on 16 lanes each
/// (`2·16·chains·steps` FLOP) on `backend`, and returns their sum so that nothing is optimised
/// away. Time it to measure the backend's FMA peak (pass `steps` through `std::hint::black_box`,
/// or the compiler evaluates the chains at compile time).
pub fn fma_chains(backend: Backend, steps: usize) -> Result<f32> {
    run_lanes(backend, Chains::<false>(steps))
}

/// [`fma_chains`] with the token's bf16 pair instruction (`vdpbf16ps`: each lane adds the two
/// products of a pair, 4 FLOP) in place of the fused multiply-add: `4·16·chains·steps` FLOP.
/// `Err(BackendUnavailable)` on a backend without the instruction (every one but `avx512bf16`).
pub fn bf16_dot_chains(backend: Backend, steps: usize) -> Result<f32> {
    with_token(backend, OwnFeatures(Chains::<true>(steps)))?
        .ok_or(Error::BackendUnavailable(backend))
}

/// A job run inside its token's own target features, not only its plain ones (`run_lanes`): the
/// pair instruction is one of AVX512_BF16's.
struct OwnFeatures<J>(J);

impl<J: LaneJob> LaneJob for OwnFeatures<J> {
    type Output = J::Output;
    #[inline(always)]
    fn run<L: Isa>(self, l: L) -> J::Output {
        l.enter(self.0)
    }
}

struct ChainCount;

impl LaneJob for ChainCount {
    type Output = usize;
    #[inline(always)]
    fn run<L: Isa>(self, _: L) -> usize {
        if L::WIDE_KEY_GROUPS {
            WIDE_CHAINS
        } else {
            NARROW_CHAINS
        }
    }
}

/// `steps` rounds of the chains; `BF16`: by the pair instruction (`None` without one).
struct Chains<const BF16: bool>(usize);

impl LaneJob for Chains<false> {
    type Output = f32;
    #[inline(always)]
    fn run<L: Isa>(self, l: L) -> f32 {
        if L::WIDE_KEY_GROUPS {
            fma::<L, WIDE_CHAINS>(l, self.0)
        } else {
            fma::<L, NARROW_CHAINS>(l, self.0)
        }
    }
}

impl LaneJob for Chains<true> {
    type Output = Option<f32>;
    #[inline(always)]
    fn run<L: Isa>(self, l: L) -> Option<f32> {
        if !L::BF16_DOTS {
            return None;
        }
        Some(if L::WIDE_KEY_GROUPS {
            pair_dots::<L, WIDE_CHAINS>(l, self.0)
        } else {
            pair_dots::<L, NARROW_CHAINS>(l, self.0)
        })
    }
}

#[inline(always)]
fn fma<L: Isa, const N: usize>(l: L, steps: usize) -> f32 {
    // Through `black_box`: from constants the compiler finds the chains' fixed point
    // (0.9999·1 + 1e-4 rounds to 1) and removes the loop.
    let start = core::hint::black_box(1.0);
    let (a, b) = (l.splat(core::hint::black_box(0.999_9)), l.splat(1.0e-4));
    let mut acc = [l.splat(start); N];
    for _ in 0..steps {
        for x in acc.iter_mut() {
            *x = l.mul_add(a, *x, b);
        }
    }
    acc.iter().map(|&x| l.reduce_add(x)).sum()
}

/// The bits of the bf16 pair `(1, 1)` and of `(2^-10, 2^-10)`: each step adds `2^-9` to every
/// lane, exactly (the sum stays exact up to `2^24` steps).
const ONES: u32 = 0x3F80_3F80;
const SMALL: u32 = 0x3A80_3A80;

#[inline(always)]
fn pair_dots<L: Isa, const N: usize>(l: L, steps: usize) -> f32 {
    let q = core::hint::black_box(f32::from_bits(ONES));
    let k = l.splat(f32::from_bits(core::hint::black_box(SMALL)));
    let mut acc = [l.splat(0.0); N];
    for _ in 0..steps {
        for x in acc.iter_mut() {
            *x = l.bf16_pair_dot(*x, q, k);
        }
    }
    acc.iter().map(|&x| l.reduce_add(x)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::available_backends;

    #[test]
    fn every_backend_runs_the_same_chains() {
        let steps = if cfg!(miri) { 20 } else { 1000 };
        for b in available_backends() {
            let n = peak_chains(b).unwrap_or(0);
            assert!(n >= NARROW_CHAINS, "{b:?}: {n} chains");
            // The same recurrence in every lane of every chain: the scalar model's value; 16
            // lanes by the halving tree (exactly 16·x), then the chains in order.
            let mut x = 1.0f32;
            for _ in 0..steps {
                x = libm::fmaf(0.999_9, x, 1.0e-4);
            }
            let want: f32 = core::iter::repeat_n(16.0 * x, n).sum();
            assert_eq!(fma_chains(b, steps), Ok(want), "{b:?}");
        }
    }

    #[test]
    fn pair_dot_chains_add_two_to_the_minus_nine_a_step_where_the_instruction_is() {
        let steps = if cfg!(miri) { 20 } else { 1000 };
        for b in available_backends() {
            let n = peak_chains(b).unwrap_or(0);
            match bf16_dot_chains(b, steps) {
                Ok(sum) => {
                    assert_eq!(b, Backend::Avx512Bf16);
                    assert_eq!(sum, (16 * n * steps) as f32 / 512.0, "{b:?}");
                }
                Err(e) => {
                    assert_ne!(b, Backend::Avx512Bf16, "{e:?}");
                    assert_eq!(e, Error::BackendUnavailable(b));
                }
            }
        }
    }

    #[test]
    fn thirty_two_register_tokens_cover_two_pipes_of_latency_eight() {
        for b in available_backends() {
            if matches!(b, Backend::Avx512 | Backend::Avx512Bf16) {
                assert_eq!(peak_chains(b), Ok(WIDE_CHAINS));
            }
        }
    }
}
