//! The encoder and decoder of an AutoencoderKL and the blocks they are made of (residual
//! blocks, mid self-attention, strided-conv downsampling, nearest-neighbour upsampling),
//! loaded from the single-file (LDM) names.

use super::config::VaeConfig;
use crate::error::Result;
use crate::layers::{attention, AttentionMode, Conv2d, GroupNorm, Linear};
use crate::weights::Weights;
use tch::{Device, Kind, Tensor};

/// Every GroupNorm in the VAE uses this epsilon (LDM and diffusers agree).
const NORM_EPS: f64 = 1e-6;

/// `x + conv2(silu(norm2(conv1(silu(norm1(x))))))`, with a 1x1 `nin_shortcut` on `x` when
/// the block changes the channel count.
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn load(w: &Weights, name: &str, in_ch: i64, out_ch: i64, groups: i64) -> Result<ResnetBlock> {
        let shortcut = if in_ch != out_ch {
            Some(Conv2d::load(
                w,
                &format!("{name}.nin_shortcut"),
                in_ch,
                out_ch,
                1,
                1,
                0,
            )?)
        } else {
            None
        };
        Ok(ResnetBlock {
            norm1: GroupNorm::load(w, &format!("{name}.norm1"), in_ch, groups, NORM_EPS)?,
            conv1: Conv2d::load(w, &format!("{name}.conv1"), in_ch, out_ch, 3, 1, 1)?,
            norm2: GroupNorm::load(w, &format!("{name}.norm2"), out_ch, groups, NORM_EPS)?,
            conv2: Conv2d::load(w, &format!("{name}.conv2"), out_ch, out_ch, 3, 1, 1)?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(x).silu());
        let h = self.conv2.forward(&self.norm2.forward(&h).silu());
        match &self.shortcut {
            Some(conv) => conv.forward(x) + h,
            None => x + h,
        }
    }
}

/// Loads one of the attention projections, stored as a 1x1 conv `[C, C, 1, 1]` in LDM
/// files but as a linear `[C, C]` in files converted from diffusers: both are the same
/// matrix, so both become a [`Linear`] over the pixels as tokens.
fn load_projection(w: &Weights, name: &str, channels: i64) -> Result<Linear> {
    let weight_name = format!("{name}.weight");
    let stored_as_linear = w.shape(&weight_name).is_some_and(|s| s.len() == 2);
    let weight = if stored_as_linear {
        w.get_shaped(&weight_name, &[channels, channels])?
    } else {
        w.get_shaped(&weight_name, &[channels, channels, 1, 1])?
            .reshape([channels, channels])
    };
    let bias = w.get_shaped(&format!("{name}.bias"), &[channels])?;
    Ok(Linear {
        weight,
        bias: Some(bias),
    })
}

/// Single-head self-attention over all pixels, added back onto its input.
struct MidAttention {
    mode: AttentionMode,
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    proj_out: Linear,
}

