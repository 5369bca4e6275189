//! Which layer, whether the final layer norm, and which pooled output each Stable Diffusion
//! family takes from its text encoders, with the single-file key prefixes they live under.
//!
//! Verified against the original trainers and ComfyUI:
//! * SD 1.x, CLIP-L: the last layer after `final_layer_norm` (ldm `FrozenCLIPEmbedder`,
//!   `last_hidden_state`; ComfyUI `SDClipModel(layer="last")`). With a user "clip skip" the
//!   earlier layer still goes through the final norm (A1111, and ComfyUI's default
//!   `layer_norm_hidden_state=True`).
//! * SD 2.x, OpenCLIP-H: the penultimate layer *with* `ln_final` (ldm
//!   `FrozenOpenCLIPEmbedder(layer="penultimate")` runs all but the last resblock, then
//!   `ln_final`; ComfyUI `SD2ClipHModel`: layer_idx -2, `layer_norm_hidden_state` left at
//!   True). diffusers stores this encoder with 23 layers instead and uses its last layer
//!   with the norm: the same numbers, so a 23-layer H maps to `Last`.
//! * SDXL, CLIP-L: penultimate *without* the final norm (SGM `FrozenCLIPEmbedder(layer=
//!   "hidden", layer_idx=-2)`; ComfyUI `SDXLClipModel`: layer_idx -2,
//!   `layer_norm_hidden_state=False`). Its pooled output is unused.
//! * SDXL, OpenCLIP-G: penultimate *without* `ln_final`, and the pooled vector is the last
//!   layer after `ln_final` at the EOS position times `text_projection` (SGM
//!   `FrozenOpenCLIPEmbedder2(layer="penultimate", always_return_pooled=True, legacy=False)`;
//!   ComfyUI `SDXLClipG`: layer_idx -2, `layer_norm_hidden_state=False`,
//!   `return_projected_pooled=True`). The refiner uses only this encoder.
//!
//! SDXL concatenates `[CLIP-L hidden (768), OpenCLIP-G hidden (1280)]` on the channel axis
//! into the 2048-wide context; that, and the pooled-vector plumbing, is the pipeline's job.

use super::{ClipConfig, LayerChoice};

/// One text encoder's place in a checkpoint family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipRole {
    Sd1ClipL,
    Sd2OpenClipH,
    SdxlClipL,
    SdxlOpenClipG,
    SdxlRefinerOpenClipG,
}

/// How to call [`super::ClipTextEncoder::encode`] for a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeSettings {
    pub layer: LayerChoice,
    pub final_norm_on_hidden: bool,
    /// Whether the family's UNet consumes the projected pooled vector (SDXL's `y`).
    pub uses_projected_pool: bool,
}

impl ClipRole {
    /// Where this encoder lives in an original-layout single-file checkpoint (use with
    /// `Weights::at`); a diffusers folder keeps it at prefix "" of `text_encoder/`
    /// (`text_encoder_2/` for the SDXL OpenCLIP-G).
    pub fn single_file_prefix(self) -> &'static str {
        match self {
            ClipRole::Sd1ClipL => "cond_stage_model.transformer",
            ClipRole::Sd2OpenClipH => "cond_stage_model.model",
            ClipRole::SdxlClipL => "conditioner.embedders.0.transformer",
            ClipRole::SdxlOpenClipG => "conditioner.embedders.1.model",
            ClipRole::SdxlRefinerOpenClipG => "conditioner.embedders.0.model",
        }
    }

    /// The family's default encoding; `cfg` matters only for SD 2.x, whose diffusers copy
    /// has the last layer already removed (23 layers instead of 24).
    pub fn settings(self, cfg: &ClipConfig) -> EncodeSettings {
        match self {
            ClipRole::Sd1ClipL => EncodeSettings {
                layer: LayerChoice::Last,
                final_norm_on_hidden: true,
                uses_projected_pool: false,
            },
            ClipRole::Sd2OpenClipH => EncodeSettings {
                layer: if cfg.layers == 23 {
                    LayerChoice::Last
                } else {
                    LayerChoice::FromEnd(2)
                },
                final_norm_on_hidden: true,
                uses_projected_pool: false,
            },
            ClipRole::SdxlClipL => EncodeSettings {
                layer: LayerChoice::FromEnd(2),
                final_norm_on_hidden: false,
                uses_projected_pool: false,
            },
            ClipRole::SdxlOpenClipG | ClipRole::SdxlRefinerOpenClipG => EncodeSettings {
                layer: LayerChoice::FromEnd(2),
                final_norm_on_hidden: false,
                uses_projected_pool: true,
            },
        }
    }
}
