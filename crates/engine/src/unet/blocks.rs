//! The UNet's building blocks in the single-file (LDM) naming: residual blocks, spatial
//! transformers with self- and cross-attention and a GEGLU feed-forward, and the
//! down/up-samplers. Each loads from a [`Weights`] view rooted at the block.

use crate::error::Result;
use crate::layers::{attention, Conv2d, GroupNorm, LayerNorm, Linear};
use crate::weights::Weights;
use tch::Tensor;

/// Every GroupNorm in the SD UNet uses 32 groups.
const GROUPS: i64 = 32;
/// ResBlock and output norms use torch's default eps; the transformer's input norm uses
/// 1e-6 (LDM `Normalize` vs `SpatialTransformer.norm`), as diffusers mirrors.
const RES_NORM_EPS: f64 = 1e-5;
const TRANSFORMER_NORM_EPS: f64 = 1e-6;
const LAYER_NORM_EPS: f64 = 1e-5;

/// `in_layers` (norm, SiLU, conv) → add projected embedding → `out_layers` (norm, SiLU,
/// conv), plus the input, through a 1x1 `skip_connection` when the width changes.
#[derive(Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    pub fn load(w: &Weights, in_ch: i64, out_ch: i64, emb_dim: i64) -> Result<ResBlock> {
        Ok(ResBlock {
            norm1: GroupNorm::load(w, "in_layers.0", in_ch, GROUPS, RES_NORM_EPS)?,
            conv1: Conv2d::load(w, "in_layers.2", in_ch, out_ch, 3, 1, 1)?,
            emb_proj: Linear::load(w, "emb_layers.1", emb_dim, out_ch)?,
            norm2: GroupNorm::load(w, "out_layers.0", out_ch, GROUPS, RES_NORM_EPS)?,
            conv2: Conv2d::load(w, "out_layers.3", out_ch, out_ch, 3, 1, 1)?,
            skip: if in_ch == out_ch {
                None
            } else {
                Some(Conv2d::load(w, "skip_connection", in_ch, out_ch, 1, 1, 0)?)
            },
        })
    }

    /// `emb_act` is the timestep embedding after its SiLU (`emb_layers.0`), computed once per
    /// step by the UNet since every block applies the same activation to the same input.
    pub fn forward(&self, x: &Tensor, emb_act: &Tensor) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(x).silu());
        let h = h + self.emb_proj.forward(emb_act).unsqueeze(-1).unsqueeze(-1);
        let h = self.conv2.forward(&self.norm2.forward(&h).silu());
        match &self.skip {
            Some(conv) => conv.forward(x) + h,
            None => x + h,
        }
    }
}

/// Multi-head attention with bias-free q/k/v and a biased output projection (`to_out.0`).
#[derive(Debug)]
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: i64,
}

