//! Turning a submission body (one request or `{"jobs": [...]}`) into queue jobs: decoding
//! with the failing field's path, validation, names that must stay inside their folders,
//! the job-count limit, and seeds (−1 drawn per job; S gives S, S+1, … across `count`).

use crate::convert::{priority_to_queue, source_to_queue};
use crate::error::ApiFailure;
use imagelab_core::api::{SubmitBatch, SubmitRequest, MAX_JOBS_PER_SUBMIT};
use imagelab_core::paths::{list_model_names, resolve_in_folder, resolve_model_file, PathError};
use imagelab_core::Folders;
use imagelab_queue::{JobSpec, NewJob, Placement};
use rand::Rng;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Decodes `value` as `T`; a failure names the path of the field that did not fit.
fn decode<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiFailure> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let failure = ApiFailure::unprocessable(err.inner().to_string());
        // `.` is the library's name for the top level, where no single field is at fault.
        if path == "." {
            failure
        } else {
            failure.field(path)
        }
    })
}

/// The submissions in a body: a batch when it has a `jobs` key, else a single request.
/// Each comes with the prefix its fields are named under (`""` or `jobs[i].`).
pub fn decode_submission(
    body: serde_json::Value,
) -> Result<Vec<(String, SubmitRequest)>, ApiFailure> {
    let is_batch = body.as_object().is_some_and(|o| o.contains_key("jobs"));
    if !is_batch {
        return Ok(vec![(String::new(), decode::<SubmitRequest>(body)?)]);
    }
    let batch = decode::<SubmitBatch>(body)?;
    if batch.jobs.is_empty() {
        return Err(ApiFailure::unprocessable("the batch holds no jobs").field("jobs"));
    }
    Ok(batch
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, req)| (format!("jobs[{i}]."), req))
        .collect())
}

/// A fresh random seed: 53 bits keeps it exact for JSON readers that use doubles (the same
/// range `imagelab generate` draws from).
fn random_seed() -> i64 {
    rand::rng().random_range(0..(1i64 << 53))
}

/// Checks that a user-given name stays inside `folder` and exists there.
fn check_name(
    folder: &Path,
    name: &str,
    what: &'static str,
    field: String,
    model_like: bool,
) -> Result<(), ApiFailure> {
    let resolved = if model_like {
        resolve_model_file(folder, name, what, false)
    } else {
        resolve_in_folder(folder, name, what).and_then(|path| {
            if path.is_file() {
                Ok(path)
            } else {
                Err(PathError::NotFound {
                    what,
                    name: name.to_string(),
                    folder: folder.display().to_string(),
                    hint: String::new(),
                })
            }
        })
    };
    match resolved {
        Ok(_) => Ok(()),
        Err(err @ (PathError::Escapes { .. } | PathError::Empty { .. })) => {
            Err(ApiFailure::bad_request(err.to_string()).field(field))
        }
        Err(err @ PathError::NotFound { .. }) => {
            Err(ApiFailure::unprocessable(err.to_string()).field(field))
        }
    }
}

/// An `embedding:name` of a prompt must be a `.safetensors` file of `folder`, matched
/// without regard to case, as the engine matches it.
fn check_embedding(folder: &Path, name: &str, field: String) -> Result<(), ApiFailure> {
    let available = list_model_names(folder);
    let wanted = format!("{name}.safetensors").to_lowercase();
    if available.iter().any(|file| file.to_lowercase() == wanted) {
        return Ok(());
    }
    let hint = if available.is_empty() {
        "the folder holds no .safetensors files".to_string()
    } else {
        format!("available: {}", available.join(", "))
    };
    Err(ApiFailure::unprocessable(format!(
        "embedding {name:?} not found in {} ({hint})",
        folder.display()
    ))
    .field(field))
}

