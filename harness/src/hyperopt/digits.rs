//! Task `digits`: the paper's MLP on real data. The UCI optical handwritten digits (8x8 images,
//! 1,797 of them, as shipped in scikit-learn) stand in for MNIST, which cannot be fetched here.
//!
//! The network is gdtuo's MNIST example at 64 inputs instead of 784: `64 -> 128 tanh -> 10 tanh`,
//! then log-softmax and the negative log-likelihood (gdtuo's `MNIST_FullyConnected` applies `tanh`
//! to the output layer too, so its logits lie in `[-1, 1]` and the loss cannot fall below
//! `ln(1 + 9 e^-2) = 0.784`; its test *error* is the headline). Initialisation as PyTorch's
//! `nn.Linear` (and gdtuo's `kaiming_uniform_(a = sqrt 5)`): weights and biases uniform in
//! `±1/sqrt(fan_in)`. Pixels are scaled from `0..=16` to `[0, 1]`.
//!
//! **Split** (fixed, independent of the seed): example `i` of the file (0-based, in file order) is
//! a test example when `i % 5 == 4`, a training example otherwise: 1,438 training and 359 test
//! images. Minibatches are drawn by epochs, each a fresh shuffle of the training set (seeded), of
//! [`BATCH`] images; the last partial batch of an epoch is dropped.

use super::{Objective, StudyError};
use anyhow::{bail, ensure, Context};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Input pixels.
pub const INPUTS: usize = 64;
/// Hidden units.
pub const HIDDEN: usize = 128;
/// Classes.
pub const CLASSES: usize = 10;
/// Minibatch size.
pub const BATCH: usize = 64;
/// Every `TEST_EVERY`-th example (the one with `i % TEST_EVERY == TEST_EVERY - 1`) is held out.
pub const TEST_EVERY: usize = 5;

const W1: usize = 0;
const B1: usize = W1 + INPUTS * HIDDEN;
const W2: usize = B1 + HIDDEN;
const B2: usize = W2 + HIDDEN * CLASSES;
const PARAMS: usize = B2 + CLASSES;

/// Where the data set lives, relative to the repository root.
pub const DEFAULT_PATH: &str = "../shared/data/digits.csv";

/// The default data file: `../shared/data/digits.csv` relative to the working directory (the
/// repository root for the CLI), or, when that does not exist, relative to the repository this
/// crate was built from (tests run in `harness/`).
pub fn default_path() -> PathBuf {
    let here = PathBuf::from(DEFAULT_PATH);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DEFAULT_PATH)
}

/// Images (pixels in `[0, 1]`, row-major, [`INPUTS`] per image) and labels.
#[derive(Clone, Debug, Default)]
pub struct Images {
    /// Pixels.
    pub x: Vec<f32>,
    /// Labels in `0..CLASSES`.
    pub y: Vec<usize>,
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    fn push(&mut self, pixels: &[f32], label: usize) {
        self.x.extend_from_slice(pixels);
        self.y.push(label);
    }
}

/// Parses the CSV text (header `label,p0,...,p63`, then one image a line) into the fixed
/// training and test split.
pub fn parse(text: &str) -> anyhow::Result<(Images, Images)> {
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().context("empty file")?;
    ensure!(
        header.trim().starts_with("label,p0"),
        "line 1: expected the header `label,p0,...,p63`, found `{}`",
        header.chars().take(40).collect::<String>()
    );
    let (mut train, mut test) = (Images::default(), Images::default());
    let mut pixels = [0.0f32; INPUTS];
    let mut count = 0usize;
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.trim().split(',');
        let label: usize = fields
            .next()
            .unwrap_or("")
            .parse()
            .with_context(|| format!("line {}: bad label", n + 1))?;
        ensure!(
            label < CLASSES,
            "line {}: label {label} is not a digit",
            n + 1
        );
        let mut k = 0;
        for f in fields {
            let v: f32 = f
                .parse()
                .with_context(|| format!("line {}: bad pixel `{f}`", n + 1))?;
            ensure!(
                (0.0..=16.0).contains(&v),
                "line {}: pixel {v} outside 0..=16",
                n + 1
            );
            let Some(p) = pixels.get_mut(k) else {
                bail!("line {}: more than {INPUTS} pixels", n + 1);
            };
            *p = v / 16.0;
            k += 1;
        }
        ensure!(k == INPUTS, "line {}: {k} pixels, expected {INPUTS}", n + 1);
        if count % TEST_EVERY == TEST_EVERY - 1 {
            test.push(&pixels, label);
        } else {
            train.push(&pixels, label);
        }
        count += 1;
    }
    ensure!(
        !train.is_empty() && !test.is_empty(),
        "too few images ({count})"
    );
    Ok((train, test))
}

