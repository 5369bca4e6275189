//! Which model family a checkpoint belongs to, decided from tensor names and shapes (never
//! from the file name), as ComfyUI does. It needs no libtorch: the engine runs it on the
//! tensors it is about to load, the daemon on a safetensors header to list models.

use crate::safetensors_header::{read_floats, read_header, HeaderError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Key prefixes of the single-file layout.
pub const UNET_PREFIX: &str = "model.diffusion_model";
pub const VAE_PREFIX: &str = "first_stage_model";
pub const SD1_CLIP_PREFIX: &str = "cond_stage_model.transformer";
pub const SD2_CLIP_PREFIX: &str = "cond_stage_model.model";
pub const SDXL_CLIP_L_PREFIX: &str = "conditioner.embedders.0.transformer";
pub const SDXL_CLIP_G_PREFIX: &str = "conditioner.embedders.1.model";
pub const SDXL_REFINER_CLIP_G_PREFIX: &str = "conditioner.embedders.0.model";
/// A key some v-prediction files carry to say so.
pub const V_PRED_KEY: &str = "v_pred";
/// The late norm bias whose spread tells SD 2.x v-models from eps-models (ComfyUI's rule).
pub const SD2_V_PROBE: &str =
    "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias";
/// Above this standard deviation of [`SD2_V_PROBE`], an SD 2.x model predicts v.
const SD2_V_SPREAD: f64 = 0.09;

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
    /// PixArt-Σ: a diffusion transformer conditioned on T5-XXL, with the SDXL VAE.
    #[serde(rename = "pixart_sigma")]
    PixArtSigma,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Sd1 => "sd1",
            Family::Sd2 => "sd2",
            Family::Sdxl => "sdxl",
            Family::PixArtSigma => "pixart-sigma",
        }
    }

    /// The family a label names: [`Family::as_str`]'s, and `sd2-v` (SD 2.x with
    /// v-prediction, as model lists show it).
    pub fn from_label(label: &str) -> Option<Family> {
        Some(match label {
            "sd1" => Family::Sd1,
            "sd2" | "sd2-v" => Family::Sd2,
            "sdxl" => Family::Sdxl,
            "pixart-sigma" => Family::PixArtSigma,
            _ => return None,
        })
    }

    /// The name people know the family by.
    pub fn display_name(self) -> &'static str {
        match self {
            Family::Sd1 => "SD 1.x",
            Family::Sd2 => "SD 2.x",
            Family::Sdxl => "SDXL",
            Family::PixArtSigma => "PixArt-Σ",
        }
    }

    /// The factor between VAE latents and the UNet's latent space.
    pub fn latent_scale(self) -> f64 {
        match self {
            Family::Sd1 | Family::Sd2 => 0.18215,
            Family::Sdxl | Family::PixArtSigma => 0.13025,
        }
    }

    /// The steps and CFG scale a family is made for, where they differ from the general
    /// defaults (PixArt-Σ's authors use 20 steps at CFG 4.5; at SD's CFG 7 it burns).
    pub fn recommended(self) -> Option<Recommended> {
        match self {
            Family::PixArtSigma => Some(Recommended {
                steps: 20,
                cfg: 4.5,
            }),
            Family::Sd1 | Family::Sd2 | Family::Sdxl => None,
        }
    }
}

/// A family's recommended settings, used when the user chose none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommended {
    pub steps: u32,
    pub cfg: f64,
}

/// What the model's UNet was trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    Eps,
    V,
}

/// Why a set of tensors is not a checkpoint we can run; the text says what it is instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("no UNet found (no tensor {UNET_PREFIX}.input_blocks.0.0.weight); is this a VAE, a LoRA or a text encoder rather than a checkpoint?")]
    NoUnet,
    #[error("the UNet has no cross-attention (attn2.to_k) layers")]
    NoCrossAttention,
    #[error("cross-attention width {context} with label embedding {adm:?} matches no known family (768 = SD 1.x, 1024 = SD 2.x, 2048 + label embedding = SDXL)")]
    UnknownFamily { context: i64, adm: Option<i64> },
    // Recognised, but not runnable yet: said up front instead of failing later on a shape.
    #[error("a {} inpainting or other {in_channels}-channel UNet; imagelab runs 4-channel text-to-image models only for now", family.as_str())]
    NotTextToImage { family: Family, in_channels: i64 },
    #[error("an SDXL refiner; imagelab does not run refiner checkpoints yet")]
    Refiner,
    #[error("a PixArt-α transformer ({key}: its size and aspect-ratio conditioning); imagelab runs PixArt-Σ only")]
    PixArtAlpha { key: String },
}

