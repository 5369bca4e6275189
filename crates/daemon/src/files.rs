//! Read-only views of the folders: model names by folder, and output images, which are
//! served only from inside `output/` (no `..`, no absolute name, no symlink leading out).

use crate::error::ApiFailure;
use crate::routes::AppState;
use actix_web::{web, HttpResponse};
use imagelab_core::api::{ModelEntry, ModelList, OutputFile};
use imagelab_core::family::inspect;
use imagelab_core::paths::{list_model_names, resolve_in_folder, PathError};
use std::collections::BTreeMap;
use std::path::Path;

/// `GET /v1/models`: the loadable names in `checkpoints/`, `vae/`, `clip/`, `loras/` and
/// `embeddings/`, with each checkpoint's, LoRA's and embedding's family read from its safetensors header (no weights are loaded, and the
/// daemon never links libtorch).
pub async fn models(state: web::Data<AppState>) -> Result<web::Json<ModelList>, ApiFailure> {
    let folders = state.folders.clone();
    let list = web::block(move || ModelList {
        checkpoints: checkpoint_entries(&folders.checkpoints()),
        vae: list_model_names(&folders.vae()),
        clip: list_model_names(&folders.clip()),
        loras: header_entries(&folders.loras(), imagelab_core::lora::family_of),
        embeddings: header_entries(&folders.embeddings(), imagelab_core::embedding::family_of),
    })
    .await?;
    Ok(web::Json(list))
}

fn checkpoint_entries(folder: &Path) -> Vec<ModelEntry> {
    entries(folder, |path| Ok(Some(inspect(path)?.label())))
}

/// Each file's family as its safetensors header's shapes name it (`family_of`).
fn header_entries(
    folder: &Path,
    family_of: fn(&BTreeMap<String, Vec<i64>>) -> Option<&'static str>,
) -> Vec<ModelEntry> {
    entries(folder, |path| {
        let header = imagelab_core::safetensors_header::read_header(path)?;
        Ok(family_of(&header.shapes()).map(str::to_string))
    })
}

/// The model names in `folder`, each with the family `detect` reads from it (`None`: the
/// file does not tell) or why it could not be read.
fn entries(
    folder: &Path,
    detect: impl Fn(&Path) -> Result<Option<String>, Box<dyn std::error::Error>>,
) -> Vec<ModelEntry> {
    list_model_names(folder)
        .into_iter()
        .map(|name| match detect(&folder.join(&name)) {
            Ok(family) => ModelEntry {
                name,
                family,
                error: None,
            },
            Err(e) => ModelEntry {
                name,
                family: None,
                error: Some(e.to_string()),
            },
        })
        .collect()
}

/// The regular files directly in `folder`, sorted by name (a missing folder is empty).
fn list_files(folder: &Path) -> Vec<OutputFile> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<OutputFile> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            Some(OutputFile {
                name: e.file_name().into_string().ok()?,
                bytes: meta.len(),
            })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// `GET /v1/outputs`: the files in `output/`.
pub async fn outputs(state: web::Data<AppState>) -> Result<web::Json<Vec<OutputFile>>, ApiFailure> {
    let folder = state.folders.output.clone();
    Ok(web::Json(web::block(move || list_files(&folder)).await?))
}

fn content_type(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    match lower.rsplit('.').next() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("json") => "application/json",
        Some("txt" | "log") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /v1/outputs/{name}`: one file's bytes, only from inside `output/`.
pub async fn output(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiFailure> {
    let name = name.into_inner();
    let path = resolve_in_folder(&state.folders.output, &name, "output").map_err(|err| {
        let failure = match err {
            PathError::Escapes { .. } => {
                ApiFailure::new(actix_web::http::StatusCode::FORBIDDEN, err.to_string())
            }
            _ => ApiFailure::bad_request(err.to_string()),
        };
        failure.field("name")
    })?;
    let shown = name.clone();
    let bytes = web::block(move || {
        if path.is_file() {
            std::fs::read(&path).ok()
        } else {
            None
        }
    })
    .await?
    .ok_or_else(|| {
        ApiFailure::not_found(format!("output {shown:?} not found in output/")).field("name")
    })?;
    Ok(HttpResponse::Ok()
        .content_type(content_type(&name))
        .body(bytes))
}
