//! The GPU and worker routes: `GET /v1/gpus/history` (the last ten minutes of samples),
//! `GET /v1/gpus` (the GPUs, the policy's verdicts, each
//! worker's state, loaded models and per-component VRAM) and the GUI's "load model" and
//! "clear model" buttons, `POST /v1/workers/load` and `/v1/workers/unload`.

use crate::error::ApiFailure;
use crate::routes::AppState;
use crate::supervisor::ModelCommand;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use imagelab_core::events::{GpuHistoryView, GpuStatusView, ModelRequest};
use imagelab_core::paths::resolve_model_file;

pub async fn gpus(state: web::Data<AppState>) -> web::Json<GpuStatusView> {
    web::Json(
        state
            .supervisor
            .as_ref()
            .map(|s| s.status())
            .unwrap_or_default(),
    )
}

/// `GET /v1/gpus/history`: each GPU's last ten minutes of samples.
pub async fn gpu_history(state: web::Data<AppState>) -> web::Json<GpuHistoryView> {
    web::Json(
        state
            .supervisor
            .as_ref()
            .map(|s| s.history())
            .unwrap_or_default(),
    )
}

pub async fn load(
    state: web::Data<AppState>,
    body: web::Json<ModelRequest>,
) -> Result<HttpResponse, ApiFailure> {
    model_command(state, body.into_inner(), true).await
}

pub async fn unload(
    state: web::Data<AppState>,
    body: web::Json<ModelRequest>,
) -> Result<HttpResponse, ApiFailure> {
    model_command(state, body.into_inner(), false).await
}

async fn model_command(
    state: web::Data<AppState>,
    request: ModelRequest,
    load: bool,
) -> Result<HttpResponse, ApiFailure> {
    if let Some(model) = &request.model {
        // Only names inside their model folders reach a worker.
        resolve_model_file(&state.folders.checkpoints(), model, "model", false)
            .map_err(|e| ApiFailure::bad_request(e.to_string()).field("model"))?;
        let replacements = [
            (&request.vae, state.folders.vae(), "vae"),
            (&request.clip, state.folders.clip(), "clip"),
        ];
        for (name, folder, what) in replacements {
            if let Some(name) = name {
                resolve_model_file(&folder, name, what, false)
                    .map_err(|e| ApiFailure::bad_request(e.to_string()).field(what))?;
            }
        }
    } else if load {
        return Err(
            ApiFailure::bad_request("which model to load? `model` is required").field("model"),
        );
    }
    let Some(supervisor) = &state.supervisor else {
        return Err(ApiFailure::new(
            StatusCode::CONFLICT,
            "the daemon runs no workers (start it with --worker)",
        ));
    };
    let answer = supervisor
        .addr
        .send(ModelCommand {
            load,
            worker: request.worker.clone(),
            model: request.model,
            vae: request.vae,
            clip: request.clip,
        })
        .await
        .map_err(|e| {
            ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the supervisor is not running: {e}"),
            )
        })?;
    match answer {
        // Accepted: the worker acts when it is free; watch the event stream for the result.
        Ok(workers) => Ok(HttpResponse::Accepted().json(workers)),
        Err(message) if message.starts_with("unknown worker") => {
            Err(ApiFailure::not_found(message).field("worker"))
        }
        Err(message) => Err(ApiFailure::new(StatusCode::CONFLICT, message)),
    }
}
