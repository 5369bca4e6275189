//! The shape of a CLIP text encoder, read from its tensors (and from a diffusers/transformers
//! `config.json` when there is one), plus opening a diffusers `text_encoder*/` folder.

use super::{detect_layout, ClipLayout};
use crate::error::{EngineError, Result};
use crate::weights::Weights;
use std::path::{Path, PathBuf};

/// The MLP non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x·σ(1.702x)`: OpenAI CLIP (SD 1.x and SDXL CLIP-L).
    QuickGelu,
    /// Exact (erf) GELU: OpenCLIP ViT-H / ViT-bigG.
    Gelu,
}

/// Which position the pooled output is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolPosition {
    /// The first position holding the largest token id. CLIP's EOS (49407) is the last id
    /// of its vocabulary, so this is the first EOS whether padding is EOS or 0. It is what
    /// SGM/ldm (`text.argmax(-1)`), ComfyUI and transformers (for configs with the legacy
    /// `eos_token_id: 2`, which SD 1.x and SDXL ship) do.
    HighestTokenId,
    /// The first position holding this token id: transformers' rule when the config names
    /// the real EOS id (newer ComfyUI does the same with 49407). Rows without it pool at 0.
    FirstToken(i64),
}

/// Everything needed to build the network; fields are public so a caller may override one.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub layout: ClipLayout,
    pub vocab: i64,
    pub hidden: i64,
    pub layers: i64,
    pub heads: i64,
    pub intermediate: i64,
    pub max_positions: i64,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    /// Width of `text_projection` output, when the file has one.
    pub projection_dim: Option<i64>,
    pub pool: PoolPosition,
}

/// Tensor names of one layout (relative to the encoder's view).
pub(crate) struct KeyNames {
    pub layout: ClipLayout,
}

impl KeyNames {
    pub fn token_embedding(&self) -> String {
        match self.layout {
            ClipLayout::OpenClip => "token_embedding.weight".into(),
            _ => format!("{}embeddings.token_embedding.weight", self.layout.hf_root()),
        }
    }

    pub fn position_embedding(&self) -> String {
        match self.layout {
            ClipLayout::OpenClip => "positional_embedding".into(),
            _ => format!(
                "{}embeddings.position_embedding.weight",
                self.layout.hf_root()
            ),
        }
    }

    /// Prefix of layer `i`, ending in a dot.
    pub fn layer(&self, i: i64) -> String {
        match self.layout {
            ClipLayout::OpenClip => format!("transformer.resblocks.{i}."),
            _ => format!("{}encoder.layers.{i}.", self.layout.hf_root()),
        }
    }

    /// The first MLP matrix of layer `i` (`[intermediate, hidden]` in both layouts).
    pub fn fc1_weight(&self, i: i64) -> String {
        match self.layout {
            ClipLayout::OpenClip => format!("{}mlp.c_fc.weight", self.layer(i)),
            _ => format!("{}mlp.fc1.weight", self.layer(i)),
        }
    }

    pub fn final_norm(&self) -> String {
        match self.layout {
            ClipLayout::OpenClip => "ln_final".into(),
            _ => format!("{}final_layer_norm", self.layout.hf_root()),
        }
    }

    /// `[proj, hidden]` for Hugging Face, `[hidden, proj]` for open_clip.
    pub fn projection(&self) -> &'static str {
        match self.layout {
            ClipLayout::OpenClip => "text_projection",
            _ => "text_projection.weight",
        }
    }
}

fn unknown(w: &Weights, reason: String) -> EngineError {
    EngineError::UnknownArchitecture {
        path: PathBuf::from(w.label()),
        reason,
    }
}

/// The MissingTensor error for `name`, spelled with the view's full prefix (as `get` does).
fn missing(w: &Weights, name: &str) -> EngineError {
    match w.get(name) {
        Err(e) => e,
        Ok(_) => unknown(
            w,
            format!("tensor {name} is present but was reported missing"),
        ),
    }
}

