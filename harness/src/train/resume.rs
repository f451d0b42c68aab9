//! Resumable training: the whole state of a [`Trainer`] (weights, Adam's moments, the step) in
//! one file, written atomically, and a run continued from it that ends with the same weights bit
//! for bit as an uninterrupted one (the data and dropout draws of the steps already taken are
//! replayed from the seed).
//!
//! Layout, little-endian: the magic `TSRSTATE1`, `u64` step, `u64` parameter count, `u64` length
//! of the settings text, the settings text (the run's `TrainConfig` in `Debug` form: a state is
//! only resumed by the same settings), then the weights, `m` and `v` as `f32`.

use super::Trainer;
use anyhow::{ensure, Context};
use std::path::Path;

const MAGIC: &[u8; 9] = b"TSRSTATE1";

impl Trainer {
    /// Writes the run's state to `path` (atomically: a crash mid-write leaves the old state).
    pub fn save_state(&self, path: &Path) -> anyhow::Result<()> {
        let settings = format!("{:?}", self.cfg);
        let n = self.params.len();
        let mut out = Vec::with_capacity(MAGIC.len() + 24 + settings.len() + 12 * n);
        out.extend(MAGIC);
        for x in [self.step as u64, n as u64, settings.len() as u64] {
            out.extend(x.to_le_bytes());
        }
        out.extend(settings.as_bytes());
        for v in [&self.params, &self.m, &self.v] {
            out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
        Ok(crate::fsutil::write_atomic(path, &out)?)
    }

    /// Continues the run saved at `path` by [`Trainer::save_state`]; this trainer must have been
    /// made with the same settings and data.
    pub fn resume(&mut self, path: &Path) -> anyhow::Result<()> {
        let bytes = crate::fsutil::read_input(path)
            .with_context(|| format!("cannot read training state {}", path.display()))?;
        self.restore(&bytes)
            .with_context(|| format!("{} is not a usable training state", path.display()))
    }

    fn restore(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .context("it does not start with TSRSTATE1")?;
        let word = |i: usize| -> anyhow::Result<usize> {
            let b = rest.get(8 * i..8 * i + 8).context("it is truncated")?;
            let x = u64::from_le_bytes(b.try_into().context("it is truncated")?);
            usize::try_from(x).context("a size does not fit this machine")
        };
        let (step, n, len) = (word(0)?, word(1)?, word(2)?);
        let rest = &rest[24..];
        let settings = rest.get(..len).context("it is truncated")?;
        let ours = format!("{:?}", self.cfg);
        ensure!(
            settings == ours.as_bytes(),
            "it was saved by a run with other settings:\n  saved: {}\n  now:   {ours}",
            String::from_utf8_lossy(settings)
        );
        ensure!(
            n == self.params.len() && step <= self.cfg.steps,
            "it holds {n} weights at step {step}; the run has {} weights and {} steps",
            self.params.len(),
            self.cfg.steps
        );
        let floats = &rest[len..];
        ensure!(
            floats.len() == 12 * n,
            "it holds {} bytes of weights and moments, {} expected",
            floats.len(),
            12 * n
        );
        let mut chunks = floats
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        for v in [&mut self.params, &mut self.m, &mut self.v] {
            v.iter_mut().zip(&mut chunks).for_each(|(x, y)| *x = y);
        }
        ensure!(
            self.params
                .iter()
                .chain(&self.m)
                .chain(&self.v)
                .all(|x| x.is_finite()),
            "it holds non-finite values"
        );
        // Replay the random draws of the steps already taken.
        for t in 0..step {
            let rates = self.rates(t);
            self.draw_batch(&rates);
        }
        self.step = step;
        Ok(())
    }
}
