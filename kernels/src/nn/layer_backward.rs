//! Backward of one pre-norm decoder layer from the activations
//! [`decoder_layer_train_forward`](crate::nn::decoder_layer_train_forward) saved:
//! `x_mid = x_in + Wo·attn(rope(Wq·n(x_in)), rope(Wk·n(x_in)), Wv·n(x_in))`,
//! `x_out = x_mid + mlp(n'(x_mid))`, taken block by block from the top. Attention is
//! differentiated by recomputation ([`attention_backward`]), whichever algorithm ran forward.

use super::activations::Activations;
use super::attention_backward::{attention_backward, attention_backward_scratch_len};
use super::config::{LayerGradients, LayerWeights, ModelConfig};
use super::heads::{to_head_major, to_token_major};
use super::layer::{attention_shape, tokens};
use super::linear::{linear_backward_input, linear_backward_weight, LinearShape};
use super::mlp::{
    swiglu_mlp_backward, swiglu_mlp_backward_scratch_len, MlpGradients, MlpShape, MlpWeights,
};
use super::norm::rms_norm_backward;
use super::parts::total;
use super::rope::rope_backward;
use crate::check::{mul, split};
use crate::{Element, Result};

/// `acc += add`, elementwise.
fn add_into(acc: &mut [f32], add: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(add.iter()) {
        *a += b;
    }
}

/// Floats of scratch [`decoder_layer_backward`] needs for a sequence of `tokens` tokens.
pub fn decoder_layer_backward_scratch_len(config: &ModelConfig, tokens: usize) -> Result<usize> {
    config.validate()?;
    let rows = mul(tokens, config.dim)?;
    let kv = mul(tokens, config.kv_dim())?;
    let shape = attention_shape(config, tokens, tokens, tokens);
    // Three [n, dim] and four [n, kv_dim] gradients, then the MLP's and attention's scratch.
    total(&[
        mul(3, rows)?,
        mul(4, kv)?,
        swiglu_mlp_backward_scratch_len(MlpShape::new(tokens, config.dim, config.ffn_hidden))?,
        attention_backward_scratch_len(&shape)?,
    ])
}

/// Backward of one decoder layer over the sequence whose training forward saved `activations`.
/// `d_hidden` (`[n, dim]`) holds the gradient of the layer's output and is replaced by the
/// gradient of its input; the weight gradients are *added* into `grads`. `scratch` holds
/// [`decoder_layer_backward_scratch_len`] floats.
pub fn decoder_layer_backward<W: Element>(
    config: &ModelConfig,
    weights: &LayerWeights<'_, W>,
    activations: &[f32],
    d_hidden: &mut [f32],
    grads: &mut LayerGradients<'_>,
    scratch: &mut [f32],
) -> Result<()> {
    let c = config;
    let n = tokens(c, "d_hidden", d_hidden.len())?;
    let s = Activations::split(c, n, activations)?;
    let (d, kvd, f, hd) = (c.dim, c.kv_dim(), c.ffn_hidden, c.head_dim());
    let dx = d_hidden;
    let rows = mul(n, d)?;
    let kv = mul(n, kvd)?;
    let (rows_a, rest) = split(scratch, rows)?;
    let (rows_b, rest) = split(rest, rows)?;
    let (d_o_h, rest) = split(rest, rows)?;
    let (dk_h, rest) = split(rest, kv)?;
    let (dv_h, rest) = split(rest, kv)?;
    let (dk, rest) = split(rest, kv)?;
    let (dv, rest) = split(rest, kv)?;
    let mlp = MlpShape::new(n, d, f);
    let (mlp_scratch, attn_scratch) = split(rest, swiglu_mlp_backward_scratch_len(mlp)?)?;

    // MLP block: x_out = x_mid + mlp(norm2(x_mid)).
    let dxn2 = &mut *rows_a;
    let mlp_weights = MlpWeights {
        gate: weights.w_gate,
        up: weights.w_up,
        down: weights.w_down,
    };
    let mut mlp_grads = MlpGradients {
        gate: &mut *grads.w_gate,
        up: &mut *grads.w_up,
        down: &mut *grads.w_down,
    };
    let saved = (s.gate, s.up);
    swiglu_mlp_backward(
        mlp,
        &mlp_weights,
        s.xn2,
        saved,
        dx,
        dxn2,
        &mut mlp_grads,
        mlp_scratch,
    )?;
    let dmid = &mut *rows_b;
    rms_norm_backward(
        d,
        c.norm_eps,
        s.x_mid,
        weights.mlp_norm,
        dxn2,
        dmid,
        grads.mlp_norm,
    )?;
    add_into(dx, dmid);

    // dx is now d(x_mid). Attention block: x_mid = x_in + Wo·o.
    let o_shape = LinearShape::new(n, d, d);
    linear_backward_weight(o_shape, s.o_t, dx, grads.wo)?;
    let d_o_t = &mut *rows_a;
    linear_backward_input(o_shape, dx, weights.wo, d_o_t)?;
    to_head_major(d_o_t, d_o_h, n, c.heads, hd)?;
    let shape = attention_shape(c, n, n, n);
    let dq_h = &mut *rows_b;
    attention_backward(
        &shape,
        s.q_h,
        s.k_h,
        s.v_h,
        s.o_h,
        d_o_h,
        s.lse,
        dq_h,
        dk_h,
        dv_h,
        attn_scratch,
    )?;
    let dq = &mut *rows_a;
    to_token_major(dq_h, dq, n, c.heads, hd)?;
    to_token_major(dk_h, dk, n, c.kv_heads, hd)?;
    to_token_major(dv_h, dv, n, c.kv_heads, hd)?;
    rope_backward(c.heads, hd, 0, c.rope_theta, dq)?;
    rope_backward(c.kv_heads, hd, 0, c.rope_theta, dk)?;
    let qs = LinearShape::new(n, d, d);
    let kvs = LinearShape::new(n, d, kvd);
    linear_backward_weight(qs, s.xn1, dq, grads.wq)?;
    linear_backward_weight(kvs, s.xn1, dk, grads.wk)?;
    linear_backward_weight(kvs, s.xn1, dv, grads.wv)?;
    let dxn1 = &mut *rows_b;
    linear_backward_input(qs, dq, weights.wq, dxn1)?;
    let part = &mut *rows_a;
    for (t, w) in [(&*dk, weights.wk), (&*dv, weights.wv)] {
        linear_backward_input(kvs, t, w, part)?;
        add_into(dxn1, part);
    }
    let dxin = &mut *rows_a;
    rms_norm_backward(
        d,
        c.norm_eps,
        s.x_in,
        weights.attn_norm,
        dxn1,
        dxin,
        grads.attn_norm,
    )?;
    add_into(dx, dxin);
    Ok(())
}