/// What a PixArt transformer's tensors end with, in diffusers' and the original layout
/// (a single file may put any prefix before them).
const PIXART_MARKERS: [&str; 2] = ["adaln_single.linear.weight", "t_block.1.weight"];
/// PixArt-α's size / aspect-ratio conditioning, in both layouts.
const PIXART_ALPHA_PARTS: [&str; 4] = [
    "resolution_embedder",
    "aspect_ratio_embedder",
    "csize_embedder",
    "ar_embedder",
];

/// A PixArt transformer's facts, when `shapes` holds one.
fn classify_pixart(
    shapes: &BTreeMap<String, Vec<i64>>,
) -> Option<Result<Classified, ClassifyError>> {
    let (marker, prefix) = shapes.keys().find_map(|name| {
        PIXART_MARKERS
            .iter()
            .find_map(|m| Some((*m, name.strip_suffix(m)?)))
            .filter(|(_, p)| p.is_empty() || p.ends_with('.'))
    })?;
    if let Some(key) = shapes
        .keys()
        .find(|n| n.starts_with(prefix) && PIXART_ALPHA_PARTS.iter().any(|part| n.contains(part)))
    {
        return Some(Err(ClassifyError::PixArtAlpha { key: key.clone() }));
    }
    let original = marker == PIXART_MARKERS[1];
    let (patch, caption) = if original {
        ("x_embedder.proj.weight", "y_embedder.y_proj.fc1.weight")
    } else {
        (
            "pos_embed.proj.weight",
            "caption_projection.linear_1.weight",
        )
    };
    let dim = |name: &str, i: usize| shapes.get(&format!("{prefix}{name}"))?.get(i).copied();
    Some(Ok(Classified {
        family: Family::PixArtSigma,
        in_channels: dim(patch, 1).unwrap_or(0),
        context_width: dim(caption, 1).unwrap_or(0),
    }))
}

/// A checkpoint's family and the UNet facts it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub family: Family,
    pub in_channels: i64,
    /// The width of the UNet's cross-attention context (768, 1024, 2048).
    pub context_width: i64,
}

/// Decides the family of a checkpoint from its tensors' names and shapes under the
/// single-file names (a diffusers folder is presented under those names by the engine);
/// a PixArt transformer is recognised in either of its layouts, under any prefix.
pub fn classify(shapes: &BTreeMap<String, Vec<i64>>) -> Result<Classified, ClassifyError> {
    if let Some(pixart) = classify_pixart(shapes) {
        return pixart;
    }
    let unet = |name: &str| shapes.get(&format!("{UNET_PREFIX}.{name}"));
    let first_conv = unet("input_blocks.0.0.weight").ok_or(ClassifyError::NoUnet)?;
    let in_channels = first_conv.get(1).copied().unwrap_or(0);
    let context = shapes
        .iter()
        .find(|(n, _)| n.starts_with(UNET_PREFIX) && n.ends_with("attn2.to_k.weight"))
        .and_then(|(_, s)| s.get(1).copied())
        .ok_or(ClassifyError::NoCrossAttention)?;
    let adm = unet("label_emb.0.0.weight").and_then(|s| s.get(1).copied());
    let has = |prefix: &str| {
        let prefix = format!("{prefix}.");
        shapes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(n, _)| n.starts_with(&prefix))
    };
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
        return Err(ClassifyError::UnknownFamily { context, adm });
    };
    if in_channels != 4 {
        return Err(ClassifyError::NotTextToImage {
            family,
            in_channels,
        });
    }
    if family == Family::Sdxl && !has(SDXL_CLIP_L_PREFIX) && has(SDXL_REFINER_CLIP_G_PREFIX) {
        return Err(ClassifyError::Refiner);
    }
    Ok(Classified {
        family,
        in_channels,
        context_width: context,
    })
}

/// v-prediction is marked by a [`V_PRED_KEY`] in some files; for SD 2.x ComfyUI's rule is
/// that v-models have a wide spread in one late norm bias ([`SD2_V_PROBE`], whose values
/// the caller reads when there is one). We follow both.
pub fn prediction(family: Family, has_v_pred_key: bool, probe: Option<&[f64]>) -> Prediction {
    if has_v_pred_key {
        return Prediction::V;
    }
    match probe {
        Some(values) if family == Family::Sd2 && values.len() > 1 => {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            // Unbiased, as torch's `std` computes it.
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
            if var.sqrt() > SD2_V_SPREAD {
                Prediction::V
            } else {
                Prediction::Eps
            }
        }
        _ => Prediction::Eps,
    }
}

