//! The UNet's building blocks in the single-file (LDM) naming: residual blocks, spatial
//! transformers with self- and cross-attention and a GEGLU feed-forward, and the
//! down/up-samplers. Each loads from a [`Weights`] view rooted at the block.

use crate::error::Result;
use crate::layers::{attention, AttentionMode, Conv2d, GroupNorm, LayerNorm, Linear};
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
    pub fn load(
        w: &Weights,
        in_ch: i64,
        out_ch: i64,
        emb_dim: i64,
        opts: BlockOptions,
    ) -> Result<ResBlock> {
        Ok(ResBlock {
            norm1: GroupNorm::load(w, "in_layers.0", in_ch, GROUPS, RES_NORM_EPS)?,
            conv1: load_conv(w, "in_layers.2", in_ch, out_ch, 3, 1, 1, opts)?,
            emb_proj: Linear::load(w, "emb_layers.1", emb_dim, out_ch)?,
            norm2: GroupNorm::load(w, "out_layers.0", out_ch, GROUPS, RES_NORM_EPS)?,
            conv2: load_conv(w, "out_layers.3", out_ch, out_ch, 3, 1, 1, opts)?,
            skip: if in_ch == out_ch {
                None
            } else {
                Some(load_conv(
                    w,
                    "skip_connection",
                    in_ch,
                    out_ch,
                    1,
                    1,
                    0,
                    opts,
                )?)
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

/// How the UNet's blocks compute, beyond what the weights decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockOptions {
    pub attention: AttentionMode,
    /// Self-attention's q, k and v as one projection, cross-attention's k and v as one:
    /// one GEMM instead of three (two), the same arithmetic.
    pub fused_qkv: bool,
    /// Convolution weights and activations in NHWC order (cuDNN's fast layout for fp16
    /// tensor cores); the tensors keep their NCHW shape, only the strides change.
    pub channels_last: bool,
}

/// A tensor `[n, c, h, w]` with NHWC strides (PyTorch's `channels_last` memory format,
/// which libtorch infers from the strides).
pub fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Loads a square convolution, its weight in the layout `opts` asks for.
#[allow(clippy::too_many_arguments)]
pub fn load_conv(
    w: &Weights,
    name: &str,
    in_ch: i64,
    out_ch: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
    opts: BlockOptions,
) -> Result<Conv2d> {
    let mut conv = Conv2d::load(w, name, in_ch, out_ch, kernel, stride, padding)?;
    if opts.channels_last {
        conv.weight = to_channels_last(&conv.weight);
        w.register(&format!("{name}.weight"), &conv.weight, None);
    }
    Ok(conv)
}

/// The projections of one attention layer, as loaded or fused.
#[derive(Debug)]
enum Projections {
    Separate {
        q: Linear,
        k: Linear,
        v: Linear,
    },
    /// Self-attention: `[q | k | v]` from one GEMM on the image tokens.
    FusedSelf {
        qkv: Linear,
    },
    /// Cross-attention: `q` on the image tokens, `[k | v]` from one GEMM on the text.
    FusedCross {
        q: Linear,
        kv: Linear,
    },
}

/// Multi-head attention with bias-free q/k/v and a biased output projection (`to_out.0`).
#[derive(Debug)]
struct Attention {
    projections: Projections,
    to_out: Linear,
    heads: i64,
    mode: AttentionMode,
}

impl Attention {
    /// `context_dim` is `None` for self-attention.
    fn load(
        w: &Weights,
        name: &str,
        dim: i64,
        context_dim: Option<i64>,
        heads: i64,
        opts: BlockOptions,
    ) -> Result<Attention> {
        let kv_dim = context_dim.unwrap_or(dim);
        let q = Linear::load(w, &format!("{name}.to_q"), dim, dim)?;
        let k = Linear::load(w, &format!("{name}.to_k"), kv_dim, dim)?;
        let v = Linear::load(w, &format!("{name}.to_v"), kv_dim, dim)?;
        // A fused projection holds copies of the parts: register its rows under the
        // parts' names, so a LoRA patches what the forward pass reads.
        let register_rows = |fused: &Linear, parts: &[&str]| {
            for (i, part) in parts.iter().enumerate() {
                let rows = Some((i as i64 * dim, dim));
                w.register(&format!("{name}.{part}.weight"), &fused.weight, rows);
            }
        };
        let projections = match (opts.fused_qkv, context_dim) {
            (false, _) => Projections::Separate { q, k, v },
            (true, None) => {
                let qkv = Linear::fused(vec![q, k, v]);
                register_rows(&qkv, &["to_q", "to_k", "to_v"]);
                Projections::FusedSelf { qkv }
            }
            (true, Some(_)) => {
                let kv = Linear::fused(vec![k, v]);
                register_rows(&kv, &["to_k", "to_v"]);
                Projections::FusedCross { q, kv }
            }
        };
        Ok(Attention {
            projections,
            to_out: Linear::load(w, &format!("{name}.to_out.0"), dim, dim)?,
            heads,
            mode: opts.attention,
        })
    }

    /// `context` is ignored by self-attention layers (they attend over `x`).
    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (q, k, v) = match &self.projections {
            Projections::Separate { q, k, v } => {
                (q.forward(x), k.forward(context), v.forward(context))
            }
            Projections::FusedSelf { qkv } => {
                let dim = qkv.out_features() / 3;
                let parts = qkv.forward(x).split(dim, -1);
                let [q, k, v]: [Tensor; 3] = parts.try_into().expect("three equal parts");
                (q, k, v)
            }
            Projections::FusedCross { q, kv } => {
                let dim = kv.out_features() / 2;
                let parts = kv.forward(context).split(dim, -1);
                let [k, v]: [Tensor; 2] = parts.try_into().expect("two equal parts");
                (q.forward(x), k, v)
            }
        };
        self.to_out
            .forward(&attention(&q, &k, &v, self.heads, None, self.mode))
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
    fn load(
        w: &Weights,
        dim: i64,
        context_dim: i64,
        heads: i64,
        opts: BlockOptions,
    ) -> Result<TransformerBlock> {
        // The feed-forward is 4x wide; GEGLU's projection carries value and gate, so 8x.
        let ff_inner = 4 * dim;
        Ok(TransformerBlock {
            norm1: LayerNorm::load(w, "norm1", dim, LAYER_NORM_EPS)?,
            attn1: Attention::load(w, "attn1", dim, None, heads, opts)?,
            norm2: LayerNorm::load(w, "norm2", dim, LAYER_NORM_EPS)?,
            attn2: Attention::load(w, "attn2", dim, Some(context_dim), heads, opts)?,
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
    fn load(
        w: &Weights,
        name: &str,
        dim: i64,
        linear: bool,
        opts: BlockOptions,
    ) -> Result<Projection> {
        Ok(if linear {
            Projection::Linear(Linear::load(w, name, dim, dim)?)
        } else {
            Projection::Conv(load_conv(w, name, dim, dim, 1, 1, 0, opts)?)
        })
    }
}

/// GroupNorm, `proj_in`, `depth` transformer layers over the `h*w` tokens, `proj_out`,
/// plus the input.
#[derive(Debug)]
pub struct SpatialTransformer {
    channels_last: bool,
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
        opts: BlockOptions,
    ) -> Result<SpatialTransformer> {
        let blocks = (0..depth)
            .map(|k| {
                TransformerBlock::load(
                    &w.at(&format!("transformer_blocks.{k}")),
                    channels,
                    context_dim,
                    heads,
                    opts,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SpatialTransformer {
            channels_last: opts.channels_last,
            norm: GroupNorm::load(w, "norm", channels, GROUPS, TRANSFORMER_NORM_EPS)?,
            proj_in: Projection::load(w, "proj_in", channels, linear, opts)?,
            blocks,
            proj_out: Projection::load(w, "proj_out", channels, linear, opts)?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, c, h, w) = x
            .size4()
            .expect("spatial transformer input is [batch, channels, h, w]");
        let to_tokens = |t: &Tensor| t.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        // Tokens back to `[b, c, h, w]`: the permuted view already has channels-last
        // strides, which is the layout wanted in that mode; otherwise make it NCHW.
        let to_image = |t: &Tensor| {
            let image = t.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
            if self.channels_last {
                image
            } else {
                image.contiguous()
            }
        };
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
    pub fn load(w: &Weights, channels: i64, opts: BlockOptions) -> Result<Downsample> {
        Ok(Downsample {
            conv: load_conv(w, "op", channels, channels, 3, 2, 1, opts)?,
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
    pub fn load(w: &Weights, channels: i64, opts: BlockOptions) -> Result<Upsample> {
        Ok(Upsample {
            conv: load_conv(w, "conv", channels, channels, 3, 1, 1, opts)?,
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
