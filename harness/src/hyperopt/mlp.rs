//! Task (a): a small ReLU MLP on a seeded synthetic classification problem, forward and backward
//! written here in plain `f32`.
//!
//! Inputs are standard normal in `INPUTS` dimensions; labels are the argmax of a random teacher
//! network (`INPUTS -> 32 tanh -> CLASSES`), with 5% of them replaced by a uniformly random class
//! so the task has a floor. The student is `INPUTS -> HIDDEN relu -> HIDDEN relu -> CLASSES`
//! with softmax cross-entropy, trained on minibatches drawn from a fixed training set and
//! evaluated on a held-out test set.

use super::{Objective, StudyError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Input dimension.
pub const INPUTS: usize = 16;
/// Hidden width of both hidden layers.
pub const HIDDEN: usize = 64;
/// Number of classes.
pub const CLASSES: usize = 8;
const TEACHER_HIDDEN: usize = 32;
const LABEL_NOISE: f64 = 0.05;

/// The layer sizes, input first.
const SIZES: [usize; 4] = [INPUTS, HIDDEN, HIDDEN, CLASSES];

/// A labelled data set.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `len * INPUTS` inputs, row-major.
    pub x: Vec<f32>,
    /// Labels in `0..CLASSES`.
    pub y: Vec<usize>,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Training and test sets of the synthetic task, from `seed`.
pub fn make_task(train: usize, test: usize, seed: u64) -> (Dataset, Dataset) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7EAC_4E12);
    let normal = |rng: &mut ChaCha8Rng| -> f32 { StandardNormal.sample(rng) };
    let w1: Vec<f32> = (0..INPUTS * TEACHER_HIDDEN)
        .map(|_| normal(&mut rng) * 1.5 / (INPUTS as f32).sqrt())
        .collect();
    let w2: Vec<f32> = (0..TEACHER_HIDDEN * CLASSES)
        .map(|_| normal(&mut rng) / (TEACHER_HIDDEN as f32).sqrt())
        .collect();
    let mut draw = |count: usize| {
        let mut x = Vec::with_capacity(count * INPUTS);
        let mut y = Vec::with_capacity(count);
        for _ in 0..count {
            let row: Vec<f32> = (0..INPUTS).map(|_| normal(&mut rng)).collect();
            let mut h = [0.0f32; TEACHER_HIDDEN];
            for (i, &xi) in row.iter().enumerate() {
                for (hj, w) in h
                    .iter_mut()
                    .zip(&w1[i * TEACHER_HIDDEN..(i + 1) * TEACHER_HIDDEN])
                {
                    *hj += xi * w;
                }
            }
            let mut logits = [0.0f32; CLASSES];
            for (j, hj) in h.iter().enumerate() {
                let a = hj.tanh();
                for (l, w) in logits.iter_mut().zip(&w2[j * CLASSES..(j + 1) * CLASSES]) {
                    *l += a * w;
                }
            }
            let label = if rng.random_bool(LABEL_NOISE) {
                rng.random_range(0..CLASSES)
            } else {
                argmax(&logits)
            };
            x.extend_from_slice(&row);
            y.push(label);
        }
        Dataset { x, y }
    };
    let train = draw(train);
    let test = draw(test);
    (train, test)
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Number of parameters: weights then biases of each layer.
pub fn param_count() -> usize {
    SIZES.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

/// He-uniform weights, zero biases, from `seed`.
pub fn init_params(seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0123_4567);
    let mut p = Vec::with_capacity(param_count());
    for w in SIZES.windows(2) {
        let bound = (6.0 / w[0] as f32).sqrt();
        p.extend((0..w[0] * w[1]).map(|_| rng.random_range(-bound..bound)));
        p.extend(std::iter::repeat_n(0.0, w[1]));
    }
    p
}

/// Offsets of each layer's weights and biases in the flat vector.
fn layout() -> [(usize, usize); 3] {
    let mut out = [(0, 0); 3];
    let mut at = 0;
    for (o, w) in out.iter_mut().zip(SIZES.windows(2)) {
        *o = (at, at + w[0] * w[1]);
        at += w[0] * w[1] + w[1];
    }
    out
}

/// Activations of one example kept for the backward pass.
struct Trace {
    acts: [Vec<f32>; 3],
    probs: Vec<f32>,
}

/// Forward pass of one example; returns the trace and the cross-entropy.
fn forward(p: &[f32], x: &[f32], label: usize) -> (Trace, f64) {
    let lay = layout();
    let mut acts = [x.to_vec(), vec![0.0; HIDDEN], vec![0.0; HIDDEN]];
    let mut logits = vec![0.0f32; CLASSES];
    for l in 0..3 {
        let (n_in, n_out) = (SIZES[l], SIZES[l + 1]);
        let (w, b) = (&p[lay[l].0..lay[l].1], &p[lay[l].1..lay[l].1 + n_out]);
        let mut out = b.to_vec();
        for (i, &a) in acts[l].iter().enumerate().take(n_in) {
            for (o, wv) in out.iter_mut().zip(&w[i * n_out..(i + 1) * n_out]) {
                *o += a * wv;
            }
        }
        if l < 2 {
            out.iter_mut().for_each(|v| *v = v.max(0.0));
            acts[l + 1] = out;
        } else {
            logits = out;
        }
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&z| ((z - max) as f64).exp()).sum();
    let probs: Vec<f32> = logits
        .iter()
        .map(|&z| (((z - max) as f64).exp() / sum) as f32)
        .collect();
    let loss = sum.ln() - (logits[label] - max) as f64;
    (Trace { acts, probs }, loss)
}

