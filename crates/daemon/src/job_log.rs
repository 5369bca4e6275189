//! `GET /v1/jobs/{id}/log`: a job's story across processes, the lines the daemon and its
//! workers wrote in the job's span, read back from the log files and merged in time order.

use crate::error::ApiFailure;
use crate::routes::AppState;
use actix_web::web;
use imagelab_core::api::{JobLog, JobLogLine};
use std::time::{Duration, SystemTime};

/// Files are skipped when last written this long before the job was submitted (a margin
/// for file systems whose modification times are coarse).
const MTIME_SLACK: Duration = Duration::from_secs(5);

pub async fn job_log(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<JobLog>, ApiFailure> {
    let id = crate::routes::parse_id(&id)?;
    let queue = state.queue.clone();
    let job = web::block(move || queue.get(id)).await??;
    let since = SystemTime::UNIX_EPOCH + Duration::from_millis(job.created_at_ms);
    let since = since
        .checked_sub(MTIME_SLACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let dir = state.log_dir.clone();
    let read = web::block(move || imagelab_logging::read::job_lines(&dir, id.0, since)).await?;
    let lines = read.map_err(|e| {
        ApiFailure::internal(format!(
            "cannot read the log files in {}: {e}",
            state.log_dir.display()
        ))
    })?;
    Ok(web::Json(JobLog {
        id: id.0,
        lines: lines
            .into_iter()
            .map(|line| JobLogLine {
                source: line.source.name().to_string(),
                file: line.file,
                text: line.text,
            })
            .collect(),
    }))
}
