//! Queue housekeeping routes: `POST /v1/jobs/{id}/priority` (reprioritise a queued or
//! running job) and `POST /v1/queue/clear` (drop finished jobs from the queue; `jobs.log`
//! keeps them).

use crate::convert::priority_to_queue;
use crate::error::ApiFailure;
use crate::routes::AppState;
use actix_web::web;
use imagelab_core::api::{ClearResponse, JobView, PriorityRequest};

pub async fn set_priority(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<PriorityRequest>,
) -> Result<web::Json<JobView>, ApiFailure> {
    let id = crate::routes::parse_id(&id)?;
    let priority = priority_to_queue(body.priority);
    let queue = state.queue.clone();
    let job = web::block(move || queue.reprioritise(id, priority)).await??;
    imagelab_logging::job_span!(id.0).in_scope(|| tracing::info!(?priority, "priority changed"));
    // A job that moved up may now be the next one for a free worker.
    state.kick();
    Ok(web::Json(state.job_view(job)))
}

pub async fn clear(state: web::Data<AppState>) -> Result<web::Json<ClearResponse>, ApiFailure> {
    let queue = state.queue.clone();
    let removed = web::block(move || queue.clear_finished()).await??;
    Ok(web::Json(ClearResponse { removed }))
}
