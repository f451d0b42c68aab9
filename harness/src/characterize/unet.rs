//! A Stable-Diffusion-1.5-style UNet (resnet blocks, spatial transformers with self- and
//! cross-attention at each attention level, a middle block, skip connections), and its video
//! variant with AnimateDiff-style temporal transformers after every block.

use super::ops::{
    add_into, silu, Attention, AttentionKind, Conv, Ctx, GegluFeedForward, GroupNorm, LayerNorm,
    Linear, WeightSource,
};
use anyhow::Result;
use serde::Serialize;
use tessera_kernels::vision::upsample_nearest2x;

/// The UNet's shape.
#[derive(Clone, Debug, Serialize)]
pub struct UnetConfig {
    /// Side of the square latent (64 for 512×512 images).
    pub latent: usize,
    /// Latent channels in and out.
    pub latent_channels: usize,
    /// Frames (1: an image model; more: the video variant, whose spatial layers see each frame
    /// as a batch element and whose temporal layers attend over the frames).
    pub frames: usize,
    /// Channels of each resolution level.
    pub channels: Vec<usize>,
    /// Whether each level has spatial transformers.
    pub attention: Vec<bool>,
    /// Resnet blocks per down level (up levels have one more).
    pub layers_per_level: usize,
    /// Attention heads (Stable Diffusion 1.5: 8 at every level).
    pub heads: usize,
    /// Text tokens (CLIP: 77).
    pub context_len: usize,
    /// Text embedding width (CLIP ViT-L/14: 768).
    pub context_dim: usize,
    /// Group norm groups.
    pub groups: usize,
    /// Temporal transformers after every block (the video variant).
    pub temporal: bool,
    /// Denoising steps run (each runs the whole UNet once; classifier-free guidance's second
    /// pass is not run).
    pub steps: usize,
}

impl UnetConfig {
    /// Stable Diffusion 1.5 at a `latent`×`latent` latent (64: the published 512×512).
    pub fn sd15(latent: usize, steps: usize) -> Self {
        UnetConfig {
            latent,
            latent_channels: 4,
            frames: 1,
            channels: vec![320, 640, 1280, 1280],
            attention: vec![true, true, true, false],
            layers_per_level: 2,
            heads: 8,
            context_len: 77,
            context_dim: 768,
            groups: 32,
            temporal: false,
            steps,
        }
    }

    /// The video variant: `frames` frames with temporal transformers (AnimateDiff on SD 1.5).
    pub fn video(latent: usize, frames: usize, steps: usize) -> Self {
        UnetConfig {
            frames,
            temporal: true,
            ..UnetConfig::sd15(latent, steps)
        }
    }
}

/// A resnet block: norm, SiLU, 3×3 conv, time embedding, norm, SiLU, 3×3 conv, skip.
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv,
    time: Linear,
    norm2: GroupNorm,
    conv2: Conv,
    skip: Option<Conv>,
}

impl ResBlock {
    fn new(ws: &mut WeightSource, cfg: &UnetConfig, cin: usize, cout: usize, temb: usize) -> Self {
        ResBlock {
            norm1: GroupNorm::new(cin, cfg.groups),
            conv1: Conv::new(ws, cin, cout, 3, 1),
            time: Linear::new(ws, temb, cout, true),
            norm2: GroupNorm::new(cout, cfg.groups),
            conv2: Conv::new(ws, cout, cout, 3, 1),
            skip: (cin != cout).then(|| Conv::new(ws, cin, cout, 1, 1)),
        }
    }

    fn forward(&self, ctx: &mut Ctx, x: &[f32], img: Img, temb: &[f32]) -> Result<Vec<f32>> {
        let mut h = self.norm1.forward(ctx, x, img.batch)?;
        silu(ctx, &mut h);
        let (mut h, _, _) = self.conv1.forward(ctx, &h, img.batch, img.h, img.w)?;
        let mut t = temb.to_vec();
        silu(ctx, &mut t);
        let t = self.time.forward(ctx, &t)?;
        ctx.other(|| {
            for px in h.chunks_exact_mut(t.len()) {
                for (a, b) in px.iter_mut().zip(&t) {
                    *a += b;
                }
            }
        });
        let mut h = self.norm2.forward(ctx, &h, img.batch)?;
        silu(ctx, &mut h);
        let (mut h, _, _) = self.conv2.forward(ctx, &h, img.batch, img.h, img.w)?;
        match &self.skip {
            Some(conv) => {
                let (s, _, _) = conv.forward(ctx, x, img.batch, img.h, img.w)?;
                add_into(ctx, &mut h, &s);
            }
            None => add_into(ctx, &mut h, x),
        }
        Ok(h)
    }
}