impl MidAttention {
    fn load(
        w: &Weights,
        name: &str,
        channels: i64,
        groups: i64,
        mode: AttentionMode,
    ) -> Result<MidAttention> {
        Ok(MidAttention {
            mode,
            norm: GroupNorm::load(w, &format!("{name}.norm"), channels, groups, NORM_EPS)?,
            q: load_projection(w, &format!("{name}.q"), channels)?,
            k: load_projection(w, &format!("{name}.k"), channels)?,
            v: load_projection(w, &format!("{name}.v"), channels)?,
            proj_out: load_projection(w, &format!("{name}.proj_out"), channels)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        // [B, C, H, W] -> [B, H*W, C]: every pixel is a token.
        let tokens = self.norm.forward(x).flatten(2, 3).transpose(1, 2);
        let attended = attention(
            &self.q.forward(&tokens),
            &self.k.forward(&tokens),
            &self.v.forward(&tokens),
            1,
            None,
            self.mode,
        );
        let out = self
            .proj_out
            .forward(&attended)
            .transpose(1, 2)
            .reshape(size);
        x + out
    }
}

/// `block_1`, optional `attn_1`, `block_2` at the lowest resolution.
struct MidBlock {
    block_1: ResnetBlock,
    attn_1: Option<MidAttention>,
    block_2: ResnetBlock,
}

impl MidBlock {
    fn load(
        w: &Weights,
        name: &str,
        channels: i64,
        cfg: &VaeConfig,
        mode: AttentionMode,
    ) -> Result<MidBlock> {
        let groups = cfg.norm_groups;
        let attn_1 = if cfg.mid_attention {
            Some(MidAttention::load(
                w,
                &format!("{name}.attn_1"),
                channels,
                groups,
                mode,
            )?)
        } else {
            None
        };
        Ok(MidBlock {
            block_1: ResnetBlock::load(w, &format!("{name}.block_1"), channels, channels, groups)?,
            attn_1,
            block_2: ResnetBlock::load(w, &format!("{name}.block_2"), channels, channels, groups)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.block_1.forward(x);
        let h = match &self.attn_1 {
            Some(attn) => attn.forward(&h),
            None => h,
        };
        self.block_2.forward(&h)
    }
}

/// One encoder resolution level: residual blocks, then (except the last) a stride-2 conv.
struct EncoderLevel {
    blocks: Vec<ResnetBlock>,
    downsample: Option<Conv2d>,
}

/// Image `[B, 3, H, W]` to the moments `[B, 2*latent, H/f, W/f]` (before `quant_conv`).
pub(super) struct Encoder {
    conv_in: Conv2d,
    levels: Vec<EncoderLevel>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    pub(super) fn load(w: &Weights, cfg: &VaeConfig, mode: AttentionMode) -> Result<Encoder> {
        let channels = &cfg.block_out_channels;
        let deepest = channels[channels.len() - 1];
        let mut levels = Vec::with_capacity(channels.len());
        let mut in_ch = channels[0];
        for (level, &out_ch) in channels.iter().enumerate() {
            let mut blocks = Vec::with_capacity(cfg.layers_per_block);
            for block in 0..cfg.layers_per_block {
                let name = format!("down.{level}.block.{block}");
                let block_in = if block == 0 { in_ch } else { out_ch };
                blocks.push(ResnetBlock::load(
                    w,
                    &name,
                    block_in,
                    out_ch,
                    cfg.norm_groups,
                )?);
            }
            let downsample = if level + 1 < channels.len() {
                // Padding is applied by hand (right/bottom only) in forward, hence 0 here.
                Some(Conv2d::load(
                    w,
                    &format!("down.{level}.downsample.conv"),
                    out_ch,
                    out_ch,
                    3,
                    2,
                    0,
                )?)
            } else {
                None
            };
            levels.push(EncoderLevel { blocks, downsample });
            in_ch = out_ch;
        }
        Ok(Encoder {
            conv_in: Conv2d::load(w, "conv_in", cfg.in_channels, channels[0], 3, 1, 1)?,
            levels,
            mid: MidBlock::load(w, "mid", deepest, cfg, mode)?,
            norm_out: GroupNorm::load(w, "norm_out", deepest, cfg.norm_groups, NORM_EPS)?,
            conv_out: Conv2d::load(w, "conv_out", deepest, 2 * cfg.latent_channels, 3, 1, 1)?,
        })
    }

    pub(super) fn forward(&self, images: &Tensor) -> Tensor {
        let mut h = self.conv_in.forward(images);
        for level in &self.levels {
            for block in &level.blocks {
                h = block.forward(&h);
            }
            if let Some(conv) = &level.downsample {
                // The LDM downsampler pads one pixel on the right and bottom only, so an
                // even-sized input halves exactly; symmetric padding would shift the grid.
                h = conv.forward(&h.constant_pad_nd([0, 1, 0, 1]));
            }
        }
        let h = self.mid.forward(&h);
        self.conv_out.forward(&self.norm_out.forward(&h).silu())
    }
}

/// One decoder resolution level: residual blocks, then (except level 0) a 2x
/// nearest-neighbour upsample followed by a conv.
struct DecoderLevel {
    blocks: Vec<ResnetBlock>,
    upsample: Option<Conv2d>,
}

/// Latent `[B, latent, h, w]` (after `post_quant_conv`) to the image `[B, 3, h*f, w*f]`.
pub(super) struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    /// Indexed as in the file: `up.0` is the highest resolution and runs last.
    levels: Vec<DecoderLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    pub(super) fn load(w: &Weights, cfg: &VaeConfig, mode: AttentionMode) -> Result<Decoder> {
        let channels = &cfg.block_out_channels;
        let deepest = channels[channels.len() - 1];
        let mut levels = Vec::with_capacity(channels.len());
        for (level, &out_ch) in channels.iter().enumerate() {
            // A level's input comes from the next-deeper level (or the mid block).
            let in_ch = channels.get(level + 1).copied().unwrap_or(deepest);
            let mut blocks = Vec::with_capacity(cfg.layers_per_block + 1);
            for block in 0..=cfg.layers_per_block {
                let name = format!("up.{level}.block.{block}");
                let block_in = if block == 0 { in_ch } else { out_ch };
                blocks.push(ResnetBlock::load(
                    w,
                    &name,
                    block_in,
                    out_ch,
                    cfg.norm_groups,
                )?);
            }
            let upsample = if level > 0 {
                Some(Conv2d::load(
                    w,
                    &format!("up.{level}.upsample.conv"),
                    out_ch,
                    out_ch,
                    3,
                    1,
                    1,
                )?)
            } else {
                None
            };
            levels.push(DecoderLevel { blocks, upsample });
        }
        Ok(Decoder {
            conv_in: Conv2d::load(w, "conv_in", cfg.latent_channels, deepest, 3, 1, 1)?,
            mid: MidBlock::load(w, "mid", deepest, cfg, mode)?,
            levels,
            norm_out: GroupNorm::load(w, "norm_out", channels[0], cfg.norm_groups, NORM_EPS)?,
            conv_out: Conv2d::load(w, "conv_out", channels[0], cfg.out_channels, 3, 1, 1)?,
        })
    }

    /// The kind and device the weights were loaded on.
    pub(super) fn weight_options(&self) -> (Kind, Device) {
        (self.conv_in.weight.kind(), self.conv_in.weight.device())
    }

    pub(super) fn forward(&self, latents: &Tensor) -> Tensor {
        let mut h = self.mid.forward(&self.conv_in.forward(latents));
        for level in self.levels.iter().rev() {
            for block in &level.blocks {
                h = block.forward(&h);
            }
            if let Some(conv) = &level.upsample {
                let size = h.size();
                let doubled = h.upsample_nearest2d([size[2] * 2, size[3] * 2], 2.0, 2.0);
                h = conv.forward(&doubled);
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h).silu())
    }
}
