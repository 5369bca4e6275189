//! The analytics error type: every variant names the file it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("invalid {field} {value:?}: {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: String,
    },
}

impl AnalyticsError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AnalyticsError + '_ {
        move |source| AnalyticsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = AnalyticsError> = std::result::Result<T, E>;
