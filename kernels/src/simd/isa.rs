//! What a lane kernel is ([`LaneJob`]) and what a token does to run one ([`Isa`]): the two traits
//! the tokens implement and the dispatch calls, apart from both so neither imports the other.

use super::lanes::Lanes;

/// A loop written once over [`Lanes`], for [`run_lanes`](super::run_lanes).
pub(crate) trait LaneJob {
    /// What the loop returns.
    type Output;
    /// Runs the loop on the lanes of `l`. Implementations are `#[inline(always)]` (and so is
    /// everything they call with `l`), so that they are compiled inside [`Isa::enter`].
    fn run<L: Isa>(self, l: L) -> Self::Output;
}

/// A lane token that can enter code compiled for its instruction set.
pub(crate) trait Isa: Lanes {
    /// The token for jobs that use none of this one's extra instructions (AVX-512F for the
    /// AVX512_BF16 token, whose extra features only serve bf16 attention scores; `Self` for every
    /// other token). Such jobs are compiled as on that token, instruction for instruction.
    type Plain: Isa;
    /// This token's [`Isa::Plain`] token.
    fn plain(self) -> Self::Plain;
    /// Runs `job` on `self` inside a function with this token's target features enabled.
    fn enter<J: LaneJob>(self, job: J) -> J::Output;
}

/// Implements [`Isa`] for a token that is its own plain ISA: one `#[target_feature]` function,
/// entered with the token as the proof that the features are present. The only `unsafe` of the
/// dispatch, written once for every instruction set.
#[allow(unused_macros)] // unused on targets with no SIMD backend
macro_rules! isa_with_features {
    ($token:ty, $features:literal) => {
        impl $crate::simd::isa::Isa for $token {
            type Plain = Self;
            #[inline(always)]
            fn plain(self) -> Self {
                self
            }
            #[inline]
            fn enter<J: $crate::simd::isa::LaneJob>(self, job: J) -> J::Output {
                #[target_feature(enable = $features)]
                fn wrapper<J: $crate::simd::isa::LaneJob>(t: $token, job: J) -> J::Output {
                    job.run(t)
                }
                // SAFETY: the token exists only where these target features are present.
                unsafe { wrapper(self, job) }
            }
        }
    };
}
#[allow(unused_imports)] // unused on targets with no SIMD backend
pub(crate) use isa_with_features;
