//! Reading the settings of PNG files from their text chunks (tEXt, zTXt, iTXt) without
//! decoding pixels: our `imagelab` JSON chunk first (the most complete), then a ComfyUI
//! `prompt` graph, then an A1111/Forge `parameters` text.

use crate::error::{AnalyticsError, Result};
use crate::record::{normalize_sampler, ImageRecord, SourceTool};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Reads the text chunks of a PNG. Chunks that fail to decompress are left out.
pub fn read_texts(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = std::fs::File::open(path).map_err(AnalyticsError::io(path))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_ignore_text_chunk(false);
    let reader = decoder.read_info().map_err(|e| AnalyticsError::Format {
        path: path.to_path_buf(),
        message: format!("not a readable PNG: {e}"),
    })?;
    let info = reader.info();
    let mut texts = BTreeMap::new();
    for chunk in &info.uncompressed_latin1_text {
        texts.insert(chunk.keyword.clone(), chunk.text.clone());
    }
    for chunk in &info.compressed_latin1_text {
        if let Ok(text) = chunk.get_text() {
            texts.insert(chunk.keyword.clone(), text);
        }
    }
    for chunk in &info.utf8_text {
        if let Ok(text) = chunk.get_text() {
            texts.insert(chunk.keyword.clone(), text);
        }
    }
    Ok(texts)
}

/// The record for a PNG's text chunks, or `None` when none of them is metadata we read.
pub fn record_from_texts(path: &str, texts: &BTreeMap<String, String>) -> Option<ImageRecord> {
    if let Some(record) = texts
        .get("imagelab")
        .and_then(|t| record_from_ours(path, t))
    {
        return Some(record);
    }
    if let Some(record) = texts
        .get("prompt")
        .and_then(|t| crate::comfy::record_from_graph(path, t))
    {
        return Some(record);
    }
    let parameters = texts.get("parameters")?;
    Some(crate::a1111::record_from_parameters(path, parameters))
}

/// The record of our own JSON chunk: `{"params": GenerationParams, "seed", "model":
/// {"model_name", "model_hash", …}, "style"?, "theme"?}`. Read leniently, field by field,
/// so chunks from older or newer versions still count.
pub fn record_from_ours(path: &str, text: &str) -> Option<ImageRecord> {
    let spec: Value = serde_json::from_str(text).ok()?;
    let params = spec.get("params")?;
    let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let mut record = ImageRecord {
        path: path.to_string(),
        source: SourceTool::Imagelab,
        prompt: str_of(params, "prompt").unwrap_or_default(),
        negative: str_of(params, "negative").unwrap_or_default(),
        cfg: params.get("cfg").and_then(Value::as_f64),
        steps: params
            .get("steps")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok()),
        width: params
            .get("width")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok()),
        height: params
            .get("height")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok()),
        scheduler: str_of(params, "scheduler"),
        seed: spec
            .get("seed")
            .and_then(Value::as_i64)
            .or_else(|| params.get("seed").and_then(Value::as_i64)),
        profile: str_of(&spec, "style").or_else(|| str_of(&spec, "profile")),
        theme: str_of(&spec, "theme"),
        ..ImageRecord::default()
    };
    record.sampler = str_of(params, "sampler").map(|s| normalize_sampler(&s).0);
    let listed: Vec<&str> = params
        .get("loras")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|l| l.get("name")?.as_str())
                .collect()
        })
        .unwrap_or_default();
    record.lora = imagelab_core::lora::group_key(&record.prompt, listed);
    let model = spec.get("model");
    record.model = model
        .and_then(|m| str_of(m, "model_name"))
        .or_else(|| str_of(params, "model"));
    record.model_hash = model.and_then(|m| str_of(m, "model_hash"));
    Some(record)
}

/// What scanning folders of PNGs found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<ImageRecord>,
    /// PNGs with none of the metadata chunks we read.
    pub without_metadata: Vec<PathBuf>,
    /// Files named `.png` that are not readable PNGs.
    pub unreadable: Vec<PathBuf>,
}

/// Reads every `*.png` under `dirs` (recursively, sorted for a stable report). A folder
/// that cannot be read is an error; a bad file is counted and skipped.
pub fn scan_dirs(dirs: &[PathBuf]) -> Result<Scan> {
    let mut scan = Scan::default();
    for dir in dirs {
        let mut files = Vec::new();
        collect_pngs(dir, &mut files)?;
        files.sort();
        for file in files {
            let shown = file.to_string_lossy().into_owned();
            match read_texts(&file) {
                Err(_) => scan.unreadable.push(file),
                Ok(texts) => match record_from_texts(&shown, &texts) {
                    Some(mut record) => {
                        record.created_ms = modified_ms(&file);
                        scan.records.push(record);
                    }
                    None => scan.without_metadata.push(file),
                },
            }
        }
    }
    Ok(scan)
}

fn collect_pngs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(AnalyticsError::io(dir))? {
        let path = entry.map_err(AnalyticsError::io(dir))?.path();
        if path.is_dir() {
            collect_pngs(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn modified_ms(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}
