//! Loss scaling for fp16 mixed-precision training ([`super::Precision::MixedF16`]).

/// Dynamic loss scaling with the defaults of PyTorch's `torch.amp.GradScaler`: start at 2^16,
/// halve the scale and skip the step when a gradient overflows, double it after 2000 steps in a row
/// without overflow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaler {
    /// The current scale.
    pub scale: f32,
    /// Steps since the last overflow or growth.
    pub good_steps: usize,
    /// Steps skipped because of an overflow so far.
    pub skipped: usize,
}

impl LossScaler {
    /// The initial scale (PyTorch's `init_scale`).
    pub const INIT: f32 = 65536.0;
    /// Steps without overflow before the scale doubles (PyTorch's `growth_interval`).
    pub const GROWTH_INTERVAL: usize = 2000;

    /// A scaler at its initial scale.
    pub(crate) fn new() -> LossScaler {
        LossScaler {
            scale: Self::INIT,
            good_steps: 0,
            skipped: 0,
        }
    }

    /// Records whether this step's gradients overflowed and adapts the scale.
    pub(crate) fn update(&mut self, overflowed: bool) {
        if overflowed {
            self.scale *= 0.5;
            self.good_steps = 0;
            self.skipped += 1;
        } else {
            self.good_steps += 1;
            if self.good_steps == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LossScaler;

    #[test]
    fn halves_on_overflow_and_doubles_after_the_growth_interval() {
        let mut s = LossScaler::new();
        s.update(true);
        assert_eq!((s.scale, s.skipped), (LossScaler::INIT / 2.0, 1));
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            s.update(false);
        }
        assert_eq!(s.scale, LossScaler::INIT / 2.0);
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (LossScaler::INIT, 0));
    }
}