fn shape_of(w: &Weights, name: &str, rank: usize) -> Result<Vec<i64>> {
    let shape = w.shape(name).ok_or_else(|| missing(w, name))?;
    if shape.len() != rank {
        return Err(unknown(
            w,
            format!("tensor {name} has shape {shape:?}, expected {rank} dimensions"),
        ));
    }
    Ok(shape)
}

impl ClipConfig {
    /// Reads the architecture from tensor shapes and key names.
    ///
    /// * hidden width and vocabulary: the token embedding `[vocab, hidden]`;
    /// * layers: the contiguous layer indices present (a gap is reported as missing);
    /// * heads: `hidden / 64`. Every CLIP text tower SD uses has 64-wide heads (768/12,
    ///   1024/16, 1280/20); tiny test models follow the same rule (128 → 2 heads). A width
    ///   that is not a multiple of 64 is refused unless a `config.json` names the heads;
    /// * activation: open_clip layout → GELU. Hugging Face layout → GELU for widths 1024
    ///   and 1280 (OpenCLIP H and bigG converted: diffusers SD 2.x `text_encoder`, SDXL
    ///   `text_encoder_2`, ComfyUI's `clip_g`), quick-GELU otherwise (OpenAI CLIP-L/B).
    ///   [`ClipConfig::apply_hf_config`] overrides it from a `config.json`;
    /// * pooling: [`PoolPosition::HighestTokenId`]; layer-norm epsilon 1e-5.
    pub fn detect(w: &Weights, layout: ClipLayout) -> Result<ClipConfig> {
        let keys = KeyNames { layout };
        let token = shape_of(w, &keys.token_embedding(), 2)?;
        let (vocab, hidden) = (token[0], token[1]);
        let positions = shape_of(w, &keys.position_embedding(), 2)?;
        if positions[1] != hidden {
            return Err(EngineError::ShapeMismatch {
                source_name: w.label().to_string(),
                name: keys.position_embedding(),
                actual: positions,
                expected: vec![-1, hidden],
            });
        }
        let layers = count_layers(w, &keys)?;
        let intermediate = shape_of(w, &keys.fc1_weight(0), 2)?[0];
        let projection_dim = match w.shape(keys.projection()) {
            None => None,
            Some(s) if s.len() == 2 => Some(if layout == ClipLayout::OpenClip {
                s[1]
            } else {
                s[0]
            }),
            Some(s) => {
                return Err(unknown(
                    w,
                    format!("tensor {} has shape {s:?}", keys.projection()),
                ))
            }
        };
        let heads = if hidden % 64 == 0 {
            hidden / 64
        } else {
            return Err(unknown(w, format!(
                "text encoder width {hidden} is not a multiple of 64, so its head count is unknown; \
                 put its config.json beside it"
            )));
        };
        let activation = match layout {
            ClipLayout::OpenClip => Activation::Gelu,
            _ if hidden == 1024 || hidden == 1280 => Activation::Gelu,
            _ => Activation::QuickGelu,
        };
        Ok(ClipConfig {
            layout,
            vocab,
            hidden,
            layers,
            heads,
            intermediate,
            max_positions: positions[0],
            activation,
            layer_norm_eps: 1e-5,
            projection_dim,
            pool: PoolPosition::HighestTokenId,
        })
    }

