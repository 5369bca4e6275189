//! The T5 v1.1 text encoder PixArt-Σ conditions on: its shape read off the weights, and
//! where in a file its tensors sit.

mod model;
mod tokenizer;

pub use model::{T5Encoder, T5Output};
pub use tokenizer::{write_synthetic_spiece, T5Tokenizer, WeightedTokens, PIXART_TOKENS};

use crate::error::{EngineError, Result};
use crate::weights::Weights;

/// What this key ends with marks a T5 encoder, whatever prefix the file puts before it.
const MARKER: &str = "encoder.block.0.layer.0.SelfAttention.q.weight";

/// The feed-forward kind: T5 v1.0's ReLU, or v1.1's gated tanh-GELU (what PixArt uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedForward {
    Relu,
    GatedGelu,
}

/// A T5 encoder's shape. Everything but `max_distance` and `eps` is in the tensor shapes;
/// those two are the same for every published T5 (`relative_attention_max_distance` 128,
/// `layer_norm_epsilon` 1e-6).
#[derive(Debug, Clone, PartialEq)]
pub struct T5Config {
    pub vocab: i64,
    pub d_model: i64,
    pub heads: i64,
    pub head_dim: i64,
    pub d_ff: i64,
    pub layers: i64,
    pub buckets: i64,
    pub max_distance: i64,
    pub eps: f64,
    pub feed_forward: FeedForward,
}

/// The view of `w` whose names start at `shared.` / `encoder.`: `w` itself for
/// transformers' files and ComfyUI's `t5xxl_*.safetensors`, or the view under the prefix a
/// combined file puts before them. `None` when it holds no T5 encoder.
pub fn encoder_view(w: &Weights) -> Option<Weights> {
    if w.contains(MARKER) {
        return Some(w.clone());
    }
    w.names_with_prefix("").into_iter().find_map(|name| {
        let prefix = name.strip_suffix(MARKER)?.strip_suffix('.')?;
        Some(w.at(prefix))
    })
}

/// The T5 encoder of a diffusers `text_encoder/` folder (or any transformers save, sharded
/// or not), as a view whose names start at `shared.` / `encoder.`.
pub fn open_encoder_dir(dir: &std::path::Path) -> Result<Weights> {
    let weights = crate::weights::open_model_dir(dir)?;
    encoder_view(&weights).ok_or_else(|| EngineError::UnknownArchitecture {
        path: dir.to_path_buf(),
        reason: format!("no T5 encoder tensors (…{MARKER})"),
    })
}

/// The shape of `name`, which must have `rank` dimensions.
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

impl T5Config {
    /// Reads the shape off a view whose names start at `shared.` / `encoder.`.
    pub fn detect(w: &Weights) -> Result<T5Config> {
        let embed = if w.contains("shared.weight") {
            "shared.weight"
        } else {
            "encoder.embed_tokens.weight"
        };
        let [vocab, d_model] = dims(w, embed, 2)?[..] else {
            unreachable!()
        };
        let attn = "encoder.block.0.layer.0.SelfAttention";
        let [buckets, heads] = dims(w, &format!("{attn}.relative_attention_bias.weight"), 2)?[..]
        else {
            unreachable!()
        };
        let inner = dims(w, &format!("{attn}.q.weight"), 2)?[0];
        let ff = "encoder.block.0.layer.1.DenseReluDense";
        let (feed_forward, d_ff) = if w.contains(&format!("{ff}.wi_0.weight")) {
            (
                FeedForward::GatedGelu,
                dims(w, &format!("{ff}.wi_0.weight"), 2)?[0],
            )
        } else {
            (
                FeedForward::Relu,
                dims(w, &format!("{ff}.wi.weight"), 2)?[0],
            )
        };
        let mut layers = 0;
        while w.contains(&format!("encoder.block.{layers}.layer.0.layer_norm.weight")) {
            layers += 1;
        }
        Ok(T5Config {
            vocab,
            d_model,
            heads,
            head_dim: inner / heads.max(1),
            d_ff,
            layers,
            buckets,
            max_distance: 128,
            eps: 1e-6,
            feed_forward,
        })
    }
}