/// A spatial transformer: norm, 1×1 conv in, self-attention, cross-attention, GEGLU
/// feed-forward (each pre-norm with a residual), 1×1 conv out, residual.
struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Conv,
    ln: [LayerNorm; 3],
    attn_self: Attention,
    attn_cross: Attention,
    ff: GegluFeedForward,
    proj_out: Conv,
}

impl SpatialTransformer {
    fn new(ws: &mut WeightSource, cfg: &UnetConfig, c: usize) -> Self {
        SpatialTransformer {
            norm: GroupNorm::new(c, cfg.groups),
            proj_in: Conv::new(ws, c, c, 1, 1),
            ln: [LayerNorm::new(c), LayerNorm::new(c), LayerNorm::new(c)],
            attn_self: Attention::new(ws, c, c, cfg.heads),
            attn_cross: Attention::new(ws, c, cfg.context_dim, cfg.heads),
            ff: GegluFeedForward::new(ws, c),
            proj_out: Conv::new(ws, c, c, 1, 1),
        }
    }

    fn forward(&self, ctx: &mut Ctx, x: &[f32], img: Img, context: &[f32]) -> Result<Vec<f32>> {
        let h = self.norm.forward(ctx, x, img.batch)?;
        let (mut t, _, _) = self.proj_in.forward(ctx, &h, img.batch, img.h, img.w)?;
        let n = self.ln[0].forward(ctx, &t)?;
        let a = self
            .attn_self
            .forward(ctx, &n, AttentionKind::Spatial { batch: img.batch })?;
        add_into(ctx, &mut t, &a);
        let n = self.ln[1].forward(ctx, &t)?;
        let a = self
            .attn_cross
            .forward(ctx, &n, AttentionKind::Cross { context })?;
        add_into(ctx, &mut t, &a);
        let n = self.ln[2].forward(ctx, &t)?;
        let f = self.ff.forward(ctx, &n)?;
        add_into(ctx, &mut t, &f);
        let (mut out, _, _) = self.proj_out.forward(ctx, &t, img.batch, img.h, img.w)?;
        add_into(ctx, &mut out, x);
        Ok(out)
    }
}

/// An AnimateDiff motion module: norm over the frames, linear in, two temporal self-attention
/// blocks, GEGLU feed-forward, linear out, residual.
struct TemporalTransformer {
    norm: GroupNorm,
    proj_in: Linear,
    ln: [LayerNorm; 3],
    attn: [Attention; 2],
    ff: GegluFeedForward,
    proj_out: Linear,
}

impl TemporalTransformer {
    fn new(ws: &mut WeightSource, cfg: &UnetConfig, c: usize) -> Self {
        TemporalTransformer {
            norm: GroupNorm::new(c, cfg.groups),
            proj_in: Linear::new(ws, c, c, true),
            ln: [LayerNorm::new(c), LayerNorm::new(c), LayerNorm::new(c)],
            attn: [
                Attention::new(ws, c, c, cfg.heads),
                Attention::new(ws, c, c, cfg.heads),
            ],
            ff: GegluFeedForward::new(ws, c),
            proj_out: Linear::new(ws, c, c, true),
        }
    }

    fn forward(&self, ctx: &mut Ctx, x: &[f32], img: Img) -> Result<Vec<f32>> {
        // Statistics over every frame of the clip (one group-norm batch element).
        let h = self.norm.forward(ctx, x, 1)?;
        let mut t = self.proj_in.forward(ctx, &h)?;
        for (ln, attn) in self.ln.iter().zip(&self.attn) {
            let n = ln.forward(ctx, &t)?;
            let a = attn.forward(ctx, &n, AttentionKind::Temporal { frames: img.batch })?;
            add_into(ctx, &mut t, &a);
        }
        let n = self.ln[2].forward(ctx, &t)?;
        let f = self.ff.forward(ctx, &n)?;
        add_into(ctx, &mut t, &f);
        let mut out = self.proj_out.forward(ctx, &t)?;
        add_into(ctx, &mut out, x);
        Ok(out)
    }
}

