//! Opening a model: a single-file checkpoint (`.safetensors` in the original layout) or a
//! diffusers folder, splitting it into its components and deciding the model family from
//! tensor names and shapes — never from the file name — as ComfyUI does.

use crate::error::{EngineError, Result};
use crate::weights::{refuse_pickle, WeightFile, Weights};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Key prefixes of the single-file layout.
pub const UNET_PREFIX: &str = "model.diffusion_model";
pub const VAE_PREFIX: &str = "first_stage_model";
const SD1_CLIP_PREFIX: &str = "cond_stage_model.transformer";
const SD2_CLIP_PREFIX: &str = "cond_stage_model.model";
const SDXL_CLIP_L_PREFIX: &str = "conditioner.embedders.0.transformer";
const SDXL_CLIP_G_PREFIX: &str = "conditioner.embedders.1.model";
const SDXL_REFINER_CLIP_G_PREFIX: &str = "conditioner.embedders.0.model";

/// The model families we run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// SD 1.x: CLIP-L, 768-wide context.
    Sd1,
    /// SD 2.x: OpenCLIP-H, 1024-wide context, often v-prediction.
    Sd2,
    /// SDXL base and its fine-tunes (Turbo, RealVis, Juggernaut, …): CLIP-L + OpenCLIP-G.
    Sdxl,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Sd1 => "sd1",
            Family::Sd2 => "sd2",
            Family::Sdxl => "sdxl",
        }
    }

    /// The factor between VAE latents and the UNet's latent space.
    pub fn latent_scale(self) -> f64 {
        match self {
            Family::Sd1 | Family::Sd2 => 0.18215,
            Family::Sdxl => 0.13025,
        }
    }
}

/// What the model's UNet was trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    Eps,
    V,
}

/// A model file opened and classified, its components still unloaded.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub path: PathBuf,
    pub family: Family,
    pub prediction: Prediction,
    pub unet: Weights,
    /// The checkpoint's own VAE, if it has one.
    pub vae: Option<Weights>,
    /// The checkpoint's own text encoders (CLIP-L first), if it has them.
    pub text_encoders: Vec<Weights>,
    /// For a diffusers folder, each text encoder's `config.json` (path), which settles
    /// what shapes cannot: activation, heads, the end-token rule.
    pub text_encoder_configs: Vec<Option<PathBuf>>,
    pub in_channels: i64,
}

fn unknown(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::UnknownArchitecture {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The context width of a UNet (the input width of its cross-attention keys).
fn context_width(unet: &Weights) -> Option<i64> {
    unet.names_with_prefix("")
        .iter()
        .find(|n| n.ends_with("attn2.to_k.weight"))
        .and_then(|n| unet.shape(n))
        .and_then(|s| s.get(1).copied())
}

/// Opens `path` (a `.safetensors` file or a diffusers folder) and classifies it.
pub fn open_model(path: &Path) -> Result<ModelSource> {
    refuse_pickle(path)?;
    if path.is_dir() {
        return crate::diffusers_folder::open_diffusers_folder(path);
    }
    let file = WeightFile::open(path)?;
    classify(path, Weights::from_file(file))
}

/// Decides the family of a checkpoint presented under single-file names.
pub fn classify(path: &Path, all: Weights) -> Result<ModelSource> {
    let unet = all.at(UNET_PREFIX);
    let first_conv = unet
        .shape("input_blocks.0.0.weight")
        .ok_or_else(|| unknown(path, format!("no UNet found (no tensor {UNET_PREFIX}.input_blocks.0.0.weight); is this a VAE, a LoRA or a text encoder rather than a checkpoint?")))?;
    let in_channels = first_conv.get(1).copied().unwrap_or(0);
    let context = context_width(&unet)
        .ok_or_else(|| unknown(path, "the UNet has no cross-attention (attn2.to_k) layers"))?;
    let adm = unet
        .shape("label_emb.0.0.weight")
        .and_then(|s| s.get(1).copied());
    let has = |prefix: &str| !all.names_with_prefix(&format!("{prefix}.")).is_empty();
    // The text encoders' key prefixes name the family for any model size (tests use tiny
    // models laid out like the real ones); the real context widths decide for a bare UNet.
    let family = if adm.is_some() && (has("conditioner.embedders") || context == 2048) {
        Family::Sdxl
    } else if adm.is_none() && (has(SD2_CLIP_PREFIX) || (context == 1024 && !has(SD1_CLIP_PREFIX)))
    {
        Family::Sd2
    } else if adm.is_none() && (has(SD1_CLIP_PREFIX) || context == 768) {
        Family::Sd1
    } else {
        return Err(unknown(
            path,
            format!("cross-attention width {context} with label embedding {adm:?} matches no known family (768 = SD 1.x, 1024 = SD 2.x, 2048 + label embedding = SDXL)"),
        ));
    };
    // Recognised, but not runnable yet: say so instead of failing later on a shape.
    if in_channels != 4 {
        return Err(unknown(
            path,
            format!("a {} inpainting or other {in_channels}-channel UNet; imagelab runs 4-channel text-to-image models only for now", family.as_str()),
        ));
    }
    if family == Family::Sdxl && !has(SDXL_CLIP_L_PREFIX) && has(SDXL_REFINER_CLIP_G_PREFIX) {
        return Err(unknown(
            path,
            "an SDXL refiner; imagelab does not run refiner checkpoints yet",
        ));
    }
    let section = |prefix: &str| {
        let view = all.at(prefix);
        (!view.names_with_prefix("").is_empty()).then_some(view)
    };
    let vae = section(VAE_PREFIX);
    let text_encoders: Vec<Weights> = match family {
        Family::Sd1 => section(SD1_CLIP_PREFIX).into_iter().collect(),
        Family::Sd2 => section(SD2_CLIP_PREFIX).into_iter().collect(),
        Family::Sdxl => {
            let l = section(SDXL_CLIP_L_PREFIX);
            let g = section(SDXL_CLIP_G_PREFIX);
            l.into_iter().chain(g).collect()
        }
    };
    let prediction = detect_prediction(&all, family)?;
    Ok(ModelSource {
        path: path.to_path_buf(),
        family,
        prediction,
        unet,
        vae,
        text_encoders,
        text_encoder_configs: Vec::new(),
        in_channels,
    })
}

/// v-prediction is marked by a `v_pred` key in some files; for SD 2.x ComfyUI's rule is
/// that v-models have a wide spread in one late norm bias. We follow both.
fn detect_prediction(all: &Weights, family: Family) -> Result<Prediction> {
    if all.contains("v_pred") {
        return Ok(Prediction::V);
    }
    if family == Family::Sd2 {
        let probe = format!("{UNET_PREFIX}.output_blocks.11.1.transformer_blocks.0.norm1.bias");
        if let Some(bias) = all.get_opt(&probe)? {
            let spread = bias.to_kind(tch::Kind::Double).std(true).double_value(&[]);
            if spread > 0.09 {
                return Ok(Prediction::V);
            }
        }
    }
    Ok(Prediction::Eps)
}

/// Opens a standalone file (VAE or text encoder) from `models/vae` or `models/clip`.
pub fn open_component(path: &Path) -> Result<Arc<WeightFile>> {
    refuse_pickle(path)?;
    WeightFile::open(path)
}
