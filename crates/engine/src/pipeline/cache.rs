//! The last N loaded pipelines, kept so that switching back to a model costs no load.
//!
//! Keyed by what decides the loaded weights: the checkpoint (path, size, modification
//! time, so a replaced file is reloaded), the VAE and text-encoder overrides (the same),
//! the tokenizer beside a T5 text encoder, the placement and the precision. Least recently used goes first.
//!
//! The cache hands out `Rc<Pipeline>`, not `Arc`: a tch `Tensor` is `Send` but not
//! `Sync`, so a pipeline cannot be shared between threads anyway; each GPU worker process
//! keeps its own cache on its one thread.
//!
//! Eviction drops the cache's reference; the pipeline's tensors are freed as soon as no
//! job still holds its `Rc`. On CUDA the freed blocks go back to libtorch's caching
//! allocator; when the cache held the last reference, eviction then empties that cache
//! ([`crate::device_memory::empty_cache`], a C++ shim, since tch 0.24 exposes no
//! `emptyCache`), so the memory goes back to the driver and other processes can use it.
//! A pipeline a job still holds is freed when the job drops it, into the allocator's cache
//! only (the next eviction or load reuses or releases it).

use super::{ModelChoice, Pipeline, Placement, Tuning};
use crate::error::{EngineError, Result};
use imagelab_core::memory::{AttentionMode, Offload};
use imagelab_core::DType;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

/// A file as the cache sees it: a changed size or modification time is a different file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileStamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> Result<FileStamp> {
        let meta = std::fs::metadata(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(FileStamp {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// Which files, where, in what precision: one model as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModelIdentity {
    checkpoint: FileStamp,
    vae: Option<FileStamp>,
    clip: Option<FileStamp>,
    /// The `spiece.model` / `tokenizer.json` read with a T5 `clip` file.
    tokenizer: Option<FileStamp>,
    placement: Placement,
    dtype: DType,
}

/// Everything that decides what a load produces: the model, and the modes that change
/// what is loaded where (attention, offload, the speed switches). CFG batching and VAE
/// tiling are applied per job to whatever pipeline is cached, so changing them costs no
/// load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    model: ModelIdentity,
    attention: AttentionMode,
    offload: Offload,
    tuning: Tuning,
}

impl CacheKey {
    /// Reads the files' sizes and times (a folder checkpoint is stamped by its folder).
    pub fn of(choice: &ModelChoice) -> Result<CacheKey> {
        Ok(CacheKey {
            model: ModelIdentity {
                checkpoint: FileStamp::of(&choice.checkpoint)?,
                vae: choice.vae.as_deref().map(FileStamp::of).transpose()?,
                clip: choice.clip.as_deref().map(FileStamp::of).transpose()?,
                tokenizer: choice
                    .clip
                    .as_deref()
                    .and_then(crate::pixart::tokenizer_file_beside)
                    .as_deref()
                    .map(FileStamp::of)
                    .transpose()?,
                placement: choice.placement,
                dtype: choice.dtype,
            },
            attention: choice.memory.attention,
            offload: choice.memory.offload,
            tuning: choice.tuning,
        })
    }
}

/// Counters since the cache was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Loads that ran (a failed load counts as a miss but leaves nothing cached).
    pub loads: u64,
    pub evictions: u64,
    /// Weight bytes (per [`Pipeline::memory_report`]) of the evicted pipelines.
    pub evicted_bytes: u64,
}

type Loader = Box<dyn FnMut(&ModelChoice) -> Result<Pipeline>>;

/// A least-recently-used cache of loaded pipelines.
pub struct PipelineCache {
    capacity: usize,
    /// Most recently used last.
    entries: Vec<(CacheKey, Rc<Pipeline>)>,
    stats: CacheStats,
    loader: Loader,
}