/// Images in flight: `batch` (frames) of `h × w`.
#[derive(Clone, Copy)]
struct Img {
    batch: usize,
    h: usize,
    w: usize,
}

/// A resnet, optionally followed by a spatial and a temporal transformer.
struct Stage {
    res: ResBlock,
    spatial: Option<SpatialTransformer>,
    temporal: Option<TemporalTransformer>,
}

impl Stage {
    fn new(ws: &mut WeightSource, cfg: &UnetConfig, cin: usize, c: usize, attn: bool) -> Self {
        let temb = 4 * cfg.channels[0];
        Stage {
            res: ResBlock::new(ws, cfg, cin, c, temb),
            spatial: attn.then(|| SpatialTransformer::new(ws, cfg, c)),
            temporal: cfg.temporal.then(|| TemporalTransformer::new(ws, cfg, c)),
        }
    }

    fn forward(
        &self,
        ctx: &mut Ctx,
        x: &[f32],
        img: Img,
        temb: &[f32],
        context: &[f32],
    ) -> Result<Vec<f32>> {
        let mut h = self.res.forward(ctx, x, img, temb)?;
        if let Some(s) = &self.spatial {
            h = s.forward(ctx, &h, img, context)?;
        }
        if let Some(t) = &self.temporal {
            h = t.forward(ctx, &h, img)?;
        }
        Ok(h)
    }
}

/// The UNet with random weights.
pub struct Unet {
    cfg: UnetConfig,
    time1: Linear,
    time2: Linear,
    conv_in: Conv,
    down: Vec<(Vec<Stage>, Option<Conv>)>,
    mid: (Stage, ResBlock),
    up: Vec<(Vec<Stage>, Option<Conv>)>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl Unet {
    /// Builds the UNet of `cfg` with weights from `seed`.
    pub fn new(cfg: &UnetConfig, seed: u64) -> Self {
        let ws = &mut WeightSource::new(seed);
        let ch = &cfg.channels;
        let levels = ch.len();
        let temb = 4 * ch[0];
        let mut skips = vec![ch[0]];
        let mut down = Vec::new();
        let mut cin = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            let mut stages = Vec::new();
            for _ in 0..cfg.layers_per_level {
                stages.push(Stage::new(ws, cfg, cin, c, cfg.attention[i]));
                cin = c;
                skips.push(c);
            }
            let downsample = (i + 1 < levels).then(|| {
                skips.push(c);
                Conv::new(ws, c, c, 3, 2)
            });
            down.push((stages, downsample));
        }
        let last = ch[levels - 1];
        let mid_attn = cfg.attention.iter().any(|&a| a);
        let mid = (
            Stage::new(ws, cfg, last, last, mid_attn),
            ResBlock::new(ws, cfg, last, last, temb),
        );
        let mut up = Vec::new();
        let mut prev = last;
        for i in (0..levels).rev() {
            let c = ch[i];
            let mut stages = Vec::new();
            for _ in 0..=cfg.layers_per_level {
                let skip = skips.pop().unwrap_or(c);
                stages.push(Stage::new(ws, cfg, prev + skip, c, cfg.attention[i]));
                prev = c;
            }
            let upsample = (i > 0).then(|| Conv::new(ws, c, c, 3, 1));
            up.push((stages, upsample));
        }
        Unet {
            cfg: cfg.clone(),
            time1: Linear::new(ws, ch[0], temb, true),
            time2: Linear::new(ws, temb, temb, true),
            conv_in: Conv::new(ws, cfg.latent_channels, ch[0], 3, 1),
            down,
            mid,
            up,
            norm_out: GroupNorm::new(ch[0], cfg.groups),
            conv_out: Conv::new(ws, ch[0], cfg.latent_channels, 3, 1),
        }
    }

