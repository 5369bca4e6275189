//! Where this binary's commands log: `<settings>/logs/<command>-<instance>.log` through
//! imagelab-logging, with `IMAGELAB_LOG` / `IMAGELAB_LOG_FORMAT` read here so that a bad
//! value stops the command with a message naming the variable.

use anyhow::Result;
pub use imagelab_logging::Started;

/// How a command logs: the daemon writes its lines to the journal too when systemd runs
/// it; the worker and `generate` time their spans (load, encode, steps, decode, write).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Service,
    Engine,
}

/// Starts logging to the instance's file and returns where it goes.
pub fn init(command: &str, kind: Kind) -> Result<Started> {
    let dir = imagelab_core::config::settings_dir().join("logs");
    let settings = imagelab_logging::LogSettings::from_env()?;
    Ok(imagelab_logging::init(imagelab_logging::Options {
        command,
        dir: &dir,
        span_timings: matches!(kind, Kind::Engine),
        journal: matches!(kind, Kind::Service),
        settings,
    })?)
}