/// Validates one request (fields named under `prefix`) and expands it into `count` jobs.
fn expand_one(
    prefix: &str,
    req: SubmitRequest,
    folders: &Folders,
) -> Result<Vec<NewJob>, ApiFailure> {
    let field = |name: &str| format!("{prefix}{name}");
    req.spec.validate().map_err(|err| {
        ApiFailure::unprocessable(err.to_string()).field(field(&format!("spec.{}", err.field)))
    })?;
    if req.count == 0 {
        return Err(ApiFailure::unprocessable("count 0: expected at least 1").field(field("count")));
    }
    let spec = &req.spec;
    check_name(
        &folders.checkpoints(),
        &spec.model,
        "model",
        field("spec.model"),
        true,
    )?;
    if let Some(vae) = &spec.vae {
        check_name(&folders.vae(), vae, "vae", field("spec.vae"), true)?;
    }
    if let Some(clip) = &spec.clip {
        check_name(&folders.clip(), clip, "clip", field("spec.clip"), true)?;
    }
    // Validated above, so the list parses; every LoRA must exist now, not fail the job later.
    for lora in spec.requested_loras().unwrap_or_default() {
        check_name(
            &folders.loras(),
            &lora.name,
            "lora",
            field("spec.loras"),
            true,
        )?;
    }
    for (name, text) in [
        ("spec.prompt", &spec.prompt),
        ("spec.negative", &spec.negative),
    ] {
        for embedding in imagelab_core::embedding::explicit_names(text) {
            check_embedding(&folders.embeddings(), &embedding, field(name))?;
        }
    }
    if let Some(image) = &spec.init_image {
        // A job's init image is a previous output: the daemon reads no other user files.
        check_name(
            &folders.output,
            image,
            "init image",
            field("spec.init_image"),
            false,
        )?;
    }
    let placement = match &req.gpu {
        None => Placement::Any,
        Some(gpu) if gpu.trim().is_empty() => {
            return Err(
                ApiFailure::unprocessable("gpu is empty: give a GPU UUID or leave it out")
                    .field(field("gpu")),
            );
        }
        Some(gpu) => Placement::Gpu(gpu.trim().to_string()),
    };
    let mut jobs = Vec::with_capacity(req.count as usize);
    for k in 0..req.count {
        let mut params = req.spec.clone();
        params.seed = if req.spec.seed < 0 {
            random_seed()
        } else {
            req.spec.seed.checked_add(i64::from(k)).ok_or_else(|| {
                ApiFailure::unprocessable(format!(
                    "seed {} + count {} overflows",
                    req.spec.seed, req.count
                ))
                .field(field("spec.seed"))
            })?
        };
        jobs.push(NewJob {
            spec: JobSpec {
                params,
                style: req.style.clone(),
                ..JobSpec::default()
            },
            priority: priority_to_queue(req.priority),
            source: source_to_queue(req.source),
            placement: placement.clone(),
            max_attempts: None,
        });
    }
    Ok(jobs)
}

/// Every job a submission body asks for, or the first problem with it.
pub fn expand_submission(
    body: serde_json::Value,
    folders: &Folders,
) -> Result<Vec<NewJob>, ApiFailure> {
    let requests = decode_submission(body)?;
    // The limit is checked before any expansion, so a count of 4 billion costs nothing.
    let too_many = |field: String| {
        ApiFailure::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("too many jobs in one submission: at most {MAX_JOBS_PER_SUBMIT}"),
        )
        .field(field)
    };
    let mut total: u64 = 0;
    for (prefix, req) in &requests {
        if req.count > MAX_JOBS_PER_SUBMIT {
            return Err(too_many(format!("{prefix}count")));
        }
        total += u64::from(req.count);
    }
    if total > u64::from(MAX_JOBS_PER_SUBMIT) {
        return Err(too_many("jobs".to_string()));
    }
    let mut jobs = Vec::new();
    for (prefix, req) in requests {
        jobs.extend(expand_one(&prefix, req, folders)?);
    }
    Ok(jobs)
}
