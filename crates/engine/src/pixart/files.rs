//! Where a PixArt-Σ model's parts come from, in the two layouts users have: a diffusers
//! folder (`transformer/`, `text_encoder/`, `tokenizer/`, `vae/`), or ComfyUI's files —
//! the transformer in `models/checkpoints/`, T5 in `models/clip/` (`--clip`), the SDXL
//! VAE in `models/vae/` (`--vae`). `--clip` and `--vae` override a folder's own parts.

use crate::error::{EngineError, Result};
use crate::t5::{self, T5Tokenizer, PIXART_TOKENS};
use crate::weights::{WeightFile, Weights};
use std::path::{Path, PathBuf};

/// A PixArt-Σ model's parts, found but not loaded (CPU float32 views).
#[derive(Debug)]
pub struct PixArtFiles {
    /// The transformer, at its own names (`t_block.…` or `adaln_single.…`).
    pub transformer: Weights,
    /// A diffusers folder's `transformer/config.json`.
    pub transformer_config: Option<serde_json::Value>,
    /// The T5 encoder, at `shared.` / `encoder.`.
    pub text_encoder: Weights,
    pub tokenizer: T5Tokenizer,
    /// The VAE at the LDM names.
    pub vae: Weights,
}

fn needs(path: &Path, reason: String) -> EngineError {
    EngineError::Incompatible {
        what: "PixArt-Σ model",
        path: path.to_path_buf(),
        reason,
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EngineError::Invalid {
        field: "config.json",
        value: path.display().to_string(),
        expected: format!("valid JSON ({e})"),
    })
}

/// The one safetensors file of a diffusers component folder.
fn component_file(dir: &Path) -> Option<PathBuf> {
    [
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
    ]
    .iter()
    .map(|name| dir.join(name))
    .find(|p| p.is_file())
}

/// The transformer's file in a diffusers folder.
pub fn transformer_file(folder: &Path) -> Option<PathBuf> {
    component_file(&folder.join("transformer"))
}

fn open_transformer(path: &Path) -> Result<Weights> {
    let file = Weights::from_file(WeightFile::open(path)?);
    super::transformer_view(&file).ok_or_else(|| EngineError::UnknownArchitecture {
        path: path.to_path_buf(),
        reason: "no PixArt transformer tensors (t_block.1.weight or adaln_single.linear.weight)"
            .into(),
    })
}

/// The T5 encoder in a single file (`--clip`).
fn open_t5_file(path: &Path) -> Result<Weights> {
    let file = Weights::from_file(WeightFile::open(path)?);
    t5::encoder_view(&file).ok_or_else(|| EngineError::Incompatible {
        what: "text encoder",
        path: path.to_path_buf(),
        reason: "it holds no T5 encoder, which a PixArt-Σ model needs".into(),
    })
}

/// The tokenizer file a T5 file is read with: `spiece.model` (else `tokenizer.json`) in
/// its folder, or in a `tokenizer/` folder there. The pipeline cache stamps it too, so a
/// replaced tokenizer is loaded again.
pub fn tokenizer_file_beside(t5_file: &Path) -> Option<PathBuf> {
    let dir = t5_file.parent().unwrap_or(Path::new("."));
    [dir.to_path_buf(), dir.join("tokenizer")]
        .into_iter()
        .flat_map(|candidate| {
            [
                candidate.join("spiece.model"),
                candidate.join("tokenizer.json"),
            ]
        })
        .find(|file| file.is_file())
}

fn tokenizer_beside(t5_file: &Path) -> Result<T5Tokenizer> {
    if let Some(dir) = tokenizer_file_beside(t5_file)
        .as_deref()
        .and_then(Path::parent)
    {
        return T5Tokenizer::find(dir, PIXART_TOKENS);
    }
    let dir = t5_file.parent().unwrap_or(Path::new("."));
    Err(needs(
        t5_file,
        format!(
            "no T5 tokenizer: put T5's spiece.model (or tokenizer.json) in {} or in {}",
            dir.display(),
            dir.join("tokenizer").display()
        ),
    ))
}

fn open_vae(path: &Path) -> Result<Weights> {
    crate::vae::vae_weights_from_file(WeightFile::open(path)?)
}

impl PixArtFiles {
    /// Finds every part of the model at `model` (a single transformer file or a diffusers
    /// folder), taking T5 from `clip` and the VAE from `vae` when given. A missing part is
    /// an error naming what is needed and where it can come from.
    pub fn locate(model: &Path, clip: Option<&Path>, vae: Option<&Path>) -> Result<PixArtFiles> {
        if model.is_dir() {
            return Self::from_folder(model, clip, vae);
        }
        let transformer = open_transformer(model)?;
        let clip = clip.ok_or_else(|| {
            needs(
                model,
                "it is a PixArt-Σ transformer alone: pick its T5-XXL encoder with --clip \
                 (for example models/clip/t5xxl_fp16.safetensors)"
                    .into(),
            )
        })?;
        let vae = vae.ok_or_else(|| {
            needs(
                model,
                "it has no VAE: pick the SDXL VAE with --vae (models/vae/)".into(),
            )
        })?;
        Ok(PixArtFiles {
            transformer,
            transformer_config: None,
            text_encoder: open_t5_file(clip)?,
            tokenizer: tokenizer_beside(clip)?,
            vae: open_vae(vae)?,
        })
    }

    fn from_folder(folder: &Path, clip: Option<&Path>, vae: Option<&Path>) -> Result<PixArtFiles> {
        let layout = imagelab_core::family::DiffusersLayout::read(folder);
        if layout.pipeline_class.as_deref() == Some("PixArtAlphaPipeline") {
            return Err(EngineError::UnknownArchitecture {
                path: folder.to_path_buf(),
                reason: "model_index.json names PixArtAlphaPipeline; only PixArt-Σ is supported"
                    .into(),
            });
        }
        let part = |name: &str| {
            let dir = folder.join(name);
            component_file(&dir).ok_or_else(|| {
                needs(
                    folder,
                    format!(
                        "{} has no diffusion_pytorch_model.safetensors",
                        dir.display()
                    ),
                )
            })
        };
        let transformer = open_transformer(&part("transformer")?)?;
        let config_path = folder.join("transformer/config.json");
        let transformer_config = config_path
            .is_file()
            .then(|| read_json(&config_path))
            .transpose()?;
        let (text_encoder, tokenizer) = match clip {
            Some(file) => (open_t5_file(file)?, tokenizer_beside(file)?),
            None => (
                t5::open_encoder_dir(&folder.join("text_encoder"))?,
                T5Tokenizer::find(&folder.join("tokenizer"), PIXART_TOKENS)?,
            ),
        };
        let vae = match vae {
            Some(file) => open_vae(file)?,
            None => open_vae(&part("vae")?)?,
        };
        Ok(PixArtFiles {
            transformer,
            transformer_config,
            text_encoder,
            tokenizer,
            vae,
        })
    }
}
