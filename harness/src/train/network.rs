//! The training-time model: forward with saved activations and backward over one sequence,
//! composed from the kernel blocks in `tessera_kernels::nn`, with layer dropout and early-exit
//! losses. Weights, gradients and activations are `f32`; in [`Precision::Bf16Emulated`] every
//! activation a forward op produces is rounded to the nearest bf16 (the math stays `f32`).

use super::Precision;
use tessera_kernels::nn::{
    attention_backward, attention_logsumexp, embedding_backward, embedding_forward,
    linear_backward_input, linear_backward_weight, linear_matmul, rms_norm_backward,
    rms_norm_forward, rope_backward, rope_forward, softmax_cross_entropy, swiglu_forward,
    swiglu_mlp_backward, AttentionKind, LinearShape, ModelConfig, TensorId, TensorKind,
};
use tessera_kernels::{baseline_attention, flash_attention, AttentionShape};

type R<T> = Result<T, String>;

fn k<T>(r: tessera_kernels::Result<T>) -> R<T> {
    r.map_err(|e| format!("kernel error: {e}"))
}

/// Rounds every value to the nearest bf16 (kept as `f32`).
pub fn round_bf16(x: &mut [f32]) {
    for v in x {
        *v = half::bf16::from_f32(*v).to_f32();
    }
}

/// A tensor of the flat parameter vector.
pub fn tensor<'a>(c: &ModelConfig, p: &'a [f32], kind: TensorKind, layer: usize) -> R<&'a [f32]> {
    let r = k(c.tensor_range(TensorId { kind, layer }))?;
    p.get(r)
        .ok_or_else(|| "parameter vector too short".to_string())
}

/// A mutable tensor of the flat gradient vector.
pub fn tensor_mut<'a>(
    c: &ModelConfig,
    p: &'a mut [f32],
    kind: TensorKind,
    layer: usize,
) -> R<&'a mut [f32]> {
    let r = k(c.tensor_range(TensorId { kind, layer }))?;
    p.get_mut(r)
        .ok_or_else(|| "gradient vector too short".to_string())
}

/// What one layer's forward keeps for its backward.
#[derive(Default)]
struct Saved {
    dropped: bool,
    x_in: Vec<f32>,
    xn1: Vec<f32>,
    q_h: Vec<f32>,
    k_h: Vec<f32>,
    v_h: Vec<f32>,
    o_h: Vec<f32>,
    lse: Vec<f32>,
    o_t: Vec<f32>,
    x_mid: Vec<f32>,
    xn2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

/// Buffers for one sequence of `seq` tokens, allocated once and reused.
pub struct Network {
    c: ModelConfig,
    seq: usize,
    attention: AttentionKind,
    precision: Precision,
    saved: Vec<Saved>,
    x: Vec<f32>,
    tmp_rows: Vec<f32>,
    tmp_rows2: Vec<f32>,
    tmp_kv: Vec<f32>,
    tmp_kv2: Vec<f32>,
    d_o_h: Vec<f32>,
    tmp_ffn: Vec<f32>,
    dq_h: Vec<f32>,
    dk_h: Vec<f32>,
    dv_h: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    attn_scratch: Vec<f32>,
    mlp_scratch: Vec<f32>,
}

/// Losses of one sequence: the cross-entropy sum of each exit that was evaluated.
pub struct SequenceLoss {
    /// Per layer: `Some(sum of token losses)` if that exit's scale was positive.
    pub per_exit: Vec<Option<f64>>,
    /// Layers skipped by dropout.
    pub dropped: usize,
}

impl Network {
    /// Buffers for sequences of `seq` tokens.
    pub fn new(
        c: ModelConfig,
        seq: usize,
        attention: AttentionKind,
        precision: Precision,
    ) -> R<Self> {
        k(c.validate())?;
        let (d, kvd, f, v) = (c.dim, c.kv_dim(), c.ffn_hidden, c.vocab);
        let shape = Self::shape_of(&c, seq);
        let attn_scratch = match attention {
            AttentionKind::Baseline => k(tessera_kernels::baseline_scratch_len(&shape))?,
            AttentionKind::Flash(t) => k(tessera_kernels::flash_scratch_len(&shape, t))?,
        }
        .max(k(tessera_kernels::nn::attention_backward_scratch_len(
            &shape,
        ))?);
        let mlp = k(tessera_kernels::nn::swiglu_mlp_backward_scratch_len(
            seq, d, f,
        ))?;
        let z = |n: usize| vec![0.0f32; n];
        Ok(Network {
            c,
            seq,
            attention,
            precision,
            saved: (0..c.layers).map(|_| Saved::default()).collect(),
            x: z(seq * d),
            tmp_rows: z(seq * d),
            tmp_rows2: z(seq * d),
            tmp_kv: z(seq * kvd),
            tmp_kv2: z(seq * kvd),
            d_o_h: z(seq * d),
            tmp_ffn: z(seq * f),
            dq_h: z(seq * d),
            dk_h: z(seq * kvd),
            dv_h: z(seq * kvd),
            logits: z(seq * v),
            dlogits: z(seq * v),
            attn_scratch: z(attn_scratch),
            mlp_scratch: z(mlp),
        })
    }

