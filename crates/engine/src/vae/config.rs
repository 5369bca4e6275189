//! The shape of an AutoencoderKL, read from the tensor shapes of its weights (single-file /
//! LDM names), so no config file or model name is ever needed.

use crate::error::{EngineError, Result};
use crate::weights::Weights;
use std::path::PathBuf;

/// Latent widths we know decoders for: 4 (SD 1.x/2.x/SDXL) and 16 (SD3/Flux-style VAEs).
const KNOWN_LATENT_CHANNELS: [i64; 2] = [4, 16];

/// GroupNorm groups of every published AutoencoderKL (shapes cannot tell it).
const NORM_GROUPS: i64 = 32;

/// Everything needed to build an [`super::AutoencoderKl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaeConfig {
    /// Image channels going in (3).
    pub in_channels: i64,
    /// Image channels coming out (3).
    pub out_channels: i64,
    /// Channels of each resolution level, highest resolution first
    /// (`base_channels * multiplier`; SD: 128, 256, 512, 512).
    pub block_out_channels: Vec<i64>,
    /// Residual blocks per encoder level; the decoder has one more per level.
    pub layers_per_block: usize,
    /// Channels of the latent (4 for SD 1.x/2.x/SDXL, 16 for later models).
    pub latent_channels: i64,
    /// Group count of every GroupNorm. Shapes cannot tell it; every published VAE uses 32.
    pub norm_groups: i64,
    /// Whether the mid blocks have their self-attention layer (`mid.attn_1`).
    pub mid_attention: bool,
    /// Whether `quant_conv`/`post_quant_conv` exist (SD3/Flux VAEs drop them).
    pub quant_convs: bool,
}

impl VaeConfig {
    /// `block_out_channels[0]`, the `ch` of the LDM config.
    pub fn base_channels(&self) -> i64 {
        self.block_out_channels[0]
    }

    /// The LDM `ch_mult` (each level's channels over the base; SD: 1, 2, 4, 4).
    pub fn channel_multipliers(&self) -> Vec<i64> {
        self.block_out_channels
            .iter()
            .map(|c| c / self.base_channels())
            .collect()
    }

    /// How much smaller the latent is than the image on each side (8 for SD).
    pub fn downscale_factor(&self) -> i64 {
        1 << (self.block_out_channels.len() - 1)
    }

    /// Reads the config from the shapes under `w` (a view at the LDM names, as
    /// [`super::vae_weights_from_file`] returns). Only shapes are read, nothing is loaded.
    pub fn detect(w: &Weights) -> Result<VaeConfig> {
        let path = PathBuf::from(w.label());
        let unknown = |reason: String| EngineError::UnknownArchitecture {
            path: path.clone(),
            reason,
        };
        let incompatible = |reason: String| EngineError::Incompatible {
            what: "VAE",
            path: path.clone(),
            reason,
        };
        let conv_shape = |name: &str| -> Result<Vec<i64>> {
            let shape = w.shape(name).ok_or_else(|| {
                unknown(format!(
                    "no tensor {name}: this does not look like an AutoencoderKL"
                ))
            })?;
            if shape.len() != 4 {
                return Err(unknown(format!(
                    "tensor {name} has shape {shape:?}, expected a 4-d conv weight"
                )));
            }
            Ok(shape)
        };

        let conv_in = conv_shape("encoder.conv_in.weight")?;
        let (base, in_channels) = (conv_in[0], conv_in[1]);
        if in_channels != 3 {
            return Err(incompatible(format!(
                "encoder.conv_in.weight takes {in_channels} input channels, expected 3 (RGB)"
            )));
        }

        // Levels are numbered 0.. without gaps; each one's first block sets its width.
        let mut block_out_channels = Vec::new();
        while let Some(shape) = w.shape(&format!(
            "encoder.down.{}.block.0.conv1.weight",
            block_out_channels.len()
        )) {
            block_out_channels.push(shape[0]);
        }
        if block_out_channels.is_empty() {
            return Err(unknown(
                "no tensor encoder.down.0.block.0.conv1.weight: no encoder levels".into(),
            ));
        }
        if let Some(bad) = block_out_channels
            .iter()
            .find(|&&c| base == 0 || c % base != 0)
        {
            return Err(unknown(format!(
                "encoder level width {bad} is not a multiple of encoder.conv_in.weight's {base} channels"
            )));
        }

        if let Some(bad) = block_out_channels.iter().find(|&&c| c % NORM_GROUPS != 0) {
            return Err(incompatible(format!(
                "encoder level width {bad} cannot be split into {NORM_GROUPS} GroupNorm groups"
            )));
        }

        let mut layers_per_block = 0;
        while w.contains(&format!(
            "encoder.down.0.block.{layers_per_block}.conv1.weight"
        )) {
            layers_per_block += 1;
        }

        let dec_conv_in = conv_shape("decoder.conv_in.weight")?;
        let latent_channels = dec_conv_in[1];
        if !KNOWN_LATENT_CHANNELS.contains(&latent_channels) {
            return Err(incompatible(format!(
                "decoder.conv_in.weight takes {latent_channels} latent channels, expected one of {KNOWN_LATENT_CHANNELS:?}"
            )));
        }
        let enc_conv_out = conv_shape("encoder.conv_out.weight")?;
        if enc_conv_out[0] != 2 * latent_channels {
            return Err(incompatible(format!(
                "encoder.conv_out.weight has {} output channels, expected {} (mean and log-variance of {latent_channels} latent channels)",
                enc_conv_out[0],
                2 * latent_channels
            )));
        }
        let out_channels = conv_shape("decoder.conv_out.weight")?[0];
        if out_channels != 3 {
            return Err(incompatible(format!(
                "decoder.conv_out.weight has {out_channels} output channels, expected 3 (RGB)"
            )));
        }

        Ok(VaeConfig {
            in_channels,
            out_channels,
            block_out_channels,
            layers_per_block,
            latent_channels,
            norm_groups: NORM_GROUPS,
            mid_attention: w.contains("encoder.mid.attn_1.q.weight"),
            quant_convs: w.contains("quant_conv.weight"),
        })
    }
}
