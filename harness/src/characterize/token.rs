//! A Parti-style transformer TTI decoder: image tokens generated one at a time (autoregressive,
//! with a KV cache), each decoder layer with causal self-attention over the tokens so far,
//! cross-attention to the text encoder's output, and a GELU feed-forward; then the logits over
//! the image-token codebook and a greedy pick. The text encoder's output is given (random), as
//! the UNet's text embedding is.

use super::ops::{add_into, gelu, Attention, Ctx, LayerNorm, Linear, WeightSource};
use anyhow::Result;
use serde::Serialize;
use tessera_kernels::attention::AttentionShape;

/// The decoder's shape.
#[derive(Clone, Debug, Serialize)]
pub struct TokenConfig {
    /// Decoder layers.
    pub layers: usize,
    /// Model width.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Image tokens generated (32×32 for a 256×256 image through ViT-VQGAN).
    pub image_tokens: usize,
    /// Text tokens (Parti: 128).
    pub text_len: usize,
    /// Image-token codebook size (ViT-VQGAN: 8192).
    pub vocab: usize,
}

impl TokenConfig {
    /// Parti-350M's decoder (12 layers of width 1024, 16 heads, feed-forward 4096) generating
    /// `image_tokens` tokens with `layers` layers.
    pub fn parti_350m(layers: usize, image_tokens: usize) -> Self {
        TokenConfig {
            layers,
            dim: 1024,
            heads: 16,
            ffn: 4096,
            image_tokens,
            text_len: 128,
            vocab: 8192,
        }
    }
}

struct Layer {
    ln: [LayerNorm; 3],
    attn_self: Attention,
    attn_cross: Attention,
    up: Linear,
    down: Linear,
}

/// The decoder with random weights.
pub struct TokenDecoder {
    cfg: TokenConfig,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    ln_out: LayerNorm,
    logits: Linear,
}

impl TokenDecoder {
    /// Builds the decoder of `cfg` with weights from `seed`.
    pub fn new(cfg: &TokenConfig, seed: u64) -> Self {
        let ws = &mut WeightSource::new(seed);
        let d = cfg.dim;
        let layers = (0..cfg.layers)
            .map(|_| Layer {
                ln: [LayerNorm::new(d), LayerNorm::new(d), LayerNorm::new(d)],
                attn_self: Attention::new(ws, d, d, cfg.heads),
                attn_cross: Attention::new(ws, d, d, cfg.heads),
                up: Linear::new(ws, d, cfg.ffn, true),
                down: Linear::new(ws, cfg.ffn, d, true),
            })
            .collect();
        TokenDecoder {
            cfg: cfg.clone(),
            embed: ws.take(cfg.vocab * d, 1),
            layers,
            ln_out: LayerNorm::new(d),
            logits: Linear::new(ws, d, cfg.vocab, false),
        }
    }

    /// Generates every image token for the text encoding `text` (`[text_len, dim]`); `tick` is
    /// called after every token. Returns the tokens.
    pub fn generate(
        &self,
        ctx: &mut Ctx,
        text: &[f32],
        tick: &mut dyn FnMut(),
    ) -> Result<Vec<usize>> {
        let cfg = &self.cfg;
        let (d, heads, n) = (cfg.dim, cfg.heads, cfg.image_tokens);
        let hd = d / heads;
        ctx.prof.site = "decoder".into();
        // The text's keys and values, once per layer (head-major, no transpose).
        let mut cross_kv = Vec::new();
        for layer in &self.layers {
            cross_kv.push(layer.attn_cross.text_kv(ctx, text)?);
        }
        // KV caches, head-major at full capacity.
        let mut k_cache = vec![vec![0.0f32; heads * n * hd]; cfg.layers];
        let mut v_cache = vec![vec![0.0f32; heads * n * hd]; cfg.layers];
        let mut tokens = Vec::with_capacity(n);
        let mut token = 0usize;
        for t in 0..n {
            ctx.prof.step = t;
            let mut x = ctx.other(|| self.embed[token * d..(token + 1) * d].to_vec());
            for (l, layer) in self.layers.iter().enumerate() {
                let h = layer.ln[0].forward(ctx, &x)?;
                let self_shape = AttentionShape::new(1, heads, 1, t + 1, hd).with_kv_capacity(n);
                let a = layer.attn_self.decode_step(
                    ctx,
                    &h,
                    &mut k_cache[l],
                    &mut v_cache[l],
                    t,
                    &self_shape,
                )?;
                add_into(ctx, &mut x, &a);
                let h = layer.ln[1].forward(ctx, &x)?;
                let (k, v) = &cross_kv[l];
                let cross_shape = AttentionShape::new(1, heads, 1, cfg.text_len, hd);
                let a = layer.attn_cross.cross_step(ctx, &h, k, v, &cross_shape)?;
                add_into(ctx, &mut x, &a);
                let h = layer.ln[2].forward(ctx, &x)?;
                let mut u = layer.up.forward(ctx, &h)?;
                gelu(ctx, &mut u);
                let f = layer.down.forward(ctx, &u)?;
                add_into(ctx, &mut x, &f);
            }
            let h = self.ln_out.forward(ctx, &x)?;
            let logits = self.logits.forward(ctx, &h)?;
            token = ctx.other(|| tessera_kernels::nn::argmax(&logits).map_or(0, |t| t as usize));
            tokens.push(token);
            tick();
        }
        Ok(tokens)
    }
}