    fn shape_of(c: &ModelConfig, seq: usize) -> AttentionShape {
        AttentionShape::new(1, c.heads, seq, seq, c.head_dim())
            .with_kv_heads(c.kv_heads)
            .with_causal(true)
    }

    fn round(&self, x: &mut [f32]) {
        if self.precision == Precision::Bf16Emulated {
            round_bf16(x);
        }
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
            return Err(format!("sequences must have {} tokens", self.seq));
        }
        let mut x = std::mem::take(&mut self.x);
        k(embedding_forward(
            c.vocab,
            c.dim,
            tensor(&c, params, TensorKind::Embedding, 0)?,
            inputs,
            &mut x,
        ))?;
        self.round(&mut x);
        for l in 0..c.layers {
            let dropped = drop.get(l).copied().unwrap_or(false);
            self.layer_forward(params, l, dropped, &mut x)?;
        }
        // Backward, from the top: the exit after layer l reads x_{l+1}.
        let mut dx = std::mem::take(&mut self.tmp_rows2);
        dx.fill(0.0);
        let mut per_exit = vec![None; c.layers];
        for l in (0..c.layers).rev() {
            let scale = exit_scales.get(l).copied().unwrap_or(0.0);
            if scale > 0.0 {
                let x_top = if l + 1 == c.layers {
                    &x
                } else {
                    &self.saved[l + 1].x_in
                };
                let x_top = x_top.clone();
                let loss = self.exit_backward(
                    params,
                    grads,
                    &x_top,
                    targets,
                    scale * loss_scale,
                    &mut dx,
                )?;
                per_exit[l] = Some(loss);
            }
            if !self.saved[l].dropped {
                self.layer_backward(params, grads, l, &mut dx)?;
            }
        }
        k(embedding_backward(
            c.vocab,
            c.dim,
            inputs,
            &dx,
            tensor_mut(&c, grads, TensorKind::Embedding, 0)?,
        ))?;
        let dropped = self.saved.iter().filter(|s| s.dropped).count();
        self.x = x;
        self.tmp_rows2 = dx;
        Ok(SequenceLoss { per_exit, dropped })
    }