/// What a diffusers folder's layout says (`text_encoder_2/`, the text encoder's activation,
/// the scheduler's prediction type): the engine places the encoders by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffusersLayout {
    pub two_text_encoders: bool,
    /// `hidden_act` of `text_encoder/config.json`: `gelu` for OpenCLIP (SD 2.x),
    /// `quick_gelu` for OpenAI CLIP-L (SD 1.x).
    pub text_encoder_act: Option<String>,
    /// `scheduler/scheduler_config.json` says `v_prediction`.
    pub v_prediction: bool,
    /// `model_index.json`'s `_class_name` (`StableDiffusionXLPipeline`, `PixArtSigmaPipeline` …).
    pub pipeline_class: Option<String>,
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

impl DiffusersLayout {
    pub fn read(folder: &Path) -> DiffusersLayout {
        let act = read_json(&folder.join("text_encoder/config.json"))
            .and_then(|v| v.get("hidden_act")?.as_str().map(str::to_string));
        let v_prediction = read_json(&folder.join("scheduler/scheduler_config.json"))
            .and_then(|v| Some(v.get("prediction_type")?.as_str()? == "v_prediction"))
            .unwrap_or(false);
        let pipeline_class = read_json(&folder.join("model_index.json"))
            .and_then(|v| v.get("_class_name")?.as_str().map(str::to_string));
        DiffusersLayout {
            two_text_encoders: folder.join("text_encoder_2").is_dir(),
            text_encoder_act: act,
            v_prediction,
            pipeline_class,
        }
    }

    /// A PixArt folder (`PixArt…Pipeline`, or a `transformer/` where SD has `unet/`).
    pub fn is_pixart(&self, folder: &Path) -> bool {
        match &self.pipeline_class {
            Some(class) => class.starts_with("PixArt"),
            None => folder.join("transformer").is_dir() && !folder.join("unet").is_dir(),
        }
    }

    /// SDXL folders have a second text encoder; SD 2.x's single encoder is OpenCLIP
    /// (gelu), SD 1.x's is OpenAI CLIP-L (quick_gelu). This holds for any model size.
    pub fn family(&self) -> Family {
        if self.two_text_encoders {
            Family::Sdxl
        } else if self.text_encoder_act.as_deref() == Some("gelu") {
            Family::Sd2
        } else {
            Family::Sd1
        }
    }
}

/// A model's family and prediction, as `imagelab models` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    pub family: Family,
    pub prediction: Prediction,
}

impl Detected {
    /// `sd1`, `sd2`, `sd2-v`, `sdxl`, …: the family, with `-v` for v-prediction.
    pub fn label(&self) -> String {
        match self.prediction {
            Prediction::Eps => self.family.as_str().to_string(),
            Prediction::V => format!("{}-v", self.family.as_str()),
        }
    }
}

/// Why a model file could not be classified; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("{path}: unknown model architecture: {source}")]
    Unknown {
        path: PathBuf,
        source: ClassifyError,
    },
}

/// Classifies a `.safetensors` checkpoint from its header (and, for SD 2.x, one small
/// probe tensor), or a diffusers folder from its layout, without loading any weights.
pub fn inspect(path: &Path) -> Result<Detected, InspectError> {
    if path.is_dir() {
        let layout = DiffusersLayout::read(path);
        if layout.is_pixart(path) {
            if layout.pipeline_class.as_deref() == Some("PixArtAlphaPipeline") {
                return Err(InspectError::Unknown {
                    path: path.to_path_buf(),
                    source: ClassifyError::PixArtAlpha {
                        key: "model_index.json: PixArtAlphaPipeline".into(),
                    },
                });
            }
            return Ok(Detected {
                family: Family::PixArtSigma,
                prediction: Prediction::Eps,
            });
        }
        let prediction = if layout.v_prediction {
            Prediction::V
        } else {
            Prediction::Eps
        };
        return Ok(Detected {
            family: layout.family(),
            prediction,
        });
    }
    let header = read_header(path)?;
    let shapes = header.shapes();
    let classified = classify(&shapes).map_err(|source| InspectError::Unknown {
        path: path.to_path_buf(),
        source,
    })?;
    let probe = if classified.family == Family::Sd2 && shapes.contains_key(SD2_V_PROBE) {
        Some(read_floats(path, &header, SD2_V_PROBE)?)
    } else {
        None
    };
    Ok(Detected {
        family: classified.family,
        prediction: prediction(
            classified.family,
            shapes.contains_key(V_PRED_KEY),
            probe.as_deref(),
        ),
    })
}

#[cfg(test)]
#[path = "family_tests.rs"]
mod tests;
