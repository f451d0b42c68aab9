//! The one dispatch: a kernel's loop, written once over [`Lanes`], runs on the token of the chosen
//! backend inside a function compiled for that backend's target features.
//!
//! Every kernel that runs on lanes (attention's and the dense layer's row primitives, the
//! optimizer steps, the norms) is a [`LaneJob`]; [`run_lanes`] picks the token and enters its
//! `#[target_feature]` function once per job ([`Isa::enter`]), so the whole loop (which must be
//! `#[inline(always)]` down to the lane operations) is compiled for those features. The generic
//! backend runs the same loop on the [`Scalar`] token: one IEEE operation per lane, the same bits
//! as every SIMD backend.

#[cfg(target_arch = "aarch64")]
use super::aarch64;
use super::isa::{Isa, LaneJob};
#[cfg(feature = "nightly")]
use super::portable;
use super::scalar::Scalar;
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::Backend;
use crate::error::{Error, Result};

/// Runs `job` on `backend` (`Auto`: [`Backend::best`]) inside the token's target features;
/// `Err(BackendUnavailable)` when this build or CPU cannot run it.
#[inline]
pub(crate) fn run_lanes<J: LaneJob>(backend: Backend, job: J) -> Result<J::Output> {
    with_token(backend, Entered(job))
}

/// A job run inside its token's target features (those of its plain ISA: only attention's bf16
/// scores use the extra ones, and they enter their own token per call).
struct Entered<J>(J);

impl<J: LaneJob> LaneJob for Entered<J> {
    type Output = J::Output;
    #[inline(always)]
    fn run<L: Isa>(self, l: L) -> J::Output {
        l.plain().enter(self.0)
    }
}

/// Hands `job` the token of `backend` (`Auto`: [`Backend::best`]) without entering its target
/// features: for a job made of calls that each enter them (the row primitives of attention, each
/// its own `Isa::enter`: compiled into one function, the whole flash loop nest measured 8-14%
/// slower on Zen 4). `Err(BackendUnavailable)` when this build or CPU cannot run it.
#[inline]
pub(crate) fn with_token<J: LaneJob>(backend: Backend, job: J) -> Result<J::Output> {
    let chosen = backend.resolve();
    match chosen {
        Backend::Generic => Ok(job.run(Scalar)),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => run_on(x86::Avx2::new(), chosen, job),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => run_on(x86::Avx512::<false>::new(), chosen, job),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512Bf16 => run_on(x86::Avx512Bf16::new(), chosen, job),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon => run_on(aarch64::Neon::new(), chosen, job),
        #[cfg(feature = "nightly")]
        Backend::Portable => run_on(portable::Portable::new(), chosen, job),
        other => Err(Error::BackendUnavailable(other)),
    }
}

/// Runs `job` with `token`, if its constructor found the CPU's features.
#[allow(dead_code)] // unused on targets with no SIMD backend
#[inline(always)]
fn run_on<T: Isa, J: LaneJob>(token: Option<T>, backend: Backend, job: J) -> Result<J::Output> {
    match token {
        Some(t) => Ok(job.run(t)),
        None => Err(Error::BackendUnavailable(backend)),
    }
}
