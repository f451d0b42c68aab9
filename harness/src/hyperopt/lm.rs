//! Task (b): the tiny character language model of [`crate::train`] (the early-exit transformer
//! of `tessera_kernels::nn`), trained on the project's synthetic corpus through that module's
//! public building blocks: [`init_params`], [`Network::forward_backward`] with the last exit only
//! and no layer dropout (plain training), and [`evaluate_exits`] on the validation split.

use super::{Objective, StudyError};
use crate::train::eval::evaluate_exits;
use crate::train::network::Network;
use crate::train::schedule::last_layer_only;
use crate::train::{init_params, synthetic_corpus, Corpus, Precision};
use anyhow::{ensure, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_kernels::nn::{AttentionKind, ModelConfig};

/// Size of the model and of its batches.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LmSize {
    /// Transformer layers.
    pub layers: usize,
    /// Model width.
    pub dim: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Characters of synthetic corpus.
    pub corpus_chars: usize,
    /// Validation windows of `seq_len` tokens.
    pub eval_windows: usize,
}

/// The character LM as an [`Objective`].
pub struct LmTask {
    model: ModelConfig,
    size: LmSize,
    corpus: Corpus,
    net: Network,
    rng: ChaCha8Rng,
    drop: Vec<bool>,
    scales: Vec<f32>,
}

impl LmTask {
    /// The task: corpus from `seed`, batch order from `order_seed`.
    pub fn new(size: LmSize, seed: u64, order_seed: u64) -> anyhow::Result<Self> {
        let corpus = Corpus::from_text(&synthetic_corpus(size.corpus_chars, seed))?;
        let model = ModelConfig {
            vocab: corpus.vocab.len(),
            dim: size.dim,
            layers: size.layers,
            heads: 4,
            kv_heads: 2,
            ffn_hidden: size.dim * 3,
            max_seq: size.seq_len,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
        };
        // network.rs reports its errors as text.
        let net = Network::new(model, size.seq_len, AttentionKind::Baseline, Precision::F32)?;
        ensure!(
            corpus.train.len() > size.seq_len && corpus.val.len() > size.seq_len,
            "the corpus is too short for the sequence length"
        );
        Ok(LmTask {
            model,
            size,
            corpus,
            net,
            rng: ChaCha8Rng::seed_from_u64(order_seed),
            drop: vec![false; size.layers],
            scales: last_layer_only(size.layers),
        })
    }
}

impl Objective for LmTask {
    fn param_count(&self) -> usize {
        self.model.param_count().unwrap_or(0)
    }

    fn init(&self, seed: u64) -> Result<Vec<f32>, StudyError> {
        Ok(init_params(&self.model, seed)?)
    }

    fn chance_loss(&self) -> f64 {
        (self.model.vocab as f64).ln()
    }

    fn minibatch(&mut self, params: &[f32], grads: &mut [f32]) -> Result<f64, StudyError> {
        grads.fill(0.0);
        let (seq, batch) = (self.size.seq_len, self.size.batch);
        let scale = 1.0 / (seq * batch) as f32;
        let mut loss = 0.0;
        for _ in 0..batch {
            let start = self.rng.random_range(0..self.corpus.train.len() - seq);
            let inputs = &self.corpus.train[start..start + seq];
            let targets = &self.corpus.train[start + 1..start + 1 + seq];
            let out = self.net.forward_backward(
                params,
                grads,
                inputs,
                targets,
                &self.drop,
                &self.scales,
                scale,
            )?;
            loss += out.per_exit.last().copied().flatten().unwrap_or(f64::NAN);
        }
        Ok(loss / (seq * batch) as f64)
    }

    fn evaluate(&mut self, params: &[f32]) -> Result<(f64, Option<f64>), StudyError> {
        let exits = evaluate_exits(
            &self.model,
            params,
            &self.corpus.val,
            self.size.seq_len,
            self.size.eval_windows,
        )?;
        let last = exits.last().context("no exit evaluated")?;
        Ok((last.loss, None))
    }
}
