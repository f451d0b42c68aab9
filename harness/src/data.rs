//! Seeded input generators: the same inputs for tests, studies and benches.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, StudentT};

/// How attention inputs are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum InputDistribution {
    /// Independent standard normal entries.
    Normal,
    /// Heavy-tailed entries: Student's t with 3 degrees of freedom, plus 1% of entries replaced by
    /// outliers of magnitude 20 (the activation outliers seen in trained transformers).
    Outliers,
}

impl InputDistribution {
    /// Short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            InputDistribution::Normal => "normal",
            InputDistribution::Outliers => "outliers",
        }
    }
}

/// The seeded generator every study uses.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` values drawn from `dist` with `seed`, as `f32`.
pub fn tensor(dist: InputDistribution, len: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng(seed);
    match dist {
        InputDistribution::Normal => (0..len).map(|_| StandardNormal.sample(&mut rng)).collect(),
        InputDistribution::Outliers => {
            let t = StudentT::new(3.0f32).expect("3 degrees of freedom is a valid Student's t");
            (0..len)
                .map(|_| {
                    if rng.random::<f32>() < 0.01 {
                        if rng.random::<bool>() {
                            20.0
                        } else {
                            -20.0
                        }
                    } else {
                        t.sample(&mut rng)
                    }
                })
                .collect()
        }
    }
}
