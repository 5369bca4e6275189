//! The HTTP routes: jobs (submit, list, get, cancel), the queue (pause, resume, status),
//! health, the OpenAPI description (`openapi.yaml`) and the event stream; submit, cancel,
//! pause and resume publish their events.
//! Queue calls block on a disk flush, so they run on actix's blocking pool.

use crate::auth::{require_token, Token};
use crate::convert::{job_view, queue_status};
use crate::error::ApiFailure;
use crate::files;
use crate::submit::expand_submission;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use imagelab_core::api::{
    Health, JobView, ListQuery, QueueStatus, SubmitResponse, DEFAULT_LIST_LIMIT, JOB_STATES,
    MAX_LIST_LIMIT, PROTOCOL_VERSION,
};
use imagelab_core::events::DaemonEvent;
use imagelab_core::Folders;
use imagelab_queue::{JobId, Queue};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body accepted: a batch of [`imagelab_core::api::MAX_JOBS_PER_SUBMIT`]
/// jobs with long prompts fits comfortably.
const MAX_BODY_BYTES: usize = 4 << 20;

/// What every handler shares.
pub struct AppState {
    pub queue: Arc<Queue>,
    /// Job, progress and worker events for `GET /v1/events`.
    pub events: crate::EventBus,
    /// Absent when the daemon runs no workers (jobs only queue up).
    pub supervisor: Option<crate::supervisor::SupervisorLink>,
    pub folders: Folders,
    /// The overnight runner (`/v1/night`).
    pub night: actix::Addr<crate::night::PromptGenerator>,
    /// The daemon's and its workers' log files (`GET /v1/jobs/{id}/log`).
    pub log_dir: std::path::PathBuf,
}

impl AppState {
    /// The API's view of a job, with its Slurm state when Slurm runs it (a job Slurm keeps
    /// pending is `queued` to the user, as it is still waiting for a GPU).
    pub fn job_view(&self, job: imagelab_queue::Job) -> JobView {
        with_slurm(job_view(job), &self.slurm_jobs())
    }

    /// Our jobs' Slurm states now (empty without the Slurm backend).
    pub fn slurm_jobs(&self) -> BTreeMap<u64, imagelab_core::events::SlurmJobView> {
        self.supervisor
            .as_ref()
            .map(|s| s.status().slurm_jobs)
            .unwrap_or_default()
    }

    /// New work may be waiting: let the supervisor dispatch now, not at its next poll.
    pub fn kick(&self) {
        if let Some(supervisor) = &self.supervisor {
            supervisor.kick();
        }
    }
}

type Reply<T> = Result<web::Json<T>, ApiFailure>;

/// Mounts every route on an app or scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY_BYTES)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error))
    // Registered before the `/v1` scope so it is reached without a token.
    .route("/v1/health", web::get().to(health))
    // The API's description carries no secrets: public like health.
    .route("/v1/openapi.yaml", web::get().to(openapi))
    .service(
        web::scope("/v1")
            .wrap(from_fn(require_token))
            .route("/jobs", web::post().to(submit))
            .route("/jobs", web::get().to(list))
            .route("/jobs/{id}", web::get().to(get))
            .route("/jobs/{id}/cancel", web::post().to(cancel))
            .route("/jobs/{id}/log", web::get().to(crate::job_log::job_log))
            .route(
                "/jobs/{id}/priority",
                web::post().to(crate::queue_routes::set_priority),
            )
            .route("/queue/clear", web::post().to(crate::queue_routes::clear))
            .route("/queue", web::get().to(status))
            .route("/queue/pause", web::post().to(pause))
            .route("/queue/resume", web::post().to(resume))
            .route("/favorites", web::post().to(crate::favorites::set))
            .route("/favorites", web::get().to(crate::favorites::list))
            .route(
                "/favorites/remove",
                web::post().to(crate::favorites::remove),
            )
            .route("/models", web::get().to(files::models))
            .route("/gpus", web::get().to(crate::workers_routes::gpus))
            .route(
                "/gpus/history",
                web::get().to(crate::workers_routes::gpu_history),
            )
            .route("/workers/load", web::post().to(crate::workers_routes::load))
            .route(
                "/workers/unload",
                web::post().to(crate::workers_routes::unload),
            )
            .route("/events", web::get().to(crate::sse::events))
            .route("/outputs", web::get().to(files::outputs))
            .route("/outputs/{name:.*}", web::get().to(files::output))
            .route("/night", web::post().to(crate::night::routes::start))
            .route("/night", web::get().to(crate::night::routes::status))
            .route("/night/stop", web::post().to(crate::night::routes::stop))
            .default_service(web::to(unknown_route)),
    )
    .default_service(web::to(unknown_route));
}