    /// Units of progress of one step (stages and samplings).
    pub fn units_per_step(&self) -> u64 {
        let d: usize = self.down.iter().map(|(s, _)| s.len() + 1).sum();
        let u: usize = self.up.iter().map(|(s, _)| s.len() + 1).sum();
        (d + u + 3) as u64
    }

    /// One denoising step: the noise prediction for `latent` (`[frames, latent, latent, 4]`) at
    /// `timestep`; `tick` is called after every stage.
    pub fn step(
        &self,
        ctx: &mut Ctx,
        latent: &[f32],
        timestep: f32,
        context: &[f32],
        tick: &mut dyn FnMut(),
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let mut img = Img {
            batch: cfg.frames,
            h: cfg.latent,
            w: cfg.latent,
        };
        // Sinusoidal timestep embedding, then the MLP.
        ctx.prof.site = "time".into();
        let c0 = cfg.channels[0];
        let sin = ctx.other(|| {
            (0..c0)
                .map(|i| {
                    let f = (-((i % (c0 / 2)) as f32) * (10000f32).ln() / (c0 / 2) as f32).exp();
                    if i < c0 / 2 {
                        (timestep * f).cos()
                    } else {
                        (timestep * f).sin()
                    }
                })
                .collect::<Vec<f32>>()
        });
        let mut temb = self.time1.forward(ctx, &sin)?;
        silu(ctx, &mut temb);
        let temb = self.time2.forward(ctx, &temb)?;
        let (mut h, _, _) = self.conv_in.forward(ctx, latent, img.batch, img.h, img.w)?;
        let mut skips = vec![ctx.other(|| h.clone())];
        tick();
        for (i, (stages, downsample)) in self.down.iter().enumerate() {
            ctx.prof.site = format!("down{i}");
            for s in stages {
                h = s.forward(ctx, &h, img, &temb, context)?;
                skips.push(ctx.other(|| h.clone()));
                tick();
            }
            if let Some(conv) = downsample {
                let (y, oh, ow) = conv.forward(ctx, &h, img.batch, img.h, img.w)?;
                h = y;
                img.h = oh;
                img.w = ow;
                skips.push(ctx.other(|| h.clone()));
            }
            tick();
        }
        ctx.prof.site = "mid".into();
        h = self.mid.0.forward(ctx, &h, img, &temb, context)?;
        h = self.mid.1.forward(ctx, &h, img, &temb)?;
        tick();
        let levels = self.up.len();
        for (r, (stages, upsample)) in self.up.iter().enumerate() {
            ctx.prof.site = format!("up{}", levels - 1 - r);
            for s in stages {
                let skip = skips.pop().unwrap_or_default();
                let cat = ctx.other(|| concat_channels(&h, &skip, img.batch * img.h * img.w));
                h = s.forward(ctx, &cat, img, &temb, context)?;
                tick();
            }
            if let Some(conv) = upsample {
                let c = h.len() / (img.batch * img.h * img.w);
                let mut up = vec![0.0f32; h.len() * 4];
                ctx.other(|| upsample_nearest2x(img.batch, img.h, img.w, c, &h, &mut up))?;
                img.h *= 2;
                img.w *= 2;
                let (y, _, _) = conv.forward(ctx, &up, img.batch, img.h, img.w)?;
                h = y;
            }
            tick();
        }
        ctx.prof.site = "out".into();
        let mut h = self.norm_out.forward(ctx, &h, img.batch)?;
        silu(ctx, &mut h);
        let (eps, _, _) = self.conv_out.forward(ctx, &h, img.batch, img.h, img.w)?;
        tick();
        Ok(eps)
    }
}

/// `[pixels, ca] ++ [pixels, cb]` → `[pixels, ca + cb]`.
fn concat_channels(a: &[f32], b: &[f32], pixels: usize) -> Vec<f32> {
    let (ca, cb) = (a.len() / pixels, b.len() / pixels);
    let mut out = Vec::with_capacity(a.len() + b.len());
    for p in 0..pixels {
        out.extend_from_slice(&a[p * ca..(p + 1) * ca]);
        out.extend_from_slice(&b[p * cb..(p + 1) * cb]);
    }
    out
}
