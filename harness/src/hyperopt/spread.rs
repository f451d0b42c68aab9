//! The study's statistics: the spread of final results across initial learning rates for one
//! seed ([`Spread`]), and its mean and variation over seeds ([`Summary`]).

use super::Record;

/// The spread of final results across the initial learning rates of one (task, optimizer,
/// height, seed).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Task name.
    pub task: &'static str,
    /// Base optimizer.
    pub optimizer: &'static str,
    /// Tower height.
    pub height: usize,
    /// Seed.
    pub seed: u64,
    /// Best final loss.
    pub best: f64,
    /// Worst final loss.
    pub worst: f64,
    /// `worst - best` final loss: the sensitivity to the initial learning rate.
    pub range: f64,
    /// Standard deviation of the final losses.
    pub std: f64,
    /// Best and worst final test error (classifiers).
    pub error: Option<(f64, f64)>,
    /// Runs that diverged.
    pub diverged: usize,
    /// Runs.
    pub runs: usize,
}

impl Spread {
    /// `worst - best` final test error (classifiers).
    pub fn error_range(&self) -> Option<f64> {
        self.error.map(|(b, w)| w - b)
    }
}

fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn min_max(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

/// Mean and population standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    (
        mean,
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

/// One [`Spread`] per (task, optimizer, height, seed), in record order.
pub fn spreads(records: &[Record]) -> Vec<Spread> {
    let keys = distinct(
        records
            .iter()
            .map(|r| (r.task, r.optimizer, r.height, r.seed)),
    );
    keys.into_iter()
        .map(|(task, optimizer, height, seed)| {
            let cell: Vec<&Record> = records
                .iter()
                .filter(|r| {
                    (r.task, r.optimizer, r.height, r.seed) == (task, optimizer, height, seed)
                })
                .collect();
            let losses: Vec<f64> = cell.iter().map(|r| r.final_loss).collect();
            let (best, worst) = min_max(losses.iter().copied());
            let errors: Option<Vec<f64>> = cell.iter().map(|r| r.final_error).collect();
            Spread {
                task,
                optimizer,
                height,
                seed,
                best,
                worst,
                range: worst - best,
                std: mean_std(&losses).1,
                error: errors.map(|e| min_max(e.into_iter())),
                diverged: cell.iter().filter(|r| r.diverged_at.is_some()).count(),
                runs: cell.len(),
            }
        })
        .collect()
}

/// A statistic over seeds: mean, population standard deviation, smallest and largest.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct OverSeeds {
    /// Mean over seeds.
    pub mean: f64,
    /// Population standard deviation over seeds.
    pub std: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl OverSeeds {
    fn of(v: &[f64]) -> OverSeeds {
        let (mean, std) = mean_std(v);
        let (min, max) = min_max(v.iter().copied());
        OverSeeds {
            mean,
            std,
            min,
            max,
        }
    }
}

/// The spreads of one (task, optimizer, height) over seeds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Task name.
    pub task: &'static str,
    /// Base optimizer.
    pub optimizer: &'static str,
    /// Tower height.
    pub height: usize,
    /// The tower, paper notation.
    pub tower: String,
    /// Seeds.
    pub seeds: usize,
    /// Final-loss spread (worst - best over initial learning rates), over seeds.
    pub loss_range: OverSeeds,
    /// Final test-error spread over initial learning rates, over seeds (classifiers).
    pub error_range: Option<OverSeeds>,
    /// Best final test error over initial learning rates, over seeds (classifiers).
    pub best_error: Option<OverSeeds>,
    /// Worst final test error over initial learning rates, over seeds (classifiers).
    pub worst_error: Option<OverSeeds>,
    /// Best final loss over initial learning rates, over seeds.
    pub best_loss: OverSeeds,
    /// Runs that diverged (all seeds).
    pub diverged: usize,
    /// Runs (all seeds).
    pub runs: usize,
}

/// One [`Summary`] per (task, optimizer, height), in record order.
pub fn summaries(records: &[Record]) -> Vec<Summary> {
    let all = spreads(records);
    let keys = distinct(all.iter().map(|s| (s.task, s.optimizer, s.height)));
    keys.into_iter()
        .map(|(task, optimizer, height)| {
            let ss: Vec<&Spread> = all
                .iter()
                .filter(|s| (s.task, s.optimizer, s.height) == (task, optimizer, height))
                .collect();
            let of = |f: &dyn Fn(&Spread) -> Option<f64>| -> Option<OverSeeds> {
                let v: Option<Vec<f64>> = ss.iter().map(|s| f(s)).collect();
                v.map(|v| OverSeeds::of(&v))
            };
            let tower = records
                .iter()
                .find(|r| (r.task, r.optimizer, r.height) == (task, optimizer, height))
                .map_or(String::new(), |r| r.tower.clone());
            let losses: Vec<f64> = ss.iter().map(|s| s.range).collect();
            let bests: Vec<f64> = ss.iter().map(|s| s.best).collect();
            Summary {
                task,
                optimizer,
                height,
                tower,
                seeds: ss.len(),
                loss_range: OverSeeds::of(&losses),
                error_range: of(&|s| s.error_range()),
                best_error: of(&|s| s.error.map(|e| e.0)),
                worst_error: of(&|s| s.error.map(|e| e.1)),
                best_loss: OverSeeds::of(&bests),
                diverged: ss.iter().map(|s| s.diverged).sum(),
                runs: ss.iter().map(|s| s.runs).sum(),
            }
        })
        .collect()
}

/// How a statistic moves with the tower's height, computed from its means over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Trend {
    /// Every step up in height lowers the mean (strictly), from height 0 to the top.
    FallsMonotonically,
    /// The top is below height 0, but some step up raises it.
    FallsNotMonotonically,
    /// The top is not below height 0.
    DoesNotFall,
}

impl Trend {
    /// The trend of `means`, ordered by height (height 0 first).
    pub fn of(means: &[f64]) -> Trend {
        let (Some(first), Some(last)) = (means.first(), means.last()) else {
            return Trend::DoesNotFall;
        };
        if means.len() < 2 || last >= first {
            Trend::DoesNotFall
        } else if means.windows(2).all(|w| w[1] < w[0]) {
            Trend::FallsMonotonically
        } else {
            Trend::FallsNotMonotonically
        }
    }

    /// The words the report prints.
    pub fn words(self) -> &'static str {
        match self {
            Trend::FallsMonotonically => "falls monotonically with height",
            Trend::FallsNotMonotonically => {
                "lower at the top than at height 0, but not monotone in height"
            }
            Trend::DoesNotFall => "does not fall with height",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trends_are_computed_not_assumed() {
        assert_eq!(Trend::of(&[0.5, 0.3, 0.2]), Trend::FallsMonotonically);
        assert_eq!(Trend::of(&[0.5, 0.1, 0.3]), Trend::FallsNotMonotonically);
        assert_eq!(Trend::of(&[0.5, 0.1, 0.5]), Trend::DoesNotFall);
        assert_eq!(Trend::of(&[0.031, 0.121, 0.329]), Trend::DoesNotFall);
        assert_eq!(Trend::of(&[0.5, 0.5, 0.2]), Trend::FallsNotMonotonically);
        assert_eq!(Trend::of(&[0.5]), Trend::DoesNotFall);
    }

    #[test]
    fn over_seeds_statistics() {
        let s = OverSeeds::of(&[1.0, 3.0]);
        assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
    }
}
