//! Diffusers-layout model folders (`model_index.json`, `unet/`, `vae/`, `text_encoder/`,
//! `text_encoder_2/`), presented under the single-file names so they take exactly the
//! same loading path as a `.safetensors` checkpoint.

use crate::checkpoint::{classify, Family, ModelSource, Prediction, UNET_PREFIX, VAE_PREFIX};
use crate::error::{EngineError, Result};
use crate::weights::{WeightFile, Weights};
use imagelab_core::family::DiffusersLayout;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The weights file of one diffusers component, preferring full precision.
fn component_file(folder: &Path, component: &str) -> Option<PathBuf> {
    let dir = folder.join(component);
    [
        "diffusion_pytorch_model.safetensors",
        "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
        "model.fp16.safetensors",
    ]
    .iter()
    .map(|name| dir.join(name))
    .find(|p| p.exists())
}

/// The UNet weights file of a diffusers folder (what the model hash is computed over).
pub fn unet_file(folder: &Path) -> Result<PathBuf> {
    component_file(folder, "unet").ok_or_else(|| EngineError::UnknownArchitecture {
        path: folder.to_path_buf(),
        reason: "a diffusers folder needs unet/diffusion_pytorch_model.safetensors".into(),
    })
}

fn add_mapped(
    index: &mut HashMap<String, (Arc<WeightFile>, String)>,
    file: &Arc<WeightFile>,
    prefix: &str,
    map: impl Fn(&str) -> Option<String>,
) {
    for stored in file.shapes().into_keys() {
        if let Some(logical) = map(&stored) {
            index.insert(format!("{prefix}.{logical}"), (file.clone(), stored));
        }
    }
}

/// Opens a diffusers folder as a [`ModelSource`].
pub fn open_diffusers_folder(folder: &Path) -> Result<ModelSource> {
    let layout = DiffusersLayout::read(folder);
    if layout.is_pixart(folder) {
        return Err(crate::checkpoint::pixart_is_not_a_checkpoint(folder));
    }
    let mut index = HashMap::new();
    let unet = WeightFile::open(&unet_file(folder)?)?;
    index.extend(crate::unet::diffusers_unet_index(
        &unet,
        &format!("{UNET_PREFIX}."),
    )?);
    if let Some(path) = component_file(folder, "vae") {
        let vae = WeightFile::open(&path)?;
        let up_blocks = count_indices(&vae, "decoder.up_blocks.");
        add_mapped(&mut index, &vae, VAE_PREFIX, |k| {
            crate::vae::diffusers_to_ldm_key(k, up_blocks)
        });
    }
    // Text encoders stay in the Hugging Face layout; they go under the prefixes the
    // single-file layout uses for the family the folder's layout names (the shared rule).
    let encoder_prefixes: &[(&str, &str)] = match layout.family() {
        Family::Sdxl => &[
            ("text_encoder", "conditioner.embedders.0.transformer"),
            ("text_encoder_2", "conditioner.embedders.1.model"),
        ],
        Family::Sd2 => &[("text_encoder", "cond_stage_model.model")],
        Family::Sd1 => &[("text_encoder", "cond_stage_model.transformer")],
        Family::PixArtSigma => &[],
    };
    for (component, prefix) in encoder_prefixes {
        if let Some(path) = component_file(folder, component) {
            add_mapped(&mut index, &WeightFile::open(&path)?, prefix, |k| {
                Some(k.to_string())
            });
        }
    }
    let mut source = classify(
        folder,
        Weights::from_mapping(folder.display().to_string(), index),
    )?;
    source.text_encoder_configs = encoder_prefixes
        .iter()
        .map(|(component, _)| {
            Some(folder.join(component).join("config.json")).filter(|p| p.exists())
        })
        .collect();
    if layout.v_prediction {
        source.prediction = Prediction::V;
    }
    Ok(source)
}

/// How many distinct `N` follow `prefix` in the file's names (`decoder.up_blocks.N.…`).
fn count_indices(file: &WeightFile, prefix: &str) -> usize {
    let indices: std::collections::BTreeSet<usize> = file
        .shapes()
        .into_keys()
        .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse().ok())
        .collect();
    indices.len()
}
