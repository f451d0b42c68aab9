//! The training-time model: forward with saved activations and backward over one sequence, with
//! layer dropout and early-exit losses. Each decoder layer runs through the kernels'
//! [`decoder_layer_train_forward`] and [`decoder_layer_backward`]; the embedding, the layer
//! dropout and the early exits are wired here. Weights, gradients and activations are `f32`; in
//! [`Precision::Bf16Emulated`] and [`Precision::MixedBf16`] every activation a forward op produces
//! is rounded to the nearest bf16, in [`Precision::MixedF16`] to the nearest fp16 (the math stays
//! `f32`).

use super::Precision;
use tessera_kernels::nn::{
    decoder_layer_activations_len, decoder_layer_backward, decoder_layer_backward_scratch_len,
    decoder_layer_train_forward, decoder_layer_train_scratch_len, embedding_backward,
    embedding_forward, linear_backward_input, linear_backward_weight, linear_matmul,
    rms_norm_backward, rms_norm_forward, softmax_cross_entropy, ActivationRounding, AttentionKind,
    LayerGradients, LinearShape, ModelConfig, ModelWeights, TensorId, TensorKind,
};

use crate::budget::{ensure_fits, Need};
use anyhow::{anyhow, bail, Result as R};

/// A tensor of the flat parameter vector.
pub fn tensor<'a>(c: &ModelConfig, p: &'a [f32], kind: TensorKind, layer: usize) -> R<&'a [f32]> {
    let r = c.tensor_range(TensorId { kind, layer })?;
    p.get(r)
        .ok_or_else(|| anyhow!("parameter vector too short"))
}

/// A mutable tensor of the flat gradient vector.
pub fn tensor_mut<'a>(
    c: &ModelConfig,
    p: &'a mut [f32],
    kind: TensorKind,
    layer: usize,
) -> R<&'a mut [f32]> {
    let r = c.tensor_range(TensorId { kind, layer })?;
    p.get_mut(r)
        .ok_or_else(|| anyhow!("gradient vector too short"))
}

/// What one layer's forward keeps for its backward.
struct Saved {
    /// Skipped by layer dropout (its output is its input).
    dropped: bool,
    /// The layer's input: the hidden states the exit after the previous layer reads.
    input: Vec<f32>,
    /// The kernel's saved activations (`decoder_layer_activations_len`).
    activations: Vec<f32>,
}

/// The working space of one early exit's loss and backward.
struct ExitBuffers {
    normed: Vec<f32>,
    d_normed: Vec<f32>,
    d_hidden: Vec<f32>,
    logits: Vec<f32>,
    d_logits: Vec<f32>,
}

/// Buffers for one sequence of `seq` tokens, allocated once and reused.
pub struct Network {
    c: ModelConfig,
    seq: usize,
    attention: AttentionKind,
    rounding: ActivationRounding,
    saved: Vec<Saved>,
    x: Vec<f32>,
    dx: Vec<f32>,
    exit: ExitBuffers,
    scratch: Vec<f32>,
}

/// Losses of one sequence: the cross-entropy sum of each exit that was evaluated.
pub struct SequenceLoss {
    /// Per layer: `Some(sum of token losses)` if that exit's scale was positive.
    pub per_exit: Vec<Option<f64>>,
    /// Layers skipped by dropout.
    pub dropped: usize,
}

impl Network {
    /// The buffers [`Network::new`] allocates, sized with checked arithmetic, for
    /// [`crate::budget::ensure_fits`].
    pub fn needs(c: &ModelConfig, seq: usize, attention: AttentionKind) -> Vec<Need> {
        let rows = seq.checked_mul(c.dim);
        let per_layer = decoder_layer_activations_len(c, seq)
            .ok()
            .zip(rows)
            .and_then(|(a, r)| a.checked_add(r))
            .and_then(|n| n.checked_mul(c.layers));
        let scratch = decoder_layer_train_scratch_len(c, seq, attention)
            .and_then(|a| Ok(a.max(decoder_layer_backward_scratch_len(c, seq)?)));
        vec![
            Need::floats("the saved activations", per_layer.ok_or(())),
            Need::floats(
                "the hidden states",
                rows.and_then(|r| r.checked_mul(5)).ok_or(()),
            ),
            Need::floats(
                "the logits",
                seq.checked_mul(c.vocab)
                    .and_then(|n| n.checked_mul(2))
                    .ok_or(()),
            ),
            Need::floats("the layer scratch", scratch),
        ]
    }

    /// Buffers for sequences of `seq` tokens (refused when they exceed the memory budget).
    pub fn new(
        c: ModelConfig,
        seq: usize,
        attention: AttentionKind,
        precision: Precision,
    ) -> R<Self> {
        c.validate()?;
        ensure_fits(
            &Network::needs(&c, seq, attention),
            "use a smaller model or --seq-len",
        )?;
        let (d, v) = (c.dim, c.vocab);
        let scratch = decoder_layer_train_scratch_len(&c, seq, attention)?
            .max(decoder_layer_backward_scratch_len(&c, seq)?);
        let activations = decoder_layer_activations_len(&c, seq)?;
        let z = |n: usize| vec![0.0f32; n];
        let rounding = match precision {
            Precision::F32 => ActivationRounding::F32,
            Precision::Bf16Emulated | Precision::MixedBf16 => ActivationRounding::Bf16,
            Precision::MixedF16 => ActivationRounding::F16,
        };
        Ok(Network {
            c,
            seq,
            attention,
            rounding,
            saved: (0..c.layers)
                .map(|_| Saved {
                    dropped: false,
                    input: z(seq * d),
                    activations: z(activations),
                })
                .collect(),
            x: z(seq * d),
            dx: z(seq * d),
            exit: ExitBuffers {
                normed: z(seq * d),
                d_normed: z(seq * d),
                d_hidden: z(seq * d),
                logits: z(seq * v),
                d_logits: z(seq * v),
            },
            scratch: z(scratch),
        })
    }

