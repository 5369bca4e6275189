//! Opening a model: a single-file checkpoint (`.safetensors` in the original layout) or a
//! diffusers folder, splitting it into its components and deciding the model family from
//! tensor names and shapes — never from the file name — as ComfyUI does.

use crate::error::{EngineError, Result};
use crate::weights::{refuse_pickle, WeightFile, Weights};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// The family rules need no libtorch and live in imagelab-core, which the daemon shares to
// list models; the engine re-exports them under their old paths.
pub use imagelab_core::family::{Family, Prediction, UNET_PREFIX, VAE_PREFIX};
use imagelab_core::family::{
    SD1_CLIP_PREFIX, SD2_CLIP_PREFIX, SD2_V_PROBE, SDXL_CLIP_G_PREFIX, SDXL_CLIP_L_PREFIX,
    V_PRED_KEY,
};

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

/// A PixArt-Σ model has no UNet, VAE or CLIP to split out: [`crate::pixart::PixArtFiles`]
/// finds its parts ([`is_pixart`] tells the two kinds apart first).
pub(crate) fn pixart_is_not_a_checkpoint(path: &Path) -> EngineError {
    EngineError::Incompatible {
        what: "checkpoint",
        path: path.to_path_buf(),
        reason: "it is a PixArt-Σ model, whose parts PixArtFiles::locate finds".into(),
    }
}

/// Whether `path` (a single file or a diffusers folder) is a PixArt-Σ model, told from
/// `model_index.json` or the tensors' names and shapes. A file that classifies as nothing
/// is left for [`open_model`] to refuse with its reason.
pub fn is_pixart(path: &Path) -> Result<bool> {
    refuse_pickle(path)?;
    if path.is_dir() {
        return Ok(imagelab_core::family::DiffusersLayout::read(path).is_pixart(path));
    }
    let file = WeightFile::open(path)?;
    Ok(imagelab_core::family::classify(&file.shapes())
        .is_ok_and(|c| c.family == Family::PixArtSigma))
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
    let shapes: BTreeMap<String, Vec<i64>> = all
        .names_with_prefix("")
        .into_iter()
        .filter_map(|name| Some((all.shape(&name)?, name)))
        .map(|(shape, name)| (name, shape))
        .collect();
    let classified =
        imagelab_core::family::classify(&shapes).map_err(|e| unknown(path, e.to_string()))?;
    let family = classified.family;
    if family == Family::PixArtSigma {
        return Err(pixart_is_not_a_checkpoint(path));
    }
    let in_channels = classified.in_channels;
    let unet = all.at(UNET_PREFIX);
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
        Family::PixArtSigma => Vec::new(),
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

/// The shared rule ([`imagelab_core::family::prediction`]) on the `v_pred` key and, for
/// SD 2.x, the probe bias's values.
fn detect_prediction(all: &Weights, family: Family) -> Result<Prediction> {
    // Only SD 2.x reads the probe; other families never load it.
    let probe = match family {
        Family::Sd2 => all
            .get_opt(SD2_V_PROBE)?
            .map(|bias| Vec::<f64>::try_from(bias.to_kind(tch::Kind::Double).flatten(0, -1)))
            .transpose()?,
        _ => None,
    };
    Ok(imagelab_core::family::prediction(
        family,
        all.contains(V_PRED_KEY),
        probe.as_deref(),
    ))
}

/// Opens a standalone file (VAE or text encoder) from `models/vae` or `models/clip`.
pub fn open_component(path: &Path) -> Result<Arc<WeightFile>> {
    refuse_pickle(path)?;
    WeightFile::open(path)
}
