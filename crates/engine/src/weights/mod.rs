//! Named tensors read from safetensors files through a memory map, handed out on demand on
//! the target device and dtype, with errors that name the file and the tensor.
//!
//! A [`Weights`] is one logical namespace (for example everything in a single-file
//! checkpoint), possibly assembled from several files and possibly under renamed keys
//! (a diffusers folder is indexed under the original single-file names).

mod copy;
mod folder;
mod registry;

use crate::error::{EngineError, Result};
use copy::copy_out_of_map;
pub use copy::tensor_bytes;
pub use folder::open_model_dir;
use memmap2::Mmap;
pub use registry::{ParamRegistry, ParamSlot};
use safetensors::tensor::{Dtype, Metadata};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// One memory-mapped safetensors file and its parsed header.
pub struct WeightFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightFile")
            .field("path", &self.path)
            .finish()
    }
}

/// Refuses pickle checkpoints by name and by content, before anything else looks at them.
pub fn refuse_pickle(path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "ckpt" | "pt" | "pth" | "bin" | "pkl") {
        return Err(EngineError::PickleRefused {
            path: path.to_path_buf(),
            ext: format!(".{ext}"),
        });
    }
    Ok(())
}

impl WeightFile {
    /// Maps `path` and validates its header and every tensor's byte range.
    pub fn open(path: &Path) -> Result<Arc<WeightFile>> {
        refuse_pickle(path)?;
        let io = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated underneath us by another process
        // would fault, which is the same contract every mmap-based loader (torch, ComfyUI)
        // accepts. We validate the header against the length we mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let corrupt = |reason: String| EngineError::CorruptSafetensors {
            path: path.to_path_buf(),
            reason,
        };
        // A safetensors file starts with an 8-byte header length, then '{'. Pickles start
        // with 0x80 and a protocol byte; torch's zip format with "PK". The '{' test comes
        // first because a header length can itself begin with the byte 0x80.
        let looks_like_safetensors = mmap.len() > 8 && mmap[8] == b'{';
        let looks_like_pickle = mmap.len() >= 2
            && ((mmap[0] == 0x80 && (2..=5).contains(&mmap[1])) || &mmap[..2] == b"PK");
        if !looks_like_safetensors && looks_like_pickle {
            return Err(EngineError::PickleRefused {
                path: path.to_path_buf(),
                ext: "pickle content".into(),
            });
        }
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap[..])
            .map_err(|e| corrupt(e.to_string()))?;
        let data_start = 8 + header_len;
        let data_len = mmap.len() - data_start;
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            if end > data_len || start > end {
                return Err(corrupt(format!(
                    "tensor {name} lies past the end of the file (truncated?)"
                )));
            }
        }
        Ok(Arc::new(WeightFile {
            path: path.to_path_buf(),
            mmap,
            data_start,
            metadata,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name in the file with its shape.
    pub fn shapes(&self) -> BTreeMap<String, Vec<i64>> {
        self.metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.shape.iter().map(|&d| d as i64).collect()))
            .collect()
    }

    /// The file's `__metadata__` map (may be empty).
    pub fn user_metadata(&self) -> HashMap<String, String> {
        self.metadata.metadata().clone().unwrap_or_default()
    }

    fn load(&self, name: &str, device: Device, kind: Kind) -> Result<Tensor> {
        let source_name = self.path.display().to_string();
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| EngineError::MissingTensor {
                source_name: source_name.clone(),
                name: name.into(),
            })?;
        let file_kind = match info.dtype {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            other => {
                return Err(EngineError::UnsupportedDtype {
                    source_name,
                    name: name.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        let (start, end) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + start..self.data_start + end];
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let numel: i64 = shape.iter().product();
        if bytes.len() as i64 != numel * file_kind.elt_size_in_bytes() as i64 {
            return Err(EngineError::CorruptSafetensors {
                path: self.path.clone(),
                reason: format!(
                    "tensor {name} has {} bytes for shape {shape:?}",
                    bytes.len()
                ),
            });
        }
        // Integer tensors (position ids) keep their kind; floats take the target precision.
        let is_float = matches!(
            file_kind,
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        );
        let target = if is_float { kind } else { file_kind };
        copy_out_of_map(bytes, &shape, file_kind, device, target)
    }
}

/// A namespace of tensors from one or more files, loaded on demand to `device`/`kind`.
#[derive(Clone)]
pub struct Weights {
    label: String,
    /// Logical name → (file, name inside that file).
    index: Arc<HashMap<String, (Arc<WeightFile>, String)>>,
    prefix: String,
    device: Device,
    kind: Kind,
    /// When set, every tensor handed out adds its size here (see [`Weights::counted`]).
    ledger: Option<Arc<AtomicU64>>,
    /// When set, every float tensor handed out is recorded there, under its name relative
    /// to the view the registry was made on (see [`Weights::recorded`]).
    registry: Option<(ParamRegistry, String)>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("label", &self.label)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Weights {
    /// All tensors of one file under their own names.
    pub fn from_file(file: Arc<WeightFile>) -> Weights {
        let label = file.path.display().to_string();
        let index = file
            .metadata
            .tensors()
            .into_keys()
            .map(|k| (k.clone(), (file.clone(), k)))
            .collect();
        Weights {
            label,
            index: Arc::new(index),
            prefix: String::new(),
            device: Device::Cpu,
            kind: Kind::Float,
            ledger: None,
            registry: None,
        }
    }

    /// Builds a namespace from explicit `logical name → (file, stored name)` entries; used
    /// to present diffusers-layout files under single-file names.
    pub fn from_mapping(
        label: String,
        index: HashMap<String, (Arc<WeightFile>, String)>,
    ) -> Weights {
        Weights {
            label,
            index: Arc::new(index),
            prefix: String::new(),
            device: Device::Cpu,
            kind: Kind::Float,
            ledger: None,
            registry: None,
        }
    }

    /// The same tensors, loaded to another device and precision.
    pub fn to(&self, device: Device, kind: Kind) -> Weights {
        Weights {
            device,
            kind,
            ..self.clone()
        }
    }

    /// The same view with a fresh byte counter: every tensor loaded through it (or through
    /// views made from it) adds `numel × element size` of the tensor as loaded, on the
    /// target device and kind. A module keeps every tensor it loads, so after loading the
    /// counter is the bytes the module holds; the pipeline reports it per component.
    pub fn counted(&self) -> (Weights, Arc<AtomicU64>) {
        let ledger = Arc::new(AtomicU64::new(0));
        (
            Weights {
                ledger: Some(ledger.clone()),
                ..self.clone()
            },
            ledger,
        )
    }

    /// The same view without a byte counter: for weights loaded again and again
    /// (sequential offload), which are not resident and must not inflate the report.
    pub fn uncounted(&self) -> Weights {
        Weights {
            ledger: None,
            registry: None,
            ..self.clone()
        }
    }

    /// The same view recording what it hands out: the registry maps each float tensor's
    /// name (relative to this view) to the tensor, for patching in place (LoRA). Only for
    /// components kept loaded: the registry keeps every tensor it saw alive.
    pub fn recorded(&self) -> (Weights, ParamRegistry) {
        let registry = ParamRegistry::default();
        (
            Weights {
                registry: Some((registry.clone(), self.prefix.clone())),
                ..self.clone()
            },
            registry,
        )
    }

    /// Says that the weight `name` now lives in `tensor` (rows `start..start + len` of it
    /// when `rows` is given) instead of in the tensor `get` returned, for code that fuses,
    /// splits or re-lays-out loaded weights. A no-op without a registry.
    pub fn register(&self, name: &str, tensor: &Tensor, rows: Option<(i64, i64)>) {
        if let Some((registry, root)) = &self.registry {
            let full = self.full(name);
            let relative = full
                .strip_prefix(root.as_str())
                .map(|r| r.trim_start_matches('.'))
                .unwrap_or(&full);
            registry.insert(
                relative.to_string(),
                ParamSlot {
                    tensor: tensor.shallow_clone(),
                    rows,
                },
            );
        }
    }

    /// A view whose names are relative to `prefix` (joined with a `.`).
    pub fn at(&self, prefix: &str) -> Weights {
        let prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}.{prefix}", self.prefix)
        };
        Weights {
            prefix,
            ..self.clone()
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(&self.full(name))
    }

    /// The shape of `name` without loading it.
    pub fn shape(&self, name: &str) -> Option<Vec<i64>> {
        let (file, stored) = self.index.get(&self.full(name))?;
        file.metadata
            .info(stored)
            .map(|i| i.shape.iter().map(|&d| d as i64).collect())
    }

    /// Logical names (relative to this view) that start with `prefix`.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let full = self.full(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut names: Vec<String> = self
            .index
            .keys()
            .filter(|k| k.starts_with(&full))
            .map(|k| k[strip..].to_string())
            .collect();
        names.sort();
        names
    }

    /// Loads `name` on this view's device and precision.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let full = self.full(name);
        let (file, stored) = self
            .index
            .get(&full)
            .ok_or_else(|| EngineError::MissingTensor {
                source_name: self.label.clone(),
                name: full.clone(),
            })?;
        let tensor = file.load(stored, self.device, self.kind)?;
        if let Some(ledger) = &self.ledger {
            ledger.fetch_add(tensor_bytes(&tensor), Ordering::Relaxed);
        }
        if tensor.is_floating_point() {
            self.register(name, &tensor, None);
        }
        Ok(tensor)
    }

    /// Loads `name` and checks its shape.
    pub fn get_shaped(&self, name: &str, expected: &[i64]) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.size() != expected {
            return Err(EngineError::ShapeMismatch {
                source_name: self.label.clone(),
                name: self.full(name),
                actual: t.size(),
                expected: expected.to_vec(),
            });
        }
        Ok(t)
    }

    /// Loads `name` if present.
    pub fn get_opt(&self, name: &str) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.get(name).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests;
