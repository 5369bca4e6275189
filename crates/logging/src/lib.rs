//! Logging for every imagelab process: a per-instance file written by `tracing-subscriber`
//! (text or JSON, filtered like `RUST_LOG` by `IMAGELAB_LOG`), the journal when systemd
//! runs us as a service, panics logged inside the span they happened in, and the lines of
//! one job read back from the daemon's and the workers' files ([`read`]).
//!
//! A job's lines are those inside a span named [`JOB_SPAN`] with its `id` (and `attempt`):
//! the daemon opens one for each thing it does with a job, and the worker opens one around
//! the job it was sent, with the id and attempt that came with it over the pipe.

mod journal;
pub mod read;
mod settings;
mod setup;

pub use settings::{Format, LogSettings, ENV_FILTER, ENV_FORMAT};
pub use setup::{init, Options, Started};
#[doc(hidden)]
pub use tracing;

/// The span every line about a job is written in; its fields are `id` and `attempt`.
pub const JOB_SPAN: &str = "job";

/// What can go wrong setting up logging; each names the variable or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{variable}={value:?} is not a valid log filter: {reason} (example: {variable}=info,imagelab_daemon=debug)")]
    Filter {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error("{variable}={value:?} is not a log format: use text or json")]
    Format {
        variable: &'static str,
        value: String,
    },
    #[error("cannot create log folder {path}: {source}")]
    Folder {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open log file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A span for one job: `attempt` is the attempt a line belongs to, or none for what
/// happens outside an attempt (submit, cancel, priority).
#[macro_export]
macro_rules! job_span {
    ($id:expr) => {
        $crate::tracing::info_span!("job", id = $id)
    };
    ($id:expr, $attempt:expr) => {
        $crate::tracing::info_span!("job", id = $id, attempt = $attempt)
    };
}