/// The token as app data for the middleware.
pub fn token_data(token: &str) -> web::Data<Token> {
    web::Data::new(Token(token.to_string()))
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let failure = match &err {
        JsonPayloadError::ContentType => ApiFailure::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiFailure::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body too large: at most {MAX_BODY_BYTES} bytes"),
            )
        }
        // Text that is not JSON, and JSON that does not fit the request type (unknown
        // field, wrong type, unknown variant): both are a bad request here. Submit reads
        // its body as free JSON and answers 422 for values its own validation refuses.
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiFailure::bad_request(format!("invalid request body: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiFailure::bad_request(format!("malformed JSON in the request body: {e}"))
        }
        other => ApiFailure::bad_request(format!("cannot read the request body: {other}")),
    };
    failure.into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiFailure::bad_request(format!("bad query string: {err}")).into()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiFailure::bad_request(format!("bad path: {err}")).into()
}

/// Paths answered without a token (registered before the `/v1` scope).
pub const PUBLIC_PATHS: [&str; 2] = ["/v1/health", "/v1/openapi.yaml"];

/// What no route took: a known path asked with another method is 405 (actix moves a
/// route's method guard onto its resource, so such a request falls through to here);
/// anything else is 404.
async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, ApiFailure> {
    if req.resource_map().has_resource(req.path()) {
        return Err(ApiFailure::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is not allowed on {} (see GET /v1/openapi.yaml)",
                req.method(),
                req.path()
            ),
        ));
    }
    Err(ApiFailure::not_found(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.path()
    )))
}

/// The OpenAPI 3.1 description of this API, as built into the binary.
const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(OPENAPI_YAML)
}

