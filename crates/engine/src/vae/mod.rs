//! The VAE (AutoencoderKL) of SD 1.x/2.x/SDXL: images to latents and back, loaded from the
//! single-file (LDM) tensor names; standalone and diffusers-layout VAE files are presented
//! under the same names by [`vae_weights_from_file`].
//!
//! Latent scale factors (0.18215 SD 1.x, 0.13025 SDXL) belong to the pipeline, not here:
//! [`AutoencoderKl::encode`] returns and [`AutoencoderKl::decode`] takes unscaled latents.
//! The SDXL VAE overflows in fp16; load it in f32 or bf16 (`Weights::to`).

mod blocks;
mod config;
mod diffusers_keys;
mod image;
mod tiled;

pub use config::VaeConfig;
pub use diffusers_keys::{
    detect_layout, diffusers_to_ldm_key, vae_weights_from_file, VaeLayout, CHECKPOINT_VAE_PREFIX,
};
pub use image::{rgb8_to_tensor, tensor_to_rgb8};
pub use tiled::{axis_tiles, tiled_apply, AxisTile};

use crate::error::{EngineError, Result};
use crate::layers::{AttentionMode, Conv2d};
use crate::weights::Weights;
use blocks::{Decoder, Encoder};
use tch::Tensor;

/// A loaded AutoencoderKL.
pub struct AutoencoderKl {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl std::fmt::Debug for AutoencoderKl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoencoderKl")
            .field("config", &self.config)
            .finish()
    }
}

impl AutoencoderKl {
    /// Loads every tensor (shape-checked) from `w`, a view at the LDM names, onto `w`'s
    /// device and kind.
    pub fn load(w: &Weights, cfg: &VaeConfig) -> Result<AutoencoderKl> {
        AutoencoderKl::load_with(w, cfg, AttentionMode::Sdpa)
    }

    /// [`AutoencoderKl::load`] with a chosen attention for the mid-blocks (at 1024² the
    /// decoder's attends over 16,384 tokens: 1 GiB of fp32 scores without SDPA's kernels).
    pub fn load_with(
        w: &Weights,
        cfg: &VaeConfig,
        attention: AttentionMode,
    ) -> Result<AutoencoderKl> {
        let (quant_conv, post_quant_conv) = if cfg.quant_convs {
            let moments = 2 * cfg.latent_channels;
            (
                Some(Conv2d::load(w, "quant_conv", moments, moments, 1, 1, 0)?),
                Some(Conv2d::load(
                    w,
                    "post_quant_conv",
                    cfg.latent_channels,
                    cfg.latent_channels,
                    1,
                    1,
                    0,
                )?),
            )
        } else {
            (None, None)
        };
        Ok(AutoencoderKl {
            config: cfg.clone(),
            encoder: Encoder::load(&w.at("encoder"), cfg, attention)?,
            decoder: Decoder::load(&w.at("decoder"), cfg, attention)?,
            quant_conv,
            post_quant_conv,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Images `[B, 3, H, W]` in `[-1, 1]` (H and W multiples of
    /// [`VaeConfig::downscale_factor`]; ComfyUI centre-crops to that first) to the latent
    /// `[B, latent, H/f, W/f]`, unscaled.
    ///
    /// Returns the mean (= mode) of the latent distribution, never a sample: ComfyUI's
    /// `VAE.encode` does the same since ComfyUI PR #8705 (June 2025, "Don't add tiny bit
    /// of random noise when VAE encoding": its `DiagonalGaussianRegularizer` takes the
    /// mode; before, it sampled with the VAE's very small variance), and so does diffusers'
    /// `latent_dist.mean`. That keeps img2img reproducible from the seed alone.
    pub fn encode(&self, images: &Tensor) -> Result<Tensor> {
        let factor = self.config.downscale_factor();
        self.check_input("images", images, self.config.in_channels, factor)?;
        let images = self.to_weight_options(images)?;
        let moments = self.encoder.forward(&images);
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(&moments),
            None => moments,
        };
        // Channels are [mean, log-variance]; the mean is the first half.
        Ok(moments.f_narrow(1, 0, self.config.latent_channels)?)
    }

    /// Unscaled latents `[B, latent, h, w]` to images `[B, 3, h*f, w*f]`, nominally in
    /// `[-1, 1]` but not clamped (see [`tensor_to_rgb8`]).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.check_input("latents", latents, self.config.latent_channels, 1)?;
        let latents = self.to_weight_options(latents)?;
        let latents = match &self.post_quant_conv {
            Some(conv) => conv.forward(&latents),
            None => latents,
        };
        Ok(self.decoder.forward(&latents))
    }

    /// `x` on the device and in the kind the weights were loaded with.
    fn to_weight_options(&self, x: &Tensor) -> Result<Tensor> {
        let (kind, device) = self.decoder.weight_options();
        Ok(x.f_to_device(device)?.f_to_kind(kind)?)
    }

    /// Refuses inputs the convolutions would fail on, so a bad image is an error, not a panic.
    fn check_input(
        &self,
        field: &'static str,
        x: &Tensor,
        channels: i64,
        multiple: i64,
    ) -> Result<()> {
        let size = x.size();
        let fits = matches!(size[..], [b, c, h, w] if b > 0 && c == channels && h > 0 && w > 0
            && h % multiple == 0 && w % multiple == 0);
        if fits && x.is_floating_point() {
            return Ok(());
        }
        Err(EngineError::Invalid {
            field,
            value: format!("of shape {size:?} and kind {:?}", x.kind()),
            expected: format!(
                "a floating-point [batch, {channels}, height, width] tensor with height and width multiples of {multiple}"
            ),
        })
    }
}