    fn layer_forward(&mut self, params: &[f32], l: usize, dropped: bool, x: &mut [f32]) -> R<()> {
        let c = self.c;
        let (n, d, kvd, f, hd) = (self.seq, c.dim, c.kv_dim(), c.ffn_hidden, c.head_dim());
        let w = |kind| tensor(&c, params, kind, l);
        let round = self.precision == Precision::Bf16Emulated;
        let rnd = |v: &mut Vec<f32>| {
            if round {
                round_bf16(v)
            }
        };
        let mut s = std::mem::take(&mut self.saved[l]);
        s.dropped = dropped;
        s.x_in.clear();
        s.x_in.extend_from_slice(x);
        if dropped {
            self.saved[l] = s;
            return Ok(());
        }
        let sized = |v: &mut Vec<f32>, len: usize| {
            v.clear();
            v.resize(len, 0.0);
        };
        for (v, len) in [
            (&mut s.xn1, n * d),
            (&mut s.q_h, n * d),
            (&mut s.k_h, n * kvd),
            (&mut s.v_h, n * kvd),
            (&mut s.o_h, n * d),
            (&mut s.lse, n * c.heads),
            (&mut s.o_t, n * d),
            (&mut s.x_mid, n * d),
            (&mut s.xn2, n * d),
            (&mut s.gate, n * f),
            (&mut s.up, n * f),
        ] {
            sized(v, len);
        }
        k(rms_norm_forward(
            d,
            c.norm_eps,
            x,
            w(TensorKind::AttnNorm)?,
            &mut s.xn1,
        ))?;
        rnd(&mut s.xn1);
        let q = &mut self.tmp_rows;
        k(linear_matmul(
            LinearShape::new(n, d, d),
            &s.xn1,
            w(TensorKind::Wq)?,
            q,
        ))?;
        k(linear_matmul(
            LinearShape::new(n, d, kvd),
            &s.xn1,
            w(TensorKind::Wk)?,
            &mut self.tmp_kv,
        ))?;
        k(linear_matmul(
            LinearShape::new(n, d, kvd),
            &s.xn1,
            w(TensorKind::Wv)?,
            &mut self.tmp_kv2,
        ))?;
        k(rope_forward(c.heads, hd, 0, c.rope_theta, q))?;
        k(rope_forward(
            c.kv_heads,
            hd,
            0,
            c.rope_theta,
            &mut self.tmp_kv,
        ))?;
        for v in [&mut *q, &mut self.tmp_kv, &mut self.tmp_kv2] {
            if round {
                round_bf16(v);
            }
        }
        head_major(q, &mut s.q_h, n, c.heads, hd);
        head_major(&self.tmp_kv, &mut s.k_h, n, c.kv_heads, hd);
        head_major(&self.tmp_kv2, &mut s.v_h, n, c.kv_heads, hd);
        let shape = Self::shape_of(&c, n);
        match self.attention {
            AttentionKind::Baseline => k(baseline_attention(
                &shape,
                &s.q_h,
                &s.k_h,
                &s.v_h,
                &mut s.o_h,
                &mut self.attn_scratch,
            ))?,
            AttentionKind::Flash(t) => k(flash_attention(
                &shape,
                t,
                &s.q_h,
                &s.k_h,
                &s.v_h,
                &mut s.o_h,
                &mut self.attn_scratch,
            ))?,
        }
        rnd(&mut s.o_h);
        k(attention_logsumexp(&shape, &s.q_h, &s.k_h, &mut s.lse))?;
        token_major(&s.o_h, &mut s.o_t, n, c.heads, hd);
        let a = &mut self.tmp_rows;
        k(linear_matmul(
            LinearShape::new(n, d, d),
            &s.o_t,
            w(TensorKind::Wo)?,
            a,
        ))?;
        for ((m, &xi), &ai) in s.x_mid.iter_mut().zip(x.iter()).zip(a.iter()) {
            *m = xi + ai;
        }
        rnd(&mut s.x_mid);
        k(rms_norm_forward(
            d,
            c.norm_eps,
            &s.x_mid,
            w(TensorKind::MlpNorm)?,
            &mut s.xn2,
        ))?;
        rnd(&mut s.xn2);
        let into = LinearShape::new(n, d, f);
        k(linear_matmul(
            into,
            &s.xn2,
            w(TensorKind::WGate)?,
            &mut s.gate,
        ))?;
        k(linear_matmul(into, &s.xn2, w(TensorKind::WUp)?, &mut s.up))?;
        rnd(&mut s.gate);
        rnd(&mut s.up);
        let h = &mut self.tmp_ffn;
        k(swiglu_forward(&s.gate, &s.up, h))?;
        if round {
            round_bf16(h);
        }
        let y = &mut self.tmp_rows;
        k(linear_matmul(
            LinearShape::new(n, f, d),
            h,
            w(TensorKind::WDown)?,
            y,
        ))?;
        for ((xo, &m), &yi) in x.iter_mut().zip(s.x_mid.iter()).zip(y.iter()) {
            *xo = m + yi;
        }
        if round {
            round_bf16(x);
        }
        self.saved[l] = s;
        Ok(())
    }

