//! Transformers-style model folders: one safetensors file, or shards listed in an index.

use super::{WeightFile, Weights};
use crate::error::{EngineError, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The weights of a transformers model folder (a diffusers `text_encoder/`):
/// `model.safetensors`, `model.fp16.safetensors`, or the shards a
/// `model.safetensors.index.json` names (each a plain file name inside `dir`).
pub fn open_model_dir(dir: &Path) -> Result<Weights> {
    for name in ["model.safetensors", "model.fp16.safetensors"] {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(Weights::from_file(WeightFile::open(&path)?));
        }
    }
    let index_path = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index_path).map_err(|source| EngineError::Io {
        path: index_path.clone(),
        source,
    })?;
    let bad = |reason: String| EngineError::Incompatible {
        what: "shard index",
        path: index_path.clone(),
        reason,
    };
    let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no weight_map".into()))?;
    let mut files: HashMap<String, Arc<WeightFile>> = HashMap::new();
    let mut entries = HashMap::new();
    for (tensor, shard) in map {
        let shard = shard
            .as_str()
            .ok_or_else(|| bad(format!("shard of {tensor} is not a file name")))?;
        if shard.contains('/') || shard.contains('\\') {
            return Err(bad(format!("shard {shard:?} is not a plain file name")));
        }
        let file = match files.get(shard) {
            Some(f) => f.clone(),
            None => {
                let f = WeightFile::open(&dir.join(shard))?;
                files.insert(shard.to_string(), f.clone());
                f
            }
        };
        entries.insert(tensor.clone(), (file, tensor.clone()));
    }
    Ok(Weights::from_mapping(dir.display().to_string(), entries))
}
