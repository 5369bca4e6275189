//! Textual-inversion embeddings: the vectors a `.safetensors` file holds (A1111's
//! `emb_params` or `string_to_param.*`, SDXL's `clip_l` / `clip_g` pair, ComfyUI's single
//! tensor), checked against the text encoder they are used with, and found by name in
//! prompts ([`library`]).

pub mod library;

use crate::clip::ClipRole;
use crate::error::{EngineError, Result};
use crate::weights::{WeightFile, Weights};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub use library::{EmbeddingLibrary, PromptEmbeddings};

/// More vectors than one 77-token chunk holds is not an embedding anyone trained.
const MAX_VECTORS: i64 = 75;

/// One embedding file, read into fp32 tensors on the CPU.
#[derive(Debug)]
pub struct Embedding {
    /// The file name without `.safetensors`, as prompts use it.
    pub name: String,
    pub path: PathBuf,
    vectors: Vectors,
    /// A1111's "TI hashes" entry, computed on first use.
    hash: std::cell::OnceCell<String>,
}

#[derive(Debug)]
enum Vectors {
    /// SD 1.x or 2.x: one `[count, width]` set for the single text encoder.
    One(Tensor),
    /// SDXL: a set for CLIP-L and one for OpenCLIP-G, with the same count.
    Pair { clip_l: Tensor, clip_g: Tensor },
}

fn bad_file(path: &Path, reason: String) -> EngineError {
    EngineError::UnknownArchitecture {
        path: path.to_path_buf(),
        reason: format!("not a textual-inversion embedding imagelab reads: {reason}"),
    }
}

/// `[count, width]` from a `[width]` or `[count, width]` tensor.
fn as_rows(path: &Path, name: &str, tensor: Tensor) -> Result<Tensor> {
    let tensor = if tensor.dim() == 1 {
        tensor.unsqueeze(0)
    } else {
        tensor
    };
    let size = tensor.size();
    if size.len() != 2 || !(1..=MAX_VECTORS).contains(&size[0]) || size[1] < 1 {
        return Err(bad_file(
            path,
            format!("tensor {name} has shape {size:?}, not [vectors (1..={MAX_VECTORS}), width]"),
        ));
    }
    Ok(tensor)
}

impl Embedding {
    /// Reads `path` (pickles are refused, as for checkpoints).
    pub fn open(path: &Path) -> Result<Embedding> {
        let weights = Weights::from_file(WeightFile::open(path)?).to(Device::Cpu, Kind::Float);
        let names = weights.names_with_prefix("");
        let rows = |name: &str| as_rows(path, name, weights.get(name)?);
        let has = |name: &str| names.iter().any(|n| n == name);
        let vectors = if has("clip_l") && has("clip_g") {
            let (clip_l, clip_g) = (rows("clip_l")?, rows("clip_g")?);
            if clip_l.size()[0] != clip_g.size()[0] {
                return Err(bad_file(
                    path,
                    format!(
                        "clip_l has {} vectors and clip_g {}",
                        clip_l.size()[0],
                        clip_g.size()[0]
                    ),
                ));
            }
            Vectors::Pair { clip_l, clip_g }
        } else if has("emb_params") {
            Vectors::One(rows("emb_params")?)
        } else {
            let params: Vec<String> = names
                .iter()
                .filter(|n| n.starts_with("string_to_param."))
                .cloned()
                .collect();
            match (params.as_slice(), names.as_slice()) {
                ([only], _) | ([], [only]) => Vectors::One(rows(only)?),
                _ => {
                    return Err(bad_file(
                        path,
                        format!(
                            "expected emb_params, string_to_param.*, clip_l and clip_g, or a \
                             single tensor; found {}",
                            names.join(", ")
                        ),
                    ))
                }
            }
        };
        Ok(Embedding {
            name: library::name_of(path),
            path: path.to_path_buf(),
            vectors,
            hash: std::cell::OnceCell::new(),
        })
    }

    /// A1111's short hash of the file (empty when it cannot be read any more).
    pub fn short_hash(&self) -> String {
        self.hash
            .get_or_init(|| crate::model_hash::embedding_short_hash(&self.path).unwrap_or_default())
            .clone()
    }

    /// How many token positions the embedding fills.
    pub fn count(&self) -> usize {
        let rows = match &self.vectors {
            Vectors::One(t) => t.size()[0],
            Vectors::Pair { clip_l, .. } => clip_l.size()[0],
        };
        rows as usize
    }

    /// The family the vectors' widths name, for messages.
    pub fn family(&self) -> String {
        match &self.vectors {
            Vectors::Pair { .. } => "sdxl".into(),
            Vectors::One(t) => {
                let width = t.size()[1];
                imagelab_core::embedding::family_of_width(width)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("a text encoder of width {width}"))
            }
        }
    }

    /// The vectors for the encoder in `role` whose width is `width`: the pair's half for
    /// SDXL, the single set otherwise. An embedding trained for another family is an
    /// error naming the file, never a silent no-op.
    pub fn vectors_for(&self, role: ClipRole, width: i64) -> Result<&Tensor> {
        let chosen = match (&self.vectors, role) {
            (Vectors::Pair { clip_l, .. }, ClipRole::SdxlClipL) => Some(clip_l),
            (Vectors::Pair { clip_g, .. }, ClipRole::SdxlOpenClipG) => Some(clip_g),
            (Vectors::One(t), ClipRole::Sd1ClipL | ClipRole::Sd2OpenClipH) => Some(t),
            _ => None,
        };
        match chosen {
            Some(t) if t.size()[1] == width => Ok(t),
            _ => Err(EngineError::Invalid {
                field: "embedding",
                value: format!("{} ({})", self.name, self.path.display()),
                expected: format!(
                    "an embedding for this model's text encoder ({role:?}, width {width}); \
                     this one is for {}",
                    self.family()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