impl Attention {
    fn load(w: &Weights, name: &str, dim: i64, context_dim: i64, heads: i64) -> Result<Attention> {
        Ok(Attention {
            to_q: Linear::load(w, &format!("{name}.to_q"), dim, dim)?,
            to_k: Linear::load(w, &format!("{name}.to_k"), context_dim, dim)?,
            to_v: Linear::load(w, &format!("{name}.to_v"), context_dim, dim)?,
            to_out: Linear::load(w, &format!("{name}.to_out.0"), dim, dim)?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(context);
        let v = self.to_v.forward(context);
        self.to_out
            .forward(&attention(&q, &k, &v, self.heads, None))
    }
}

/// Pre-norm transformer layer: self-attention, cross-attention on the text context, and a
/// GEGLU feed-forward (`ff.net.0.proj` gives value and gate, `ff.net.2` projects back).
#[derive(Debug)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

impl TransformerBlock {
    fn load(w: &Weights, dim: i64, context_dim: i64, heads: i64) -> Result<TransformerBlock> {
        // The feed-forward is 4x wide; GEGLU's projection carries value and gate, so 8x.
        let ff_inner = 4 * dim;
        Ok(TransformerBlock {
            norm1: LayerNorm::load(w, "norm1", dim, LAYER_NORM_EPS)?,
            attn1: Attention::load(w, "attn1", dim, dim, heads)?,
            norm2: LayerNorm::load(w, "norm2", dim, LAYER_NORM_EPS)?,
            attn2: Attention::load(w, "attn2", dim, context_dim, heads)?,
            norm3: LayerNorm::load(w, "norm3", dim, LAYER_NORM_EPS)?,
            ff_in: Linear::load(w, "ff.net.0.proj", dim, 2 * ff_inner)?,
            ff_out: Linear::load(w, "ff.net.2", ff_inner, dim)?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let h = self.norm1.forward(x);
        let x = x + self.attn1.forward(&h, &h);
        let x = &x + self.attn2.forward(&self.norm2.forward(&x), context);
        let projected = self.ff_in.forward(&self.norm3.forward(&x));
        let halves = projected.chunk(2, -1);
        let gated = &halves[0] * halves[1].gelu("none");
        &x + self.ff_out.forward(&gated)
    }
}

/// `proj_in`/`proj_out`: a 1x1 conv on the image (SD 1.x) or a linear on the tokens
/// (SD 2.x, SDXL). Both compute the same map; only where the reshape happens differs.
#[derive(Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

impl Projection {
    fn load(w: &Weights, name: &str, dim: i64, linear: bool) -> Result<Projection> {
        Ok(if linear {
            Projection::Linear(Linear::load(w, name, dim, dim)?)
        } else {
            Projection::Conv(Conv2d::load(w, name, dim, dim, 1, 1, 0)?)
        })
    }
}

/// GroupNorm, `proj_in`, `depth` transformer layers over the `h*w` tokens, `proj_out`,
/// plus the input.
#[derive(Debug)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

impl SpatialTransformer {
    pub fn load(
        w: &Weights,
        channels: i64,
        depth: usize,
        context_dim: i64,
        heads: i64,
        linear: bool,
    ) -> Result<SpatialTransformer> {
        let blocks = (0..depth)
            .map(|k| {
                TransformerBlock::load(
                    &w.at(&format!("transformer_blocks.{k}")),
                    channels,
                    context_dim,
                    heads,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SpatialTransformer {
            norm: GroupNorm::load(w, "norm", channels, GROUPS, TRANSFORMER_NORM_EPS)?,
            proj_in: Projection::load(w, "proj_in", channels, linear)?,
            blocks,
            proj_out: Projection::load(w, "proj_out", channels, linear)?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, c, h, w) = x
            .size4()
            .expect("spatial transformer input is [batch, channels, h, w]");
        let to_tokens = |t: &Tensor| t.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        let to_image = |t: &Tensor| t.reshape([b, h, w, c]).permute([0, 3, 1, 2]).contiguous();
        let normed = self.norm.forward(x);
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(&conv.forward(&normed)),
            Projection::Linear(linear) => linear.forward(&to_tokens(&normed)),
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context);
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_image(&tokens)),
            Projection::Linear(linear) => to_image(&linear.forward(&tokens)),
        };
        out + x
    }
}

/// Stride-2 3x3 convolution (`op`).
#[derive(Debug)]
pub struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    pub fn load(w: &Weights, channels: i64) -> Result<Downsample> {
        Ok(Downsample {
            conv: Conv2d::load(w, "op", channels, channels, 3, 2, 1)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.conv.forward(x)
    }
}

/// Nearest-neighbour upscale, then a 3x3 `conv`.
#[derive(Debug)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn load(w: &Weights, channels: i64) -> Result<Upsample> {
        Ok(Upsample {
            conv: Conv2d::load(w, "conv", channels, channels, 3, 1, 1)?,
        })
    }

    /// `target` is the spatial size of the skip tensor this output will be joined with:
    /// exactly twice the input unless the latent size was not a multiple of the total
    /// downscale, in which case doubling would overshoot by one.
    pub fn forward(&self, x: &Tensor, target: Option<(i64, i64)>) -> Tensor {
        let (_, _, h, w) = x
            .size4()
            .expect("upsample input is [batch, channels, h, w]");
        let (th, tw) = target.unwrap_or((2 * h, 2 * w));
        self.conv
            .forward(&x.upsample_nearest2d([th, tw], None, None))
    }
}
