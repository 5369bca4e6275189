//! CLIP text encoders as Stable Diffusion uses them: OpenAI CLIP-L (SD 1.x, SDXL) and
//! OpenCLIP ViT-H / ViT-bigG (SD 2.x, SDXL), read from either key layout.
//!
//! Two layouts exist in the wild:
//! * Hugging Face `CLIPTextModel` names (`text_model.encoder.layers.N.self_attn.q_proj…`,
//!   `text_projection.weight`): SD 1.x single files under `cond_stage_model.transformer.`,
//!   SDXL CLIP-L under `conditioner.embedders.0.transformer.`, every diffusers
//!   `text_encoder*/` folder (at prefix ""), and ComfyUI's `models/clip` files. Very old
//!   single files, and CLIPTextModel folders written by transformers ≥ 5, lack the
//!   `text_model.` part ([`ClipLayout::HuggingFaceNoRoot`]).
//! * open_clip names (`transformer.resblocks.N.attn.in_proj_weight` with fused q,k,v,
//!   `positional_embedding`, `text_projection` stored `[hidden, proj]`): SD 2.x under
//!   `cond_stage_model.model.`, SDXL OpenCLIP-G under `conditioner.embedders.1.model.`
//!   (the refiner: `conditioner.embedders.0.model.`).
//!
//! Typical use: `let layout = detect_layout(&w)?; let cfg = ClipConfig::detect(&w, layout)?;
//! let enc = ClipTextEncoder::load(&w, &cfg)?; let s = ClipRole::SdxlOpenClipG.settings(&cfg);
//! enc.encode(&tokens, s.layer, s.final_norm_on_hidden)`.

mod config;
mod families;
mod model;

pub use config::{open_hf_text_encoder_dir, Activation, ClipConfig, PoolPosition};
pub use families::{ClipRole, EncodeSettings};
pub use model::{ClipOutput, ClipTextEncoder, LayerChoice};

use crate::weights::Weights;

/// Which naming scheme a text encoder's tensors use (relative to the view it is read from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipLayout {
    /// `text_model.embeddings…`, `text_model.encoder.layers.N…`, `text_projection.weight`.
    HuggingFace,
    /// The same names without `text_model.` (`embeddings…`, `encoder.layers.N…`).
    HuggingFaceNoRoot,
    /// open_clip: `token_embedding.weight`, `positional_embedding`, `transformer.resblocks.N…`.
    OpenClip,
}

impl ClipLayout {
    /// The part every Hugging Face name of the text tower starts with.
    pub(crate) fn hf_root(self) -> &'static str {
        match self {
            ClipLayout::HuggingFace => "text_model.",
            ClipLayout::HuggingFaceNoRoot | ClipLayout::OpenClip => "",
        }
    }
}

/// Recognises the layout from key names; `None` when `w` holds no CLIP text tower.
pub fn detect_layout(w: &Weights) -> Option<ClipLayout> {
    if w.contains("text_model.embeddings.token_embedding.weight") {
        Some(ClipLayout::HuggingFace)
    } else if w.contains("embeddings.token_embedding.weight") {
        Some(ClipLayout::HuggingFaceNoRoot)
    } else if w.contains("token_embedding.weight") && w.contains("positional_embedding") {
        Some(ClipLayout::OpenClip)
    } else {
        None
    }
}
