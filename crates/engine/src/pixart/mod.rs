//! The PixArt-Σ diffusion transformer (a DiT with adaLN-single): its shape read off the
//! weights, and its tensor names in both layouts users have (diffusers' and the original
//! PixArt repository's, which ComfyUI loads as a single file).

mod files;
mod model;
mod names;

pub use files::{tokenizer_file_beside, transformer_file, PixArtFiles};
pub use model::PixArtTransformer;
pub use names::PixArtLayout;

use crate::error::{EngineError, Result};
use crate::weights::Weights;

/// Every published PixArt-Σ uses 72-wide heads; a single file does not say how many.
pub const DEFAULT_HEAD_DIM: i64 = 72;

/// `base_size / interpolation_scale` for every published PixArt-Σ (512: 32 / 1, 1024:
/// 64 / 2, 2K: 128 / 4). Only this ratio enters the position embedding, so a single file,
/// which records neither, needs nothing else.
pub const DEFAULT_POSITION_SCALE: f64 = 32.0;

/// A PixArt transformer's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PixArtConfig {
    pub layout: PixArtLayout,
    pub hidden: i64,
    pub heads: i64,
    pub layers: i64,
    pub patch: i64,
    pub in_channels: i64,
    /// Twice `in_channels` for a learned-sigma model: the first half is the noise
    /// prediction.
    pub out_channels: i64,
    pub caption_channels: i64,
    pub mlp_hidden: i64,
    /// The position grid spans `0..position_scale` along each side whatever the latent
    /// size (diffusers' `base_size / interpolation_scale`).
    pub position_scale: f64,
}

/// The shape of `name` in `w`, which must have `rank` dimensions.
fn dims(w: &Weights, name: &str, rank: usize) -> Result<Vec<i64>> {
    let shape = w.shape(name).ok_or_else(|| EngineError::MissingTensor {
        source_name: w.label().to_string(),
        name: name.to_string(),
    })?;
    if shape.len() != rank {
        return Err(EngineError::ShapeMismatch {
            source_name: w.label().to_string(),
            name: name.to_string(),
            expected: vec![-1; rank],
            actual: shape,
        });
    }
    Ok(shape)
}

/// The view of `w` whose names start at the transformer's own (`t_block.` or
/// `adaln_single.` …), whatever prefix a file puts before them; `None` when `w` holds no
/// PixArt transformer.
pub fn transformer_view(w: &Weights) -> Option<Weights> {
    let markers = PixArtLayout::ALL.map(|l| l.marker());
    if markers.iter().any(|m| w.contains(m)) {
        return Some(w.clone());
    }
    w.names_with_prefix("").into_iter().find_map(|name| {
        let prefix = markers
            .iter()
            .find_map(|m| name.strip_suffix(m))?
            .strip_suffix('.')?;
        Some(w.at(prefix))
    })
}

impl PixArtConfig {
    /// Reads the shape off a view found by [`transformer_view`], with the default heads
    /// and position scale (a diffusers folder's `config.json` may then override them).
    /// PixArt-α's size and aspect-ratio conditioning is refused by name.
    pub fn detect(w: &Weights) -> Result<PixArtConfig> {
        let layout = PixArtLayout::detect(w).ok_or_else(|| EngineError::UnknownArchitecture {
            path: w.label().into(),
            reason:
                "no PixArt transformer tensors (t_block.1.weight or adaln_single.linear.weight)"
                    .into(),
        })?;
        if let Some(key) = layout.additional_condition_key(w) {
            return Err(EngineError::UnknownArchitecture {
                path: w.label().into(),
                reason: format!(
                    "{key} is PixArt-α's resolution/aspect-ratio conditioning; only PixArt-Σ \
                     is supported"
                ),
            });
        }
        let [hidden, in_channels, patch, _] = dims(w, &layout.patch_proj(), 4)?[..] else {
            unreachable!()
        };
        let caption_channels = dims(w, &format!("{}.weight", layout.caption(1)), 2)?[1];
        let projected = dims(w, &format!("{}.weight", layout.final_proj()), 2)?[0];
        let mlp_hidden = dims(
            w,
            &format!("{}.weight", layout.block(0, names::Part::Fc1)),
            2,
        )?[0];
        let mut layers = 0;
        while w.contains(&layout.block(layers, names::Part::Table)) {
            layers += 1;
        }
        Ok(PixArtConfig {
            layout,
            hidden,
            heads: (hidden / DEFAULT_HEAD_DIM).max(1),
            layers,
            patch,
            in_channels,
            out_channels: projected / (patch * patch).max(1),
            caption_channels,
            mlp_hidden,
            position_scale: DEFAULT_POSITION_SCALE,
        })
    }

    /// Applies a diffusers `transformer/config.json`: the head count, and the position
    /// scale from `sample_size`, `patch_size` and `interpolation_scale` (diffusers'
    /// default for the last: `max(sample_size // 64, 1)`).
    pub fn with_diffusers_config(mut self, json: &serde_json::Value) -> Result<PixArtConfig> {
        let int = |key: &str| json.get(key).and_then(serde_json::Value::as_i64);
        if json.get("use_additional_conditions") == Some(&serde_json::Value::Bool(true)) {
            return Err(EngineError::Invalid {
                field: "transformer/config.json: use_additional_conditions",
                value: "true".into(),
                expected: "false (it is PixArt-α's size conditioning; only PixArt-Σ is \
                           supported)"
                    .into(),
            });
        }
        if let Some(heads) = int("num_attention_heads") {
            self.heads = heads;
        }
        if let Some(sample) = int("sample_size") {
            let base = (sample / self.patch.max(1)) as f64;
            let interpolation = json
                .get("interpolation_scale")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or((sample / 64).max(1) as f64);
            self.position_scale = base / interpolation;
        }
        if self.heads <= 0 || self.hidden % self.heads != 0 {
            return Err(EngineError::Invalid {
                field: "transformer/config.json: num_attention_heads",
                value: self.heads.to_string(),
                expected: format!("a divisor of the transformer's width {}", self.hidden),
            });
        }
        Ok(self)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden / self.heads
    }
}