impl std::fmt::Debug for PipelineCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineCache")
            .field("capacity", &self.capacity)
            .field("entries", &self.entries.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl PipelineCache {
    /// Keeps up to `capacity` pipelines (the setting `pipeline_cache_size`, default 2).
    /// A capacity of 0 caches nothing: every call loads.
    pub fn new(capacity: usize) -> PipelineCache {
        PipelineCache::with_loader(capacity, Box::new(Pipeline::load))
    }

    /// The same with another loader (tests count loads through it).
    pub fn with_loader(capacity: usize, loader: Loader) -> PipelineCache {
        PipelineCache {
            capacity,
            entries: Vec::new(),
            stats: CacheStats::default(),
            loader,
        }
    }

    /// The cached pipeline for `choice`, or a fresh load (evicting the least recently used
    /// one first when full, so two models never need to fit at once beyond capacity).
    pub fn get_or_load(&mut self, choice: &ModelChoice) -> Result<Rc<Pipeline>> {
        let key = CacheKey::of(choice)?;
        if let Some(pos) = self.entries.iter().position(|(k, _)| *k == key) {
            self.stats.hits += 1;
            let entry = self.entries.remove(pos);
            let pipeline = entry.1.clone();
            pipeline.apply_run_settings(choice.memory);
            self.entries.push(entry);
            return Ok(pipeline);
        }
        self.stats.misses += 1;
        // The same model with other modes (the user changed `memory:` to get out of an
        // out-of-memory error) replaces the cached copy: loading a second copy beside it
        // is what would run out of memory.
        while let Some(pos) = self.entries.iter().position(|(k, _)| k.model == key.model) {
            self.evict_at(pos);
        }
        // Make room before loading: on a GPU the old weights must go before the new come.
        while !self.entries.is_empty() && self.entries.len() >= self.capacity {
            self.evict_oldest();
        }
        self.stats.loads += 1;
        let pipeline = Rc::new((self.loader)(choice)?);
        if self.capacity > 0 {
            self.entries.push((key, pipeline.clone()));
        }
        Ok(pipeline)
    }

    fn evict_oldest(&mut self) {
        self.evict_at(0);
    }

    fn evict_at(&mut self, pos: usize) {
        if pos >= self.entries.len() {
            return;
        }
        let (_, pipeline) = self.entries.remove(pos);
        self.stats.evictions += 1;
        self.stats.evicted_bytes += pipeline
            .memory_report()
            .iter()
            .map(|c| c.bytes)
            .sum::<u64>();
        let placement = pipeline.placement();
        let last = Rc::strong_count(&pipeline) == 1;
        drop(pipeline);
        release_device_memory(placement, last);
    }

    /// Drops the cached pipelines of this checkpoint (every device and precision); returns
    /// how many went. The GUI's "clear model" button ends here.
    pub fn remove(&mut self, checkpoint: &std::path::Path) -> usize {
        let mut removed = 0;
        while let Some(pos) = self
            .entries
            .iter()
            .position(|(_, p)| p.info.model_path == checkpoint)
        {
            let (_, pipeline) = self.entries.remove(pos);
            let placement = pipeline.placement();
            let last = Rc::strong_count(&pipeline) == 1;
            drop(pipeline);
            release_device_memory(placement, last);
            removed += 1;
        }
        removed
    }

    /// The cached pipelines, least recently used first.
    pub fn pipelines(&self) -> impl Iterator<Item = &Pipeline> {
        self.entries.iter().map(|(_, p)| p.as_ref())
    }

    /// Drops every cached pipeline.
    pub fn clear(&mut self) {
        while !self.entries.is_empty() {
            self.evict_oldest();
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached checkpoints, least recently used first.
    pub fn checkpoints(&self) -> Vec<PathBuf> {
        self.entries
            .iter()
            .map(|(_, p)| p.info.model_path.clone())
            .collect()
    }

    /// Weight bytes the cached pipelines hold, summed over their memory reports.
    pub fn resident_bytes(&self) -> u64 {
        self.entries
            .iter()
            .flat_map(|(_, p)| p.memory_report())
            .map(|c| c.bytes)
            .sum()
    }
}

/// After an eviction: wait for the devices the pipeline used, so its frees have happened
/// before the next load allocates; when the dropped reference was the last one (its
/// tensors are gone), hand the allocator's cached blocks back to the driver.
fn release_device_memory(placement: Placement, last: bool) {
    let mut on_cuda = false;
    for device in [placement.unet, placement.text_encoders, placement.vae] {
        if let imagelab_core::DeviceSpec::Cuda(index) = device {
            if tch::Cuda::is_available() {
                tch::Cuda::synchronize(index as i64);
                on_cuda = true;
            }
        }
    }
    if last && on_cuda {
        crate::device_memory::empty_cache();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_core::DeviceSpec;

    #[test]
    fn a_replaced_tokenizer_beside_the_t5_file_is_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let mut choice = ModelChoice::new(
            file("pixart.safetensors", b"dit"),
            DeviceSpec::Cpu,
            DType::Fp32,
        );
        choice.clip = Some(file("t5.safetensors", b"t5"));
        let without = CacheKey::of(&choice).unwrap();
        file("spiece.model", b"first");
        let first = CacheKey::of(&choice).unwrap();
        assert_ne!(without, first, "the tokenizer is part of the key");
        assert_eq!(first, CacheKey::of(&choice).unwrap());
        file("spiece.model", b"the second, longer");
        assert_ne!(
            first,
            CacheKey::of(&choice).unwrap(),
            "a replaced spiece.model"
        );
    }
}