/// Reads and splits the data set at `path`; the error says where the file was expected.
pub fn load(path: &Path) -> anyhow::Result<(Images, Images)> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the UCI digits data set at {} (expected as ../shared/data/digits.csv \
             beside the repository; see shared/data/README.md)",
            path.display()
        )
    })?;
    parse(&text).with_context(|| format!("{}", path.display()))
}

/// Number of parameters: `W1`, `b1`, `W2`, `b2`.
pub const fn param_count() -> usize {
    PARAMS
}

/// PyTorch's `nn.Linear` initialisation from `seed`: every weight and bias uniform in
/// `±1/sqrt(fan_in)`.
pub fn init_params(seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD161_7500);
    let mut p = vec![0.0f32; PARAMS];
    let b1 = 1.0 / (INPUTS as f32).sqrt();
    let b2 = 1.0 / (HIDDEN as f32).sqrt();
    for (i, v) in p.iter_mut().enumerate() {
        let bound = if i < W2 { b1 } else { b2 };
        *v = rng.random_range(-bound..bound);
    }
    p
}

/// Forward pass of one image: hidden activations, output probabilities and the loss; with
/// `grads`, adds `scale * d loss / d params` into it.
fn example(p: &[f32], x: &[f32], label: usize, grads: Option<(&mut [f32], f32)>) -> (usize, f64) {
    let mut h = [0.0f32; HIDDEN];
    h.copy_from_slice(&p[B1..B1 + HIDDEN]);
    for (i, &xi) in x.iter().enumerate() {
        if xi != 0.0 {
            let row = &p[W1 + i * HIDDEN..W1 + (i + 1) * HIDDEN];
            h.iter_mut().zip(row).for_each(|(a, w)| *a += xi * w);
        }
    }
    h.iter_mut().for_each(|a| *a = a.tanh());
    let mut o = [0.0f32; CLASSES];
    o.copy_from_slice(&p[B2..B2 + CLASSES]);
    for (j, &hj) in h.iter().enumerate() {
        let row = &p[W2 + j * CLASSES..W2 + (j + 1) * CLASSES];
        o.iter_mut().zip(row).for_each(|(a, w)| *a += hj * w);
    }
    let z: [f32; CLASSES] = o.map(f32::tanh);
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = z.iter().map(|&v| ((v - max) as f64).exp()).sum();
    let loss = sum.ln() - (z[label] - max) as f64;
    let mut best = 0;
    for (k, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = k;
        }
    }
    if let Some((g, scale)) = grads {
        // d loss / d o_k = (softmax_k - [k = label]) (1 - z_k^2).
        let mut d_o = [0.0f32; CLASSES];
        for (k, d) in d_o.iter_mut().enumerate() {
            let q = (((z[k] - max) as f64).exp() / sum) as f32;
            let t = if k == label { q - 1.0 } else { q };
            *d = scale * t * (1.0 - z[k] * z[k]);
        }
        g[B2..B2 + CLASSES]
            .iter_mut()
            .zip(&d_o)
            .for_each(|(a, d)| *a += d);
        let mut d_h = [0.0f32; HIDDEN];
        for (j, &hj) in h.iter().enumerate() {
            let (w, gw) = (
                &p[W2 + j * CLASSES..W2 + (j + 1) * CLASSES],
                &mut g[W2 + j * CLASSES..W2 + (j + 1) * CLASSES],
            );
            let mut acc = 0.0f32;
            for ((gw, w), d) in gw.iter_mut().zip(w).zip(&d_o) {
                *gw += hj * d;
                acc += w * d;
            }
            d_h[j] = acc * (1.0 - hj * hj);
        }
        g[B1..B1 + HIDDEN]
            .iter_mut()
            .zip(&d_h)
            .for_each(|(a, d)| *a += d);
        for (i, &xi) in x.iter().enumerate() {
            if xi != 0.0 {
                let row = &mut g[W1 + i * HIDDEN..W1 + (i + 1) * HIDDEN];
                row.iter_mut().zip(&d_h).for_each(|(a, d)| *a += xi * d);
            }
        }
    }
    (best, loss)
}

/// The digits task as an [`Objective`].
pub struct DigitsTask {
    train: Images,
    test: Images,
    order: Vec<usize>,
    at: usize,
    rng: ChaCha8Rng,
}

