//! The layers of the characterized models, each call timed under its operator class. Weights are
//! random (seeded), activations `f32`, the kernels those of `tessera_kernels` on the best
//! backend, one thread.

use super::profile::{OpClass, Profiler};
use crate::attention::{run_into, Kernel};
use anyhow::Result;
use tessera_kernels::attention::{AttentionShape, FlashTiles, Layout};
use tessera_kernels::nn::{linear_matmul, LinearShape};
use tessera_kernels::simd::Backend;
use tessera_kernels::vision::{
    conv2d, conv2d_scratch_len, gelu_in_place, group_norm, layer_norm, silu_in_place, Conv2dShape,
    GroupNormShape,
};

/// Seeded random weights: uniform with the variance `1/fan_in` (xorshift: generating a billion
/// weights must not dominate a run; their values do not change the time).
pub struct WeightSource {
    state: u64,
}

impl WeightSource {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        WeightSource {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// `n` weights of a layer with `fan_in` inputs.
    pub fn take(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        // Uniform on [-a, a] has variance a²/3.
        let a = (3.0 / fan_in.max(1) as f32).sqrt();
        (0..n)
            .map(|_| {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                ((self.state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
            })
            .collect()
    }
}

/// What every layer call needs: the profiler and the attention algorithm.
pub struct Ctx {
    /// Where the times go.
    pub prof: Profiler,
    /// Flash or baseline.
    pub kernel: Kernel,
    /// Flash tiles.
    pub tiles: FlashTiles,
}

impl Ctx {
    /// Runs one attention call (`f32`, best backend), timed under `class` with its shape;
    /// returns the output (laid out as the queries).
    pub fn attend(
        &mut self,
        class: OpClass,
        shape: &AttentionShape,
        q: &[f32],
        k: &[f32],
        v: &[f32],
    ) -> Result<Vec<f32>> {
        let (kernel, tiles) = (self.kernel, self.tiles);
        let s = *shape;
        self.prof.attention(
            class,
            s.q_len,
            s.kv_len,
            s.batch,
            s.heads,
            s.head_dim,
            || {
                let mut out = vec![0.0f32; q.len()];
                run_into::<f32, f32>(kernel, Backend::Auto, tiles, &s, q, k, v, &mut out)?;
                anyhow::Ok(out)
            },
        )
    }

    /// `f` timed as `Other`.
    pub fn other<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.prof.time(OpClass::Other, f)
    }
}

/// A dense layer `y = x·Wᵀ + b`.
pub struct Linear {
    /// Input features.
    pub in_dim: usize,
    /// Output features.
    pub out_dim: usize,
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl Linear {
    /// Random weights; a bias if `bias`.
    pub fn new(ws: &mut WeightSource, in_dim: usize, out_dim: usize, bias: bool) -> Self {
        Linear {
            in_dim,
            out_dim,
            w: ws.take(in_dim * out_dim, in_dim),
            bias: if bias {
                ws.take(out_dim, in_dim)
            } else {
                Vec::new()
            },
        }
    }

    /// `y = x·Wᵀ + b` over `x.len() / in_dim` rows, timed as `Linear`.
    pub fn forward(&self, ctx: &mut Ctx, x: &[f32]) -> Result<Vec<f32>> {
        let rows = x.len() / self.in_dim;
        // Allocations inside the timed region: they are the operator's cost.
        ctx.prof.time(OpClass::Linear, || {
            let mut y = vec![0.0f32; rows * self.out_dim];
            linear_matmul(
                LinearShape::new(rows, self.in_dim, self.out_dim),
                x,
                &self.w,
                &mut y,
            )?;
            add_bias(&mut y, &self.bias);
            Ok(y)
        })
    }

    /// The projection of head `h` of `heads` alone (output rows `h·d .. (h+1)·d` of `W`), so
    /// keys and values come out head-major `[rows, d]` with no transpose. Timed as `Linear`.
    pub fn forward_head(
        &self,
        ctx: &mut Ctx,
        x: &[f32],
        h: usize,
        heads: usize,
    ) -> Result<Vec<f32>> {
        let d = self.out_dim / heads;
        let rows = x.len() / self.in_dim;
        let w = &self.w[h * d * self.in_dim..(h + 1) * d * self.in_dim];
        ctx.prof.time(OpClass::Linear, || {
            let mut y = vec![0.0f32; rows * d];
            linear_matmul(LinearShape::new(rows, self.in_dim, d), x, w, &mut y)?;
            if !self.bias.is_empty() {
                add_bias(&mut y, &self.bias[h * d..(h + 1) * d]);
            }
            Ok(y)
        })
    }

    /// Keys or values head-major `[batch, heads, rows, d]` from `batch` blocks of token rows.
    pub fn heads_major(
        &self,
        ctx: &mut Ctx,
        x: &[f32],
        batch: usize,
        heads: usize,
    ) -> Result<Vec<f32>> {
        let per = x.len() / batch.max(1);
        let mut out = Vec::with_capacity(x.len() / self.in_dim * self.out_dim);
        for b in 0..batch {
            for h in 0..heads {
                let part = self.forward_head(ctx, &x[b * per..(b + 1) * per], h, heads)?;
                ctx.other(|| out.extend_from_slice(&part));
            }
        }
        Ok(out)
    }
}

fn add_bias(y: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// A 2-D convolution with bias over NHWC images.
pub struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    kernel: usize,
    stride: usize,
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv {
    /// A `kernel × kernel` convolution (same padding) with `stride`.
    pub fn new(
        ws: &mut WeightSource,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        let fan_in = kernel * kernel * cin;
        Conv {
            cin,
            cout,
            kernel,
            stride,
            w: ws.take(cout * fan_in, fan_in),
            bias: ws.take(cout, fan_in),
        }
    }

    /// Convolves `batch` images `[h, w, cin]`; returns the output and its `(h, w)`. Timed as
    /// `Conv`.
    pub fn forward(
        &self,
        ctx: &mut Ctx,
        x: &[f32],
        batch: usize,
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, usize, usize)> {
        let shape = Conv2dShape::new(batch, h, w, self.cin, self.cout, self.kernel)
            .with_stride(self.stride);
        let (oh, ow) = shape.output_size()?;
        let y = ctx.prof.time(OpClass::Conv, || {
            let mut y = vec![0.0f32; batch * oh * ow * self.cout];
            let mut scratch = vec![0.0f32; conv2d_scratch_len(&shape)?];
            conv2d(&shape, x, &self.w, &self.bias, &mut y, &mut scratch)?;
            anyhow::Ok(y)
        })?;
        Ok((y, oh, ow))
    }
}

/// Group norm with affine parameters (32 groups, as Stable Diffusion).
pub struct GroupNorm {
    channels: usize,
    groups: usize,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl GroupNorm {
    /// `groups` groups over `channels` (gain 1, bias 0: the values do not change the time).
    pub fn new(channels: usize, groups: usize) -> Self {
        GroupNorm {
            channels,
            groups: groups.min(channels),
            gamma: vec![1.0; channels],
            beta: vec![0.0; channels],
        }
    }

    /// Normalises `batch` images of `x.len() / (batch·channels)` pixels, timed as `Norm`.
    pub fn forward(&self, ctx: &mut Ctx, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let pixels = x.len() / (batch * self.channels);
        let shape = GroupNormShape::new(batch, pixels, self.channels, self.groups).with_eps(1e-6);
        ctx.prof.time(OpClass::Norm, || {
            let mut y = vec![0.0f32; x.len()];
            group_norm::<f32, f32>(&shape, x, &self.gamma, &self.beta, &mut y)?;
            Ok(y)
        })
    }
}

/// Layer norm over the features of every token.
pub struct LayerNorm {
    dim: usize,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl LayerNorm {
    /// Over `dim` features.
    pub fn new(dim: usize) -> Self {
        LayerNorm {
            dim,
            gamma: vec![1.0; dim],
            beta: vec![0.0; dim],
        }
    }

    /// Normalises every row, timed as `Norm`.
    pub fn forward(&self, ctx: &mut Ctx, x: &[f32]) -> Result<Vec<f32>> {
        ctx.prof.time(OpClass::Norm, || {
            let mut y = vec![0.0f32; x.len()];
            layer_norm(self.dim, 1e-5, x, &self.gamma, &self.beta, &mut y)?;
            Ok(y)
        })
    }
}

/// `x += r` elementwise, timed as `Other`.
pub fn add_into(ctx: &mut Ctx, x: &mut [f32], r: &[f32]) {
    ctx.other(|| {
        for (a, b) in x.iter_mut().zip(r) {
            *a += b;
        }
    })
}

/// SiLU in place, timed as `Other`.
pub fn silu(ctx: &mut Ctx, x: &mut [f32]) {
    ctx.other(|| silu_in_place(x))
}

/// GELU in place, timed as `Other`.
pub fn gelu(ctx: &mut Ctx, x: &mut [f32]) {
    ctx.other(|| gelu_in_place(x))
}

/// Multi-head attention with its four projections.
pub struct Attention {
    heads: usize,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

/// Where attention's queries and keys come from, and so its class and layout.
pub enum AttentionKind<'a> {
    /// Self-attention within each of `batch` frames of `x` (`[batch, pixels, dim]`).
    Spatial {
        /// Frames.
        batch: usize,
    },
    /// Cross-attention from every pixel of `x` to the `context` tokens (`[tokens, ctx_dim]`),
    /// shared by every frame.
    Cross {
        /// The text encoder's output.
        context: &'a [f32],
    },
    /// Self-attention over the `frames` of each pixel of `x` (`[frames, pixels, dim]`).
    Temporal {
        /// Frames.
        frames: usize,
    },
}

impl Attention {
    /// `heads` heads over `dim` features; keys and values from `kv_dim` features.
    pub fn new(ws: &mut WeightSource, dim: usize, kv_dim: usize, heads: usize) -> Self {
        Attention {
            heads,
            q: Linear::new(ws, dim, dim, false),
            k: Linear::new(ws, kv_dim, dim, false),
            v: Linear::new(ws, kv_dim, dim, false),
            o: Linear::new(ws, dim, dim, true),
        }
    }

    /// The attention block's output (before the residual) for tokens `x` (`[.., dim]`).
    pub fn forward(&self, ctx: &mut Ctx, x: &[f32], kind: AttentionKind<'_>) -> Result<Vec<f32>> {
        let (dim, heads) = (self.q.out_dim, self.heads);
        let d = dim / heads;
        let tokens = x.len() / dim;
        // Queries token-major, straight from the projection.
        let q = self.q.forward(ctx, x)?;
        let out = match kind {
            AttentionKind::Spatial { batch } => {
                let n = tokens / batch;
                let k = self.k.heads_major(ctx, x, batch, heads)?;
                let v = self.v.heads_major(ctx, x, batch, heads)?;
                let shape =
                    AttentionShape::new(batch, heads, n, n, d).with_layout(Layout::TokenMajor);
                ctx.attend(OpClass::AttentionSpatial, &shape, &q, &k, &v)
            }
            AttentionKind::Cross { context } => {
                let n_ctx = context.len() / self.k.in_dim;
                let (k, v) = self.text_kv(ctx, context)?;
                // Every frame's pixels are one sequence of queries against the same keys.
                let shape =
                    AttentionShape::new(1, heads, tokens, n_ctx, d).with_layout(Layout::TokenMajor);
                ctx.attend(OpClass::AttentionCross, &shape, &q, &k, &v)
            }
            AttentionKind::Temporal { frames } => {
                let pixels = tokens / frames;
                // Queries and output read in place (frame-major); keys and values are permuted to
                // head-major [pixels, heads, frames, d] (the kernel reads each head's keys
                // contiguously): a copy of 2·tokens·dim floats, timed as `Other`.
                let kt = self.k.forward(ctx, x)?;
                let vt = self.v.forward(ctx, x)?;
                let (k, v) = ctx.other(|| {
                    (
                        frames_to_heads(&kt, frames, pixels, heads, d),
                        frames_to_heads(&vt, frames, pixels, heads, d),
                    )
                });
                let shape = AttentionShape::new(pixels, heads, frames, frames, d)
                    .with_layout(Layout::FrameMajor);
                ctx.attend(OpClass::AttentionTemporal, &shape, &q, &k, &v)
            }
        };
        self.o.forward(ctx, &out?)
    }
}

impl Attention {
    /// Keys and values of the text tokens `context`, head-major `[heads, tokens, d]`.
    pub fn text_kv(&self, ctx: &mut Ctx, context: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let k = self.k.heads_major(ctx, context, 1, self.heads)?;
        let v = self.v.heads_major(ctx, context, 1, self.heads)?;
        Ok((k, v))
    }

    /// One decoding step of causal self-attention: projects the token `x`, appends its key and
    /// value at row `t` of the head-major caches, attends over rows `0..=t`
    /// (`shape`: one query, `kv_len = t + 1`), projects the output.
    pub fn decode_step(
        &self,
        ctx: &mut Ctx,
        x: &[f32],
        k_cache: &mut [f32],
        v_cache: &mut [f32],
        t: usize,
        shape: &AttentionShape,
    ) -> Result<Vec<f32>> {
        let q = self.q.forward(ctx, x)?;
        let k = self.k.forward(ctx, x)?;
        let v = self.v.forward(ctx, x)?;
        let (d, cap) = (shape.head_dim, shape.kv_capacity);
        ctx.other(|| {
            for h in 0..self.heads {
                let at = (h * cap + t) * d;
                k_cache[at..at + d].copy_from_slice(&k[h * d..(h + 1) * d]);
                v_cache[at..at + d].copy_from_slice(&v[h * d..(h + 1) * d]);
            }
        });
        let out = ctx.attend(OpClass::AttentionSpatial, shape, &q, k_cache, v_cache)?;
        self.o.forward(ctx, &out)
    }

    /// One decoding step of cross-attention to precomputed text keys and values.
    pub fn cross_step(
        &self,
        ctx: &mut Ctx,
        x: &[f32],
        k: &[f32],
        v: &[f32],
        shape: &AttentionShape,
    ) -> Result<Vec<f32>> {
        let q = self.q.forward(ctx, x)?;
        let out = ctx.attend(OpClass::AttentionCross, shape, &q, k, v)?;
        self.o.forward(ctx, &out)
    }
}

/// `[frames, pixels, heads, d]` → `[pixels, heads, frames, d]`.
fn frames_to_heads(x: &[f32], frames: usize, pixels: usize, heads: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for f in 0..frames {
        for p in 0..pixels {
            for h in 0..heads {
                let src = ((f * pixels + p) * heads + h) * d;
                let dst = ((p * heads + h) * frames + f) * d;
                out[dst..dst + d].copy_from_slice(&x[src..src + d]);
            }
        }
    }
    out
}

/// The GEGLU feed-forward of a diffusion transformer block: `dim → 2·inner`, `a ⊙ gelu(gate)`,
/// `inner → dim`.
pub struct GegluFeedForward {
    inner: usize,
    proj: Linear,
    out: Linear,
}

impl GegluFeedForward {
    /// `inner = 4·dim`, as Stable Diffusion.
    pub fn new(ws: &mut WeightSource, dim: usize) -> Self {
        let inner = 4 * dim;
        GegluFeedForward {
            inner,
            proj: Linear::new(ws, dim, 2 * inner, true),
            out: Linear::new(ws, inner, dim, true),
        }
    }

    /// The feed-forward's output for tokens `x`.
    pub fn forward(&self, ctx: &mut Ctx, x: &[f32]) -> Result<Vec<f32>> {
        let ag = self.proj.forward(ctx, x)?;
        let inner = self.inner;
        let h = ctx.other(|| {
            let mut h = vec![0.0f32; ag.len() / 2];
            for (row, hr) in ag.chunks_exact(2 * inner).zip(h.chunks_exact_mut(inner)) {
                let (a, g) = row.split_at(inner);
                tessera_kernels::vision::geglu_forward(a, g, hr)
                    .expect("halves of one row have equal lengths");
            }
            h
        });
        self.out.forward(ctx, &h)
    }
}