/// Adds `scale * d loss / d params` of one example into `grads`.
fn backward(p: &[f32], grads: &mut [f32], trace: &Trace, label: usize, scale: f32) {
    let lay = layout();
    let mut delta: Vec<f32> = trace.probs.iter().map(|&q| q * scale).collect();
    delta[label] -= scale;
    for l in (0..3).rev() {
        let (n_in, n_out) = (SIZES[l], SIZES[l + 1]);
        let (w0, b0) = lay[l];
        let a = &trace.acts[l];
        for (gb, d) in grads[b0..b0 + n_out].iter_mut().zip(&delta) {
            *gb += d;
        }
        for (i, &ai) in a.iter().enumerate().take(n_in) {
            for (gw, d) in grads[w0 + i * n_out..w0 + (i + 1) * n_out]
                .iter_mut()
                .zip(&delta)
            {
                *gw += ai * d;
            }
        }
        if l > 0 {
            let w = &p[w0..b0];
            let mut prev = vec![0.0f32; n_in];
            for (i, pv) in prev.iter_mut().enumerate() {
                if a[i] > 0.0 {
                    *pv = w[i * n_out..(i + 1) * n_out]
                        .iter()
                        .zip(&delta)
                        .map(|(w, d)| w * d)
                        .sum();
                }
            }
            delta = prev;
        }
    }
}

/// The MLP task as an [`Objective`].
pub struct MlpTask {
    train: Dataset,
    test: Dataset,
    batch: usize,
    rng: ChaCha8Rng,
}

impl MlpTask {
    /// The task with `train`/`test` examples and minibatches of `batch`, data from `seed`,
    /// minibatch order from `order_seed`.
    pub fn new(train: usize, test: usize, batch: usize, seed: u64, order_seed: u64) -> Self {
        let (train, test) = make_task(train, test, seed);
        MlpTask {
            train,
            test,
            batch,
            rng: ChaCha8Rng::seed_from_u64(order_seed),
        }
    }
}

impl Objective for MlpTask {
    fn param_count(&self) -> usize {
        param_count()
    }

    fn init(&self, seed: u64) -> Result<Vec<f32>, StudyError> {
        Ok(init_params(seed))
    }

    fn chance_loss(&self) -> f64 {
        (CLASSES as f64).ln()
    }

    fn minibatch(&mut self, params: &[f32], grads: &mut [f32]) -> Result<f64, StudyError> {
        grads.fill(0.0);
        let scale = 1.0 / self.batch as f32;
        let mut loss = 0.0;
        for _ in 0..self.batch {
            let i = self.rng.random_range(0..self.train.len());
            let (x, y) = (&self.train.x[i * INPUTS..(i + 1) * INPUTS], self.train.y[i]);
            let (trace, l) = forward(params, x, y);
            backward(params, grads, &trace, y, scale);
            loss += l;
        }
        Ok(loss / self.batch as f64)
    }

    fn evaluate(&mut self, params: &[f32]) -> Result<(f64, Option<f64>), StudyError> {
        let (mut loss, mut correct) = (0.0, 0usize);
        for (i, &y) in self.test.y.iter().enumerate() {
            let (trace, l) = forward(params, &self.test.x[i * INPUTS..(i + 1) * INPUTS], y);
            loss += l;
            correct += (argmax(&trace.probs) == y) as usize;
        }
        let n = self.test.len().max(1) as f64;
        Ok((loss / n, Some(correct as f64 / n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written backward pass against central differences in f64 of the forward pass.
    #[test]
    fn backward_matches_finite_differences() {
        let (data, _) = make_task(4, 1, 3);
        let p = init_params(5);
        let mut g = vec![0.0f32; p.len()];
        for (i, &y) in data.y.iter().enumerate() {
            let x = &data.x[i * INPUTS..(i + 1) * INPUTS];
            let (trace, _) = forward(&p, x, y);
            backward(&p, &mut g, &trace, y, 1.0);
        }
        let loss = |p: &[f32]| -> f64 {
            data.y
                .iter()
                .enumerate()
                .map(|(i, &y)| forward(p, &data.x[i * INPUTS..(i + 1) * INPUTS], y).1)
                .sum()
        };
        let mut checked = 0;
        for k in (0..p.len()).step_by(97) {
            let h = 1e-3f32;
            let (mut up, mut down) = (p.clone(), p.clone());
            up[k] += h;
            down[k] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!(
                (fd - g[k] as f64).abs() <= 2e-3 * (1.0 + fd.abs()),
                "param {k}: fd {fd} vs {}",
                g[k]
            );
            checked += 1;
        }
        assert!(checked > 50);
    }

    #[test]
    fn the_task_is_learnable_and_not_trivial() {
        let (train, test) = make_task(2000, 500, 1);
        let counts = (0..CLASSES).map(|c| train.y.iter().filter(|&&y| y == c).count());
        assert!(
            counts.clone().max().unwrap() < train.len() / 2,
            "one class dominates"
        );
        assert_eq!(test.len(), 500);
    }
}