async fn health() -> web::Json<Health> {
    web::Json(Health {
        ok: true,
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// A job id from the path, or a 400 naming `id`.
pub(crate) fn parse_id(text: &str) -> Result<JobId, ApiFailure> {
    text.parse().map_err(|_| {
        ApiFailure::bad_request(format!("job id {text:?} is not a number")).field("id")
    })
}

/// What a submission to a daemon without workers is told (its jobs wait, durably).
pub const NO_WORKER_WARNING: &str = "this daemon runs no worker, so the jobs wait in the queue \
     until one does: restart it with `imagelab daemon --worker cpu` (no NVIDIA GPU) or with \
     the GPUs it should use";

/// A warning for each pinned job that no worker of this daemon may take (none while the
/// workers are not yet known, just after a start).
fn unplaceable(
    jobs: &[imagelab_queue::Job],
    workers: &[imagelab_core::events::WorkerStatus],
) -> Vec<String> {
    if workers.is_empty() {
        return Vec::new();
    }
    jobs.iter()
        .filter(|job| !workers.iter().any(|w| job.placement.accepts(&w.gpus)))
        .map(|job| {
            let owned: Vec<String> = workers
                .iter()
                .map(|w| format!("{} ({})", w.name, w.gpus.join("+")))
                .collect();
            let pinned = match &job.placement {
                imagelab_queue::Placement::Split(unet, rest) => {
                    format!("the GPU pair {unet}+{rest}")
                }
                imagelab_queue::Placement::Gpu(gpu) => format!("GPU {gpu}"),
                imagelab_queue::Placement::Any => "any GPU".to_string(),
            };
            format!(
                "job {} is pinned to {pinned}, which none of this daemon's workers has ({}): it \
                 waits until a worker with that GPU runs",
                job.id,
                owned.join(", ")
            )
        })
        .collect()
}

async fn submit(
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiFailure> {
    let jobs = expand_submission(body.into_inner(), &state.folders)?;
    let queue = state.queue.clone();
    // The queue flushes before returning: the answer is the acknowledgement.
    let created = web::block(move || queue.enqueue_batch(jobs)).await??;
    for job in &created {
        log_submitted(job);
        state.events.publish(job_event(job.id.0, "queued"));
    }
    state.kick();
    let warnings = match &state.supervisor {
        None => vec![NO_WORKER_WARNING.to_string()],
        Some(link) => unplaceable(&created, &link.status().workers),
    };
    Ok(HttpResponse::Created().json(SubmitResponse {
        ids: created.iter().map(|j| j.id.0).collect(),
        seeds: created.iter().map(|j| j.spec.params.seed).collect(),
        warnings,
    }))
}

async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Reply<Vec<JobView>> {
    let ListQuery {
        state: wanted,
        limit,
    } = query.into_inner();
    if let Some(name) = &wanted {
        if !JOB_STATES.contains(&name.as_str()) {
            return Err(ApiFailure::bad_request(format!(
                "unknown state {name:?}: expected one of {}",
                JOB_STATES.join(", ")
            ))
            .field("state"));
        }
    }
    let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiFailure::bad_request(format!(
            "limit {limit}: expected 1 to {MAX_LIST_LIMIT}"
        ))
        .field("limit"));
    }
    let queue = state.queue.clone();
    let jobs = web::block(move || queue.list()).await??;
    let slurm = state.slurm_jobs();
    Ok(web::Json(
        jobs.into_iter()
            .rev()
            .filter(|job| wanted.as_deref().is_none_or(|s| job.state.name() == s))
            .take(limit)
            .map(|job| with_slurm(job_view(job), &slurm))
            .collect(),
    ))
}

async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Reply<JobView> {
    let id = parse_id(&id)?;
    let queue = state.queue.clone();
    Ok(web::Json(
        state.job_view(web::block(move || queue.get(id)).await??),
    ))
}

async fn cancel(state: web::Data<AppState>, id: web::Path<String>) -> Reply<JobView> {
    let id = parse_id(&id)?;
    let queue = state.queue.clone();
    let job = web::block(move || queue.cancel(id)).await??;
    imagelab_logging::job_span!(id.0).in_scope(|| {
        tracing::info!(state = job.state.name(), "cancel requested");
    });
    // A running job was only marked; its worker must be told to stop, and its end is
    // published when the worker stops it.
    if let Some(supervisor) = &state.supervisor {
        supervisor.cancel(id.0);
    }
    let view = state.job_view(job);
    if view.state == "cancelled" {
        state.events.publish(job_event(view.id, "cancelled"));
    }
    Ok(web::Json(view))
}

/// Adds a leased job's Slurm state; a job Slurm keeps pending shows as `queued`.
fn with_slurm(
    mut view: JobView,
    slurm: &BTreeMap<u64, imagelab_core::events::SlurmJobView>,
) -> JobView {
    if view.state == "leased" {
        view.slurm = slurm.get(&view.id).cloned();
        if view.slurm.as_ref().is_some_and(|s| s.state == "PENDING") {
            view.state = "queued".into();
        }
    }
    view
}

pub(crate) fn log_submitted(job: &imagelab_queue::Job) {
    imagelab_logging::job_span!(job.id.0).in_scope(|| {
        tracing::info!(
            model = %job.spec.params.model,
            priority = ?job.priority,
            seed = job.spec.params.seed,
            source = ?job.source,
            "submitted"
        )
    });
}

fn job_event(id: u64, state: &str) -> DaemonEvent {
    DaemonEvent::Job {
        id,
        state: state.to_string(),
        worker: None,
        error: None,
    }
}

fn read_status(queue: &Queue) -> imagelab_queue::Result<QueueStatus> {
    Ok(queue_status(queue.is_paused()?, queue.counts()?))
}

async fn status(state: web::Data<AppState>) -> Reply<QueueStatus> {
    let queue = state.queue.clone();
    Ok(web::Json(web::block(move || read_status(&queue)).await??))
}

async fn pause(state: web::Data<AppState>) -> Reply<QueueStatus> {
    let queue = state.queue.clone();
    let status = web::block(move || {
        queue.pause()?;
        read_status(&queue)
    })
    .await??;
    state.events.publish(DaemonEvent::Queue { paused: true });
    Ok(web::Json(status))
}

async fn resume(state: web::Data<AppState>) -> Reply<QueueStatus> {
    let queue = state.queue.clone();
    let status = web::block(move || {
        queue.resume()?;
        read_status(&queue)
    })
    .await??;
    state.events.publish(DaemonEvent::Queue { paused: false });
    state.kick();
    Ok(web::Json(status))
}
