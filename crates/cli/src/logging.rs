//! Per-instance log files: every run writes `<settings>/logs/<command>-<instance>.log`, where
//! the instance id is `$INSTANCE_ID` or made from the time and PID, so concurrent runs
//! (cron, containers, workers) never interleave their logs.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// The id that names this run's log file.
pub fn instance_id() -> String {
    if let Ok(id) = std::env::var("INSTANCE_ID") {
        let clean: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if !clean.is_empty() {
            return clean;
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]"
        ))
        .unwrap_or_else(|_| "now".into());
    format!("{stamp}-{}", std::process::id())
}

/// Starts logging to the instance's file and returns its path.
pub fn init(command: &str) -> Result<PathBuf> {
    let dir = imagelab_core::config::settings_dir().join("logs");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create log folder {}", dir.display()))?;
    let path = dir.join(format!("{command}-{}.log", instance_id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .build();
    // A second init in one process (tests) is harmless; keep the first logger.
    let _ = simplelog::WriteLogger::init(log::LevelFilter::Info, config, file);
    Ok(path)
}