    /// Takes heads, activation, epsilon and the EOS rule from a transformers `config.json`
    /// (a `CLIPTextConfig`, or a `CLIPConfig` whose `text_config` is used), after checking
    /// that the sizes it states agree with the tensors.
    pub fn apply_hf_config(&mut self, json: &str, path: &Path) -> Result<()> {
        let bad = |reason: String| EngineError::Incompatible {
            what: "text encoder config",
            path: path.into(),
            reason,
        };
        let root: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let cfg = root.get("text_config").unwrap_or(&root);
        let int = |key: &str| cfg.get(key).and_then(|v| v.as_i64());
        for (key, detected) in [
            ("hidden_size", self.hidden),
            ("num_hidden_layers", self.layers),
            ("intermediate_size", self.intermediate),
            ("vocab_size", self.vocab),
            ("max_position_embeddings", self.max_positions),
        ] {
            if let Some(stated) = int(key) {
                if stated != detected {
                    return Err(bad(format!(
                        "{key} is {stated} but the weights have {detected}"
                    )));
                }
            }
        }
        if let Some(heads) = int("num_attention_heads") {
            if heads <= 0 || self.hidden % heads != 0 {
                return Err(bad(format!(
                    "num_attention_heads {heads} does not divide hidden_size {}",
                    self.hidden
                )));
            }
            self.heads = heads;
        }
        if let Some(act) = cfg.get("hidden_act").and_then(|v| v.as_str()) {
            self.activation = match act {
                "quick_gelu" => Activation::QuickGelu,
                "gelu" => Activation::Gelu,
                other => {
                    return Err(bad(format!(
                        "hidden_act {other:?} is not supported (quick_gelu, gelu)"
                    )))
                }
            };
        }
        if let Some(eps) = cfg.get("layer_norm_eps").and_then(|v| v.as_f64()) {
            self.layer_norm_eps = eps;
        }
        // transformers keeps argmax pooling for the legacy value 2 (see PoolPosition).
        match int("eos_token_id") {
            Some(2) | None => self.pool = PoolPosition::HighestTokenId,
            Some(eos) => self.pool = PoolPosition::FirstToken(eos),
        }
        if let (Some(stated), Some(detected)) = (int("projection_dim"), self.projection_dim) {
            if stated != detected {
                return Err(bad(format!(
                    "projection_dim is {stated} but text_projection gives {detected}"
                )));
            }
        }
        Ok(())
    }
}

/// Counts `layer(0), layer(1), …` and checks nothing lies beyond the first gap.
fn count_layers(w: &Weights, keys: &KeyNames) -> Result<i64> {
    let mut count = 0;
    while w.contains(&keys.fc1_weight(count)) {
        count += 1;
    }
    let stem = keys.layer(0);
    let stem = &stem[..stem.len() - 2]; // "….layers." / "….resblocks."
    let highest = w
        .names_with_prefix(stem)
        .iter()
        .filter_map(|n| n[stem.len()..].split('.').next()?.parse::<i64>().ok())
        .max();
    match highest {
        None => Err(unknown(w, format!("no text encoder layers under {stem}"))),
        Some(h) if h + 1 != count => Err(missing(w, &keys.fc1_weight(count))),
        Some(_) => Ok(count),
    }
}

/// Opens a diffusers `text_encoder/` or `text_encoder_2/` folder (or any transformers
/// CLIPTextModel save): `config.json` plus `model.safetensors`, `model.fp16.safetensors`
/// or a sharded `model.safetensors.index.json`. Returns CPU float32 weights (use
/// [`Weights::to`]) at prefix "" and the config with `config.json` applied.
pub fn open_hf_text_encoder_dir(dir: &Path) -> Result<(Weights, ClipConfig)> {
    let config_path = dir.join("config.json");
    let json = std::fs::read_to_string(&config_path).map_err(|source| EngineError::Io {
        path: config_path.clone(),
        source,
    })?;
    let weights = crate::weights::open_model_dir(dir)?;
    let layout = detect_layout(&weights).ok_or_else(|| EngineError::UnknownArchitecture {
        path: dir.to_path_buf(),
        reason: "no CLIP text encoder tensors (text_model.embeddings.token_embedding.weight)"
            .into(),
    })?;
    let mut cfg = ClipConfig::detect(&weights, layout)?;
    cfg.apply_hf_config(&json, &config_path)?;
    Ok((weights, cfg))
}
