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
