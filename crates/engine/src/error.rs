//! The engine's error type: every variant carries what a user needs to act (file, tensor,
//! value), so the CLI can print it as is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid safetensors file: {reason}")]
    CorruptSafetensors { path: PathBuf, reason: String },
    #[error("{path} is a pickle checkpoint ({ext}); imagelab never unpickles files because they can run code. Convert it to .safetensors first (for example with the `safetensors` convert tool or ComfyUI's checkpoint save node)")]
    PickleRefused { path: PathBuf, ext: String },
    #[error("{path}: unknown model architecture: {reason}")]
    UnknownArchitecture { path: PathBuf, reason: String },
    #[error("{path}: not a usable tokenizer: {reason}")]
    BadTokenizer { path: PathBuf, reason: String },
    #[error("{source_name}: tensor {name} is missing")]
    MissingTensor { source_name: String, name: String },
    #[error("{source_name}: tensor {name} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        source_name: String,
        name: String,
        actual: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("{source_name}: tensor {name} has unsupported dtype {dtype}")]
    UnsupportedDtype {
        source_name: String,
        name: String,
        dtype: String,
    },
    #[error("{what} {path} does not fit the model: {reason}")]
    Incompatible {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("invalid {field} {value}: {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: String,
    },
    #[error("cannot write {path}: {reason}")]
    Output { path: PathBuf, reason: String },
    /// The caller stopped the run at a step boundary (see `sampling::sample_until`); not a
    /// failure, and nothing was decoded or written.
    #[error("cancelled after step {done} of {total}")]
    Cancelled { done: usize, total: usize },
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

impl From<imagelab_core::ValidationError> for EngineError {
    fn from(e: imagelab_core::ValidationError) -> Self {
        EngineError::Invalid {
            field: e.field,
            value: e.value,
            expected: e.expected,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
