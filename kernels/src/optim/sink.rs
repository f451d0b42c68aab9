//! Optional per-element outputs of a fused loop: a rounded parameter copy, a saved gradient.
//!
//! The loops zip their inputs with an iterator of sinks: `repeat(())` writes nothing and costs
//! nothing; `slice.iter_mut()` writes each value (rounded into the slice's element format).

use crate::Element;

/// Receives one `f32` value.
pub(crate) trait Sink {
    /// Stores `x` (or drops it).
    fn put(self, x: f32);
}

impl Sink for () {
    #[inline(always)]
    fn put(self, _: f32) {}
}

impl<E: Element> Sink for &mut E {
    #[inline(always)]
    fn put(self, x: f32) {
        *self = E::from_f32(x);
    }
}

/// The sink that writes nothing, as an endless iterator.
#[inline(always)]
pub(crate) fn nowhere() -> core::iter::Repeat<()> {
    core::iter::repeat(())
}
