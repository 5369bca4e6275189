//! The short model hash A1111 shows ("Model hash": first 10 hex digits of the file's
//! sha256), cached by path, size and modification time so a 7 GB checkpoint is hashed once.

use crate::error::{EngineError, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

fn cache_path() -> PathBuf {
    imagelab_core::config::settings_dir().join("model-hashes.json")
}

fn cache_key(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let real = path.canonicalize().ok()?;
    Some(format!("{}|{}|{modified}", real.display(), meta.len()))
}

/// The full sha256 of a file (or, for a diffusers folder, of its UNet weights).
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// First 10 hex digits of the sha256, from the cache when the file is unchanged.
pub fn short_sha256(path: &Path) -> Result<String> {
    // A folder's hash is its denoiser's (the UNet, or PixArt's transformer).
    let target = if path.is_dir() {
        crate::diffusers_folder::unet_file(path)
            .or_else(|e| crate::pixart::transformer_file(path).ok_or(e))?
    } else {
        path.to_path_buf()
    };
    cached(&target, "", |p| Ok(sha256_file(p)?[..10].to_string()))
}

/// A LoRA's short hash as A1111 writes it in "Lora hashes" (and Civitai reads it): the
/// first 12 hex digits of the sha256 of a safetensors file's tensor data, after its header
/// (kohya's "addnet" hash, which does not change when only the metadata is edited).
pub fn lora_short_hash(path: &Path) -> Result<String> {
    cached(path, "addnet|", |p| {
        let io = |source| EngineError::Io {
            path: p.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(p).map_err(io)?;
        let mut length = [0u8; 8];
        file.read_exact(&mut length).map_err(io)?;
        let header = u64::from_le_bytes(length);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(8 + header)).map_err(io)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(io)?;
        Ok(hex::encode(hasher.finalize())[..12].to_string())
    })
}

/// A textual-inversion embedding's short hash as A1111 writes it in "TI hashes": the first
/// 12 hex digits of the whole file's sha256.
pub fn embedding_short_hash(path: &Path) -> Result<String> {
    cached(path, "ti|", |p| Ok(sha256_file(p)?[..12].to_string()))
}

/// `compute(path)`, or its cached result while the file keeps its size and time.
fn cached(
    path: &Path,
    kind: &str,
    compute: impl FnOnce(&Path) -> Result<String>,
) -> Result<String> {
    let key = cache_key(path).map(|k| format!("{kind}{k}"));
    let cache_file = cache_path();
    let mut cache: BTreeMap<String, String> = std::fs::read_to_string(&cache_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(hit) = key.as_ref().and_then(|k| cache.get(k)) {
        return Ok(hit.clone());
    }
    let short = compute(path)?;
    if let Some(k) = key {
        cache.insert(k, short.clone());
        // The cache is an optimisation: failing to save it must not fail the generation.
        if let Ok(text) = serde_json::to_string_pretty(&cache) {
            let tmp = cache_file.with_extension("json.tmp");
            if std::fs::create_dir_all(cache_file.parent().unwrap_or(Path::new("."))).is_ok()
                && std::fs::write(&tmp, text).is_ok()
            {
                let _ = std::fs::rename(&tmp, &cache_file);
            }
        }
    }
    Ok(short)
}
