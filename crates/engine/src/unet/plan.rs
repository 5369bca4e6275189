//! The UNet's layout worked out from its config alone: which layer sits at which
//! single-file prefix, with its widths. Loading builds every layer from this plan at once;
//! sequential offload keeps the plan and builds one block at a time, on the GPU, per step.

use super::blocks::{load_conv, BlockOptions, Downsample, ResBlock, SpatialTransformer, Upsample};
use super::config::UNetConfig;
use crate::error::{EngineError, Result};
use crate::layers::Conv2d;
use crate::weights::Weights;

/// One layer of a block (the `input_blocks.N.M` entries of the single-file layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LayerSpec {
    ConvIn {
        prefix: String,
        in_ch: i64,
        out_ch: i64,
    },
    Res {
        prefix: String,
        in_ch: i64,
        out_ch: i64,
    },
    Attn {
        prefix: String,
        channels: i64,
        depth: usize,
        heads: i64,
    },
    Down {
        prefix: String,
        channels: i64,
    },
    Up {
        prefix: String,
        channels: i64,
    },
}

/// A built layer.
#[derive(Debug)]
pub(super) enum Layer {
    ConvIn(Conv2d),
    Res(ResBlock),
    Attn(SpatialTransformer),
    Down(Downsample),
    Up(Upsample),
}

/// Every block of the down path, the middle and the up path, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UNetPlan {
    pub input_blocks: Vec<Vec<LayerSpec>>,
    pub middle_block: Vec<LayerSpec>,
    pub output_blocks: Vec<Vec<LayerSpec>>,
}

pub(super) fn config_mismatch(what: &str) -> EngineError {
    EngineError::Invalid {
        field: "UNet config",
        value: what.to_string(),
        expected: "lists consistent with channel_mult and num_res_blocks".into(),
    }
}

/// The transformer at `prefix`, if `depth > 0`.
fn transformer(
    cfg: &UNetConfig,
    prefix: String,
    channels: i64,
    depth: usize,
) -> Result<Option<LayerSpec>> {
    if depth == 0 {
        return Ok(None);
    }
    let heads = cfg
        .heads
        .heads(channels)
        .ok_or_else(|| EngineError::Invalid {
            field: "UNet attention heads",
            value: format!("{:?}", cfg.heads),
            expected: format!("a split of the {channels} channels of {prefix}"),
        })?;
    Ok(Some(LayerSpec::Attn {
        prefix,
        channels,
        depth,
        heads,
    }))
}