    /// Forward and backward of one sequence: `inputs` and `targets` (each `seq` tokens), layers
    /// in `drop` skipped, exit `l` weighted by `exit_scales[l]·loss_scale` (the mean over tokens
    /// and the batch is the caller's `loss_scale`). Gradients are *added* into `grads`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward(
        &mut self,
        params: &[f32],
        grads: &mut [f32],
        inputs: &[u32],
        targets: &[u32],
        drop: &[bool],
        exit_scales: &[f32],
        loss_scale: f32,
    ) -> R<SequenceLoss> {
        let c = self.c;
        if inputs.len() != self.seq || targets.len() != self.seq {
            bail!("sequences must have {} tokens", self.seq);
        }
        let weights = ModelWeights::new(c, params)?;
        embedding_forward(
            c.vocab,
            c.dim,
            tensor(&c, params, TensorKind::Embedding, 0)?,
            inputs,
            &mut self.x,
        )?;
        self.rounding.round(&mut self.x);
        for (l, saved) in self.saved.iter_mut().enumerate() {
            saved.dropped = drop.get(l).copied().unwrap_or(false);
            saved.input.copy_from_slice(&self.x);
            if !saved.dropped {
                decoder_layer_train_forward(
                    &c,
                    &weights.layer(l)?,
                    self.attention,
                    self.rounding,
                    &mut self.x,
                    &mut saved.activations,
                    &mut self.scratch,
                )?;
            }
        }
        // Backward, from the top: the exit after layer l reads the input of layer l + 1.
        self.dx.fill(0.0);
        let mut per_exit = vec![None; c.layers];
        for l in (0..c.layers).rev() {
            let scale = exit_scales.get(l).copied().unwrap_or(0.0);
            if scale > 0.0 {
                let top = match self.saved.get(l + 1) {
                    Some(next) => &next.input,
                    None => &self.x,
                };
                per_exit[l] = Some(self.exit.loss_backward(
                    &c,
                    self.rounding,
                    params,
                    grads,
                    top,
                    targets,
                    scale * loss_scale,
                    &mut self.dx,
                )?);
            }
            let saved = &self.saved[l];
            if !saved.dropped {
                decoder_layer_backward(
                    &c,
                    &weights.layer(l)?,
                    &saved.activations,
                    &mut self.dx,
                    &mut LayerGradients::new(&c, grads, l)?,
                    &mut self.scratch,
                )?;
            }
        }
        embedding_backward(
            c.vocab,
            c.dim,
            inputs,
            &self.dx,
            tensor_mut(&c, grads, TensorKind::Embedding, 0)?,
        )?;
        let dropped = self.saved.iter().filter(|s| s.dropped).count();
        Ok(SequenceLoss { per_exit, dropped })
    }
}

impl ExitBuffers {
    /// Exit loss at hidden states `h` (`[seq, dim]`): returns the CE sum and adds `scale·dCE/dh`
    /// into `dx` and the exit's weight gradients into `grads`.
    #[allow(clippy::too_many_arguments)]
    fn loss_backward(
        &mut self,
        c: &ModelConfig,
        rounding: ActivationRounding,
        params: &[f32],
        grads: &mut [f32],
        h: &[f32],
        targets: &[u32],
        scale: f32,
        dx: &mut [f32],
    ) -> R<f64> {
        let (d, v) = (c.dim, c.vocab);
        let n = targets.len();
        let norm = tensor(c, params, TensorKind::FinalNorm, 0)?;
        let head = tensor(c, params, TensorKind::LmHead, 0)?;
        let xn = &mut self.normed;
        rms_norm_forward(d, c.norm_eps, h, norm, xn)?;
        rounding.round(xn);
        let shape = LinearShape::new(n, d, v);
        linear_matmul(shape, xn, head, &mut self.logits)?;
        rounding.round(&mut self.logits);
        let loss =
            softmax_cross_entropy(v, &self.logits, targets, scale, Some(&mut self.d_logits))?;
        linear_backward_weight(
            shape,
            xn,
            &self.d_logits,
            tensor_mut(c, grads, TensorKind::LmHead, 0)?,
        )?;
        let dxn = &mut self.d_normed;
        linear_backward_input(shape, &self.d_logits, head, dxn)?;
        let dh = &mut self.d_hidden;
        rms_norm_backward(
            d,
            c.norm_eps,
            h,
            norm,
            dxn,
            dh,
            tensor_mut(c, grads, TensorKind::FinalNorm, 0)?,
        )?;
        for (a, &b) in dx.iter_mut().zip(dh.iter()) {
            *a += b;
        }
        Ok(loss)
    }
}