impl DigitsTask {
    /// The task on the split of `train`/`test`, minibatch order from `order_seed`.
    pub fn new(train: Images, test: Images, order_seed: u64) -> Self {
        DigitsTask {
            order: (0..train.len()).collect(),
            at: usize::MAX,
            train,
            test,
            rng: ChaCha8Rng::seed_from_u64(order_seed ^ 0x0D16_1750),
        }
    }

    /// The images of the next minibatch (a new shuffled epoch when the current one runs out).
    fn next_batch(&mut self) -> std::ops::Range<usize> {
        if self.at.saturating_add(BATCH) > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.at = 0;
        }
        let r = self.at..self.at + BATCH.min(self.order.len());
        self.at = r.end;
        r
    }
}

impl Objective for DigitsTask {
    fn param_count(&self) -> usize {
        PARAMS
    }

    fn init(&self, seed: u64) -> Result<Vec<f32>, StudyError> {
        Ok(init_params(seed))
    }

    fn chance_loss(&self) -> f64 {
        (CLASSES as f64).ln()
    }

    fn minibatch(&mut self, params: &[f32], grads: &mut [f32]) -> Result<f64, StudyError> {
        grads.fill(0.0);
        let range = self.next_batch();
        let scale = 1.0 / range.len() as f32;
        let mut loss = 0.0;
        for &i in &self.order[range.clone()] {
            let x = &self.train.x[i * INPUTS..(i + 1) * INPUTS];
            loss += example(params, x, self.train.y[i], Some((&mut *grads, scale))).1;
        }
        Ok(loss / range.len() as f64)
    }

    fn evaluate(&mut self, params: &[f32]) -> Result<(f64, Option<f64>), StudyError> {
        let (mut loss, mut correct) = (0.0, 0usize);
        for (i, &y) in self.test.y.iter().enumerate() {
            let (guess, l) = example(params, &self.test.x[i * INPUTS..(i + 1) * INPUTS], y, None);
            loss += l;
            correct += (guess == y) as usize;
        }
        let n = self.test.len().max(1) as f64;
        Ok((loss / n, Some(correct as f64 / n)))
    }
}

/// Draws a random label-consistent toy data set (tests without the data file).
pub fn synthetic(count: usize, seed: u64) -> Images {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Images::default();
    for _ in 0..count {
        let label = rng.random_range(0..CLASSES);
        let px: Vec<f32> = (0..INPUTS)
            .map(|k| {
                let on = (k % CLASSES == label) as u8 as f32;
                (0.7 * on + 0.3 * rng.random::<f32>()).min(1.0)
            })
            .collect();
        out.push(&px, label);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written backward pass against central differences in f64 of the forward pass.
    #[test]
    fn backward_matches_finite_differences() {
        let data = synthetic(3, 7);
        let p = init_params(5);
        let mut g = vec![0.0f32; p.len()];
        for (i, &y) in data.y.iter().enumerate() {
            example(
                &p,
                &data.x[i * INPUTS..(i + 1) * INPUTS],
                y,
                Some((&mut g, 1.0)),
            );
        }
        let loss = |p: &[f32]| -> f64 {
            (0..data.len())
                .map(|i| example(p, &data.x[i * INPUTS..(i + 1) * INPUTS], data.y[i], None).1)
                .sum()
        };
        let mut checked = 0;
        for k in (0..p.len()).step_by(37) {
            let h = 1e-2f32;
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
        assert!(checked > 200);
    }

    #[test]
    fn parse_splits_and_refuses_bad_rows() {
        let mut text = String::from("label,p0");
        for k in 1..INPUTS {
            text.push_str(&format!(",p{k}"));
        }
        text.push('\n');
        for i in 0..10 {
            text.push_str(&format!("{}", i % CLASSES));
            for k in 0..INPUTS {
                text.push_str(&format!(",{}", (i + k) % 17));
            }
            text.push('\n');
        }
        let (train, test) = parse(&text).expect("parses");
        assert_eq!((train.len(), test.len()), (8, 2));
        assert_eq!(test.y, vec![4, 9]);
        assert!(train.x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(parse("label,p0\n3,1,2\n").is_err());
        assert!(parse("x,y\n").is_err());
        let bad = text.replacen("\n0,", "\n0,99,", 1);
        assert!(parse(&bad).is_err());
        let missing = load(Path::new("/nonexistent/digits.csv")).unwrap_err();
        assert!(format!("{missing:#}").contains("shared/data/README.md"));
    }

    #[test]
    fn epochs_visit_every_training_image_once() {
        let train = synthetic(BATCH * 3 + 5, 1);
        let mut task = DigitsTask::new(train, synthetic(4, 2), 9);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let r = task.next_batch();
            seen.extend_from_slice(&task.order[r]);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), BATCH * 3);
    }
}