    /// Exit loss at hidden states `h` (`[seq, dim]`): returns the CE sum and adds `scale·dCE/dh`
    /// into `dx` and the exit's weight gradients into `grads`.
    fn exit_backward(
        &mut self,
        params: &[f32],
        grads: &mut [f32],
        h: &[f32],
        targets: &[u32],
        scale: f32,
        dx: &mut [f32],
    ) -> R<f64> {
        let c = self.c;
        let (n, d, v) = (self.seq, c.dim, c.vocab);
        let norm = tensor(&c, params, TensorKind::FinalNorm, 0)?;
        let head = tensor(&c, params, TensorKind::LmHead, 0)?;
        let xn = &mut self.tmp_rows;
        k(rms_norm_forward(d, c.norm_eps, h, norm, xn))?;
        if self.precision == Precision::Bf16Emulated {
            round_bf16(xn);
        }
        k(linear_matmul(
            LinearShape::new(n, d, v),
            xn,
            head,
            &mut self.logits,
        ))?;
        if self.precision == Precision::Bf16Emulated {
            round_bf16(&mut self.logits);
        }
        let loss = k(softmax_cross_entropy(
            v,
            &self.logits,
            targets,
            scale,
            Some(&mut self.dlogits),
        ))?;
        let shape = LinearShape::new(n, d, v);
        k(linear_backward_weight(
            shape,
            xn,
            &self.dlogits,
            tensor_mut(&c, grads, TensorKind::LmHead, 0)?,
        ))?;
        let dxn = &mut self.dq_h; // free here, n·dim long
        k(linear_backward_input(shape, &self.dlogits, head, dxn))?;
        let dh = &mut self.tmp_rows;
        k(rms_norm_backward(
            d,
            c.norm_eps,
            h,
            norm,
            dxn,
            dh,
            tensor_mut(&c, grads, TensorKind::FinalNorm, 0)?,
        ))?;
        for (a, &b) in dx.iter_mut().zip(dh.iter()) {
            *a += b;
        }
        Ok(loss)
    }