impl UNetPlan {
    pub fn of(cfg: &UNetConfig) -> Result<UNetPlan> {
        let levels = cfg.channel_mult.len();
        if levels == 0 || cfg.num_res_blocks.len() != levels {
            return Err(config_mismatch("num_res_blocks"));
        }
        let total_res: usize = cfg.num_res_blocks.iter().sum();
        if cfg.input_depth.len() != total_res {
            return Err(config_mismatch("input_depth"));
        }
        if cfg.output_depth.len() != total_res + levels {
            return Err(config_mismatch("output_depth"));
        }
        let mc = cfg.model_channels;
        let mut input_blocks = vec![vec![LayerSpec::ConvIn {
            prefix: "input_blocks.0.0".into(),
            in_ch: cfg.in_channels,
            out_ch: mc,
        }]];
        // Widths of the tensors the down path hands to the up path, in push order.
        let mut skip_widths = vec![mc];
        let mut width = mc;
        let mut depths = cfg.input_depth.iter();
        for (level, (&mult, &blocks)) in
            cfg.channel_mult.iter().zip(&cfg.num_res_blocks).enumerate()
        {
            for _ in 0..blocks {
                let prefix = format!("input_blocks.{}", input_blocks.len());
                let out = mc * mult;
                let mut block = vec![LayerSpec::Res {
                    prefix: format!("{prefix}.0"),
                    in_ch: width,
                    out_ch: out,
                }];
                width = out;
                let depth = depths.next().copied().unwrap_or(0);
                block.extend(transformer(cfg, format!("{prefix}.1"), width, depth)?);
                input_blocks.push(block);
                skip_widths.push(width);
            }
            if level + 1 < levels {
                let prefix = format!("input_blocks.{}.0", input_blocks.len());
                input_blocks.push(vec![LayerSpec::Down {
                    prefix,
                    channels: width,
                }]);
                skip_widths.push(width);
            }
        }

        let mut middle_block = vec![LayerSpec::Res {
            prefix: "middle_block.0".into(),
            in_ch: width,
            out_ch: width,
        }];
        middle_block.extend(transformer(
            cfg,
            "middle_block.1".into(),
            width,
            cfg.middle_depth,
        )?);
        middle_block.push(LayerSpec::Res {
            prefix: "middle_block.2".into(),
            in_ch: width,
            out_ch: width,
        });

        let mut output_blocks = Vec::new();
        let mut depths = cfg.output_depth.iter();
        for (level, (&mult, &blocks)) in cfg
            .channel_mult
            .iter()
            .zip(&cfg.num_res_blocks)
            .enumerate()
            .rev()
        {
            for i in 0..=blocks {
                let prefix = format!("output_blocks.{}", output_blocks.len());
                let skip = skip_widths
                    .pop()
                    .ok_or_else(|| config_mismatch("more output blocks than skips"))?;
                let out = mc * mult;
                let mut block = vec![LayerSpec::Res {
                    prefix: format!("{prefix}.0"),
                    in_ch: width + skip,
                    out_ch: out,
                }];
                width = out;
                let depth = depths.next().copied().unwrap_or(0);
                block.extend(transformer(cfg, format!("{prefix}.1"), width, depth)?);
                if level > 0 && i == blocks {
                    // The upsampler follows the transformer when there is one: `.2`, else `.1`.
                    block.push(LayerSpec::Up {
                        prefix: format!("{prefix}.{}", block.len()),
                        channels: width,
                    });
                }
                output_blocks.push(block);
            }
        }
        Ok(UNetPlan {
            input_blocks,
            middle_block,
            output_blocks,
        })
    }

    /// Every block in the order the forward pass runs them.
    pub fn blocks(&self) -> impl Iterator<Item = &[LayerSpec]> {
        self.input_blocks
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(self.middle_block.as_slice()))
            .chain(self.output_blocks.iter().map(Vec::as_slice))
    }
}

impl LayerSpec {
    /// Loads this layer's weights from `w` (a view at `model.diffusion_model`).
    pub fn build(&self, w: &Weights, cfg: &UNetConfig, opts: BlockOptions) -> Result<Layer> {
        let ted = cfg.time_embed_dim;
        Ok(match self {
            LayerSpec::ConvIn {
                prefix,
                in_ch,
                out_ch,
            } => Layer::ConvIn(load_conv(w, prefix, *in_ch, *out_ch, 3, 1, 1, opts)?),
            LayerSpec::Res {
                prefix,
                in_ch,
                out_ch,
            } => Layer::Res(ResBlock::load(&w.at(prefix), *in_ch, *out_ch, ted, opts)?),
            LayerSpec::Attn {
                prefix,
                channels,
                depth,
                heads,
            } => Layer::Attn(SpatialTransformer::load(
                &w.at(prefix),
                *channels,
                *depth,
                cfg.context_dim,
                *heads,
                cfg.linear_projection,
                opts,
            )?),
            LayerSpec::Down { prefix, channels } => {
                Layer::Down(Downsample::load(&w.at(prefix), *channels, opts)?)
            }
            LayerSpec::Up { prefix, channels } => {
                Layer::Up(Upsample::load(&w.at(prefix), *channels, opts)?)
            }
        })
    }
}

/// Builds every layer of one block.
pub(super) fn build_block(
    specs: &[LayerSpec],
    w: &Weights,
    cfg: &UNetConfig,
    opts: BlockOptions,
) -> Result<Vec<Layer>> {
    specs.iter().map(|s| s.build(w, cfg, opts)).collect()
}
