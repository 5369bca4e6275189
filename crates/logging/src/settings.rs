//! The settings a user gives logging through the environment: `IMAGELAB_LOG` (a filter in
//! `RUST_LOG`'s syntax, `info` when unset) and `IMAGELAB_LOG_FORMAT` (`text` or `json`).
//! A worker inherits them from its daemon, so one setting covers both sides of a job.

use crate::LogError;
use tracing_subscriber::EnvFilter;

/// The filter variable: `IMAGELAB_LOG=imagelab_daemon=debug,info`.
pub const ENV_FILTER: &str = "IMAGELAB_LOG";
/// The format variable: `IMAGELAB_LOG_FORMAT=json` for log shippers.
pub const ENV_FORMAT: &str = "IMAGELAB_LOG_FORMAT";

const DEFAULT_FILTER: &str = "info";

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-03T09:40:01.123456Z  INFO job{id=3 attempt=1}: target: message`.
    Text,
    /// One JSON object per line, with the list of spans a line is in.
    Json,
}

/// The filter and the format, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub filter: String,
    pub format: Format,
}

impl LogSettings {
    /// The settings from the environment; a value that does not parse is an error naming
    /// its variable (rather than a log that silently shows nothing).
    pub fn from_env() -> Result<LogSettings, LogError> {
        let filter = std::env::var(ENV_FILTER).ok();
        let format = std::env::var(ENV_FORMAT).ok();
        LogSettings::parse(filter.as_deref(), format.as_deref())
    }

    /// The settings from the two variables' values.
    pub fn parse(filter: Option<&str>, format: Option<&str>) -> Result<LogSettings, LogError> {
        let filter = match filter.map(str::trim) {
            None | Some("") => DEFAULT_FILTER.to_string(),
            Some(value) => value.to_string(),
        };
        EnvFilter::try_new(&filter).map_err(|e| LogError::Filter {
            variable: ENV_FILTER,
            value: filter.clone(),
            reason: e.to_string(),
        })?;
        let format = match format.map(|f| f.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some(_) => {
                return Err(LogError::Format {
                    variable: ENV_FORMAT,
                    value: format.unwrap_or_default().to_string(),
                })
            }
        };
        Ok(LogSettings { filter, format })
    }

    pub(crate) fn env_filter(&self) -> EnvFilter {
        // Checked in `parse`; a filter that fails now falls back to the default.
        EnvFilter::try_new(&self.filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_means_info_as_text() {
        let settings = LogSettings::parse(None, None).unwrap();
        assert_eq!(settings.filter, "info");
        assert_eq!(settings.format, Format::Text);
        let blank = LogSettings::parse(Some(" "), Some("")).unwrap();
        assert_eq!(blank, settings);
    }

    #[test]
    fn a_filter_and_json_are_taken() {
        let settings =
            LogSettings::parse(Some("warn,imagelab_daemon=debug"), Some("JSON")).unwrap();
        assert_eq!(settings.filter, "warn,imagelab_daemon=debug");
        assert_eq!(settings.format, Format::Json);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = LogSettings::parse(Some("imagelab_daemon=loud"), None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("IMAGELAB_LOG=\"imagelab_daemon=loud\""),
            "{text}"
        );
        let err = LogSettings::parse(None, Some("xml")).unwrap_err();
        assert!(
            err.to_string().contains("IMAGELAB_LOG_FORMAT=\"xml\""),
            "{err}"
        );
    }
}
