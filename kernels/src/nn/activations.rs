//! What a training forward of one decoder layer keeps for its backward, laid out in one caller
//! slice of [`decoder_layer_activations_len`] floats.
//!
//! For `n` tokens, in order: the layer input `x_in`, the attention norm's output `xn1`
//! (`[n, dim]` each); queries `q_h` (`[heads, n, head_dim]`), keys `k_h` and values `v_h`
//! (`[kv_heads, n, head_dim]` each, after RoPE), the attention output `o_h` (`[heads, n,
//! head_dim]`) and its row logsumexps `lse` (`[heads, n]`); the attention output token-major
//! `o_t`, the residual stream after attention `x_mid`, the MLP norm's output `xn2` (`[n, dim]`
//! each); the MLP pre-activations `gate` and `up` (`[n, ffn_hidden]` each).

use super::config::ModelConfig;
use super::parts::{split_parts, split_parts_mut, total};
use crate::check::mul;
use crate::Result;

/// The saved activations of one layer, each part borrowed as `S` (`&[f32]` or `&mut [f32]`).
pub(crate) struct Activations<S> {
    pub(crate) x_in: S,
    pub(crate) xn1: S,
    pub(crate) q_h: S,
    pub(crate) k_h: S,
    pub(crate) v_h: S,
    pub(crate) o_h: S,
    pub(crate) lse: S,
    pub(crate) o_t: S,
    pub(crate) x_mid: S,
    pub(crate) xn2: S,
    pub(crate) gate: S,
    pub(crate) up: S,
}

/// The parts' lengths for `tokens` tokens, in layout order.
fn part_lens(config: &ModelConfig, tokens: usize) -> Result<[usize; 12]> {
    config.validate()?;
    let rows = mul(tokens, config.dim)?;
    let kv = mul(tokens, config.kv_dim())?;
    let ffn = mul(tokens, config.ffn_hidden)?;
    let lse = mul(tokens, config.heads)?;
    Ok([
        rows, rows, rows, kv, kv, rows, lse, rows, rows, rows, ffn, ffn,
    ])
}

impl<S> Activations<S> {
    fn from_parts(parts: [S; 12]) -> Self {
        let [x_in, xn1, q_h, k_h, v_h, o_h, lse, o_t, x_mid, xn2, gate, up] = parts;
        Activations {
            x_in,
            xn1,
            q_h,
            k_h,
            v_h,
            o_h,
            lse,
            o_t,
            x_mid,
            xn2,
            gate,
            up,
        }
    }
}

impl<'a> Activations<&'a mut [f32]> {
    /// The parts of `buf`, which holds exactly [`decoder_layer_activations_len`] floats.
    pub(crate) fn split_mut(
        config: &ModelConfig,
        tokens: usize,
        buf: &'a mut [f32],
    ) -> Result<Self> {
        let lens = part_lens(config, tokens)?;
        split_parts_mut("activations", buf, lens).map(Self::from_parts)
    }
}

impl<'a> Activations<&'a [f32]> {
    /// The parts of `buf`, which holds exactly [`decoder_layer_activations_len`] floats.
    pub(crate) fn split(config: &ModelConfig, tokens: usize, buf: &'a [f32]) -> Result<Self> {
        let lens = part_lens(config, tokens)?;
        split_parts("activations", buf, lens).map(Self::from_parts)
    }
}

/// Floats a training forward of one layer over `tokens` tokens saves for the backward:
/// `tokens · (7·dim + 2·kv_dim + heads + 2·ffn_hidden)`.
pub fn decoder_layer_activations_len(config: &ModelConfig, tokens: usize) -> Result<usize> {
    total(&part_lens(config, tokens)?)
}