    /// Backward of layer `l`: `dx` holds the gradient of the layer's output and is replaced by
    /// the gradient of its input.
    fn layer_backward(
        &mut self,
        params: &[f32],
        grads: &mut [f32],
        l: usize,
        dx: &mut [f32],
    ) -> R<()> {
        let c = self.c;
        let (n, d, kvd, f, hd) = (self.seq, c.dim, c.kv_dim(), c.ffn_hidden, c.head_dim());
        let w = |kind| tensor(&c, params, kind, l);
        let s = &self.saved[l];
        // MLP block: x_out = x_mid + mlp(norm2(x_mid)).
        let dxn2 = &mut self.tmp_rows;
        {
            let (dwg, dwu, dwd) = mlp_grads(&c, grads, l)?;
            k(swiglu_mlp_backward(
                n,
                d,
                f,
                &s.xn2,
                w(TensorKind::WGate)?,
                w(TensorKind::WUp)?,
                w(TensorKind::WDown)?,
                &s.gate,
                &s.up,
                dx,
                dxn2,
                dwg,
                dwu,
                dwd,
                &mut self.mlp_scratch,
            ))?;
        }
        let dmid = &mut self.dq_h; // n·dim
        k(rms_norm_backward(
            d,
            c.norm_eps,
            &s.x_mid,
            w(TensorKind::MlpNorm)?,
            dxn2,
            dmid,
            tensor_mut(&c, grads, TensorKind::MlpNorm, l)?,
        ))?;
        for (a, &b) in dx.iter_mut().zip(dmid.iter()) {
            *a += b;
        }
        // dx is now d(x_mid). Attention block: x_mid = x_in + Wo·o.
        let o_shape = LinearShape::new(n, d, d);
        k(linear_backward_weight(
            o_shape,
            &s.o_t,
            dx,
            tensor_mut(&c, grads, TensorKind::Wo, l)?,
        ))?;
        let d_o_t = &mut self.tmp_rows;
        k(linear_backward_input(
            o_shape,
            dx,
            w(TensorKind::Wo)?,
            d_o_t,
        ))?;
        let d_o_h = &mut self.d_o_h;
        head_major(d_o_t, d_o_h, n, c.heads, hd);
        let shape = Self::shape_of(&c, n);
        k(attention_backward(
            &shape,
            &s.q_h,
            &s.k_h,
            &s.v_h,
            &s.o_h,
            d_o_h,
            &s.lse,
            &mut self.dq_h,
            &mut self.dk_h,
            &mut self.dv_h,
            &mut self.attn_scratch,
        ))?;
        let dq = &mut self.tmp_rows;
        token_major(&self.dq_h, dq, n, c.heads, hd);
        token_major(&self.dk_h, &mut self.tmp_kv, n, c.kv_heads, hd);
        token_major(&self.dv_h, &mut self.tmp_kv2, n, c.kv_heads, hd);
        k(rope_backward(c.heads, hd, 0, c.rope_theta, dq))?;
        k(rope_backward(
            c.kv_heads,
            hd,
            0,
            c.rope_theta,
            &mut self.tmp_kv,
        ))?;
        let qs = LinearShape::new(n, d, d);
        let kvs = LinearShape::new(n, d, kvd);
        k(linear_backward_weight(
            qs,
            &s.xn1,
            dq,
            tensor_mut(&c, grads, TensorKind::Wq, l)?,
        ))?;
        k(linear_backward_weight(
            kvs,
            &s.xn1,
            &self.tmp_kv,
            tensor_mut(&c, grads, TensorKind::Wk, l)?,
        ))?;
        k(linear_backward_weight(
            kvs,
            &s.xn1,
            &self.tmp_kv2,
            tensor_mut(&c, grads, TensorKind::Wv, l)?,
        ))?;
        let dxn1 = &mut self.dq_h;
        k(linear_backward_input(qs, dq, w(TensorKind::Wq)?, dxn1))?;
        let part = &mut self.tmp_rows;
        for (t, kind) in [
            (&self.tmp_kv, TensorKind::Wk),
            (&self.tmp_kv2, TensorKind::Wv),
        ] {
            k(linear_backward_input(kvs, t, w(kind)?, part))?;
            for (a, &b) in dxn1.iter_mut().zip(part.iter()) {
                *a += b;
            }
        }
        let dxin = &mut self.tmp_rows;
        k(rms_norm_backward(
            d,
            c.norm_eps,
            &s.x_in,
            w(TensorKind::AttnNorm)?,
            dxn1,
            dxin,
            tensor_mut(&c, grads, TensorKind::AttnNorm, l)?,
        ))?;
        for (a, &b) in dx.iter_mut().zip(dxin.iter()) {
            *a += b;
        }
        Ok(())
    }
}

/// The three MLP weight gradients of layer `l`, borrowed at once (they are adjacent).
fn mlp_grads<'a>(
    c: &ModelConfig,
    grads: &'a mut [f32],
    l: usize,
) -> R<(&'a mut [f32], &'a mut [f32], &'a mut [f32])> {
    let g = k(c.tensor_range(TensorId {
        kind: TensorKind::WGate,
        layer: l,
    }))?;
    let dn = k(c.tensor_range(TensorId {
        kind: TensorKind::WDown,
        layer: l,
    }))?;
    let block = grads
        .get_mut(g.start..dn.end)
        .ok_or_else(|| "gradient vector too short".to_string())?;
    let (wg, rest) = block.split_at_mut(g.len());
    let (wu, wd) = rest.split_at_mut(g.len());
    Ok((wg, wu, wd))
}

/// `[n, heads, hd]` → `[heads, n, hd]`.
pub fn head_major(src: &[f32], dst: &mut [f32], n: usize, heads: usize, hd: usize) {
    for (t, row) in src.chunks_exact(heads * hd).enumerate().take(n) {
        for (h, feat) in row.chunks_exact(hd).enumerate() {
            let at = (h * n + t) * hd;
            dst[at..at + hd].copy_from_slice(feat);
        }
    }
}

/// `[heads, n, hd]` → `[n, heads, hd]`.
pub fn token_major(src: &[f32], dst: &mut [f32], n: usize, heads: usize, hd: usize) {
    for (t, row) in dst.chunks_exact_mut(heads * hd).enumerate().take(n) {
        for (h, feat) in row.chunks_exact_mut(hd).enumerate() {
            let at = (h * n + t) * hd;
            feat.copy_from_slice(&src[at..at + hd]);
        }
    }
}
