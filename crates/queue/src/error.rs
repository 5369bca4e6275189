//! The queue's errors: each names the job (or the file) it is about, so a log line or an
//! HTTP 4xx answer says what went wrong with what.

use crate::job::JobId;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job {id} not found")]
    NotFound { id: JobId },

    /// The job's state does not allow this operation (completing a queued job, cancelling a
    /// finished one, …).
    #[error("job {id}: cannot {action} a job that is {state}")]
    IllegalTransition {
        id: JobId,
        action: &'static str,
        state: &'static str,
    },

    /// A worker reported on a lease the job no longer holds: the job was recovered after a
    /// restart or re-leased, so the report is from an attempt that no longer counts.
    #[error(
        "job {id}: report for attempt {reported}, but the job's current lease is attempt {current}"
    )]
    StaleLease {
        id: JobId,
        reported: u32,
        current: u32,
    },

    #[error("job spec refused: {0}")]
    InvalidSpec(String),

    /// A stored job record that does not decode (written by an incompatible version).
    #[error("job {id}: stored record is unreadable: {source}")]
    Corrupt {
        id: JobId,
        #[source]
        source: serde_json::Error,
    },

    /// The database under `jobs/` failed; `what` says which operation (and job, if any).
    #[error("queue database {path}: {what}: {source}")]
    Storage {
        path: PathBuf,
        what: String,
        #[source]
        source: sled::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
