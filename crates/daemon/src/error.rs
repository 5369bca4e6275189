//! The daemon's errors: [`DaemonError`] for starting and stopping, [`ApiFailure`] for one
//! request. Every failed request answers with a JSON [`ApiError`] naming the field it is
//! about, never actix's plain-text pages.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use imagelab_core::api::ApiError;
use imagelab_queue::QueueError;
use std::fmt;
use std::path::PathBuf;

/// Why the daemon could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The queue would not open; most often another daemon holds the same `jobs/` folder.
    #[error(
        "cannot open the job queue in {jobs_dir} (is another daemon running on it?): {source}"
    )]
    Queue {
        jobs_dir: PathBuf,
        #[source]
        source: QueueError,
    },
    #[error("recovering jobs interrupted by the last stop: {0}")]
    Recovery(#[source] QueueError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The server thread ended with an error or panicked.
    #[error("the HTTP server stopped with an error: {0}")]
    Server(String),
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

/// A request that failed: the HTTP status and the JSON body to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub body: ApiError,
}

impl ApiFailure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiFailure {
            status,
            body: ApiError {
                error: message.into(),
                field: None,
            },
        }
    }

    /// The same failure, naming the request field it is about.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiFailure::new(StatusCode::BAD_REQUEST, message)
    }

    /// Well-formed JSON whose content cannot be accepted.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiFailure::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiFailure::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body.field {
            Some(field) => write!(f, "{} ({field}): {}", self.status, self.body.error),
            None => write!(f, "{}: {}", self.status, self.body.error),
        }
    }
}

impl ResponseError for ApiFailure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!("{self}");
        }
        HttpResponse::build(self.status).json(&self.body)
    }
}

impl From<QueueError> for ApiFailure {
    fn from(err: QueueError) -> Self {
        match &err {
            QueueError::NotFound { .. } => ApiFailure::not_found(err.to_string()).field("id"),
            QueueError::IllegalTransition { .. } | QueueError::StaleLease { .. } => {
                ApiFailure::new(StatusCode::CONFLICT, err.to_string())
            }
            QueueError::InvalidSpec(_) => ApiFailure::unprocessable(err.to_string()),
            QueueError::Corrupt { .. } | QueueError::Storage { .. } | QueueError::Io { .. } => {
                ApiFailure::internal(err.to_string())
            }
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiFailure {
    fn from(err: actix_web::error::BlockingError) -> Self {
        ApiFailure::internal(format!("the daemon's worker pool failed: {err}"))
    }
}
