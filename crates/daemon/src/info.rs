//! `daemon.json` in the settings folder: where clients find the daemon's address and token.
//! Written mode 0600 (the token is a password) under a temporary name and renamed, so a
//! client never reads half a file.

use crate::error::{DaemonError, Result};
use imagelab_core::api::DaemonInfo;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `info` to `<settings_dir>/daemon.json` atomically, readable by the owner only.
pub fn write_daemon_info(settings_dir: &Path, info: &DaemonInfo) -> Result<PathBuf> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::Io { path, source }
    };
    std::fs::create_dir_all(settings_dir).map_err(io(settings_dir))?;
    let path = settings_dir.join(imagelab_core::api::DAEMON_INFO_FILE);
    let tmp = settings_dir.join(format!(".daemon.json.{}.tmp", std::process::id()));
    let text = serde_json::to_vec_pretty(info).map_err(|e| DaemonError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    // A stale temporary file from a crash may have looser permissions: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(&text).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// Removes `daemon.json` if it still describes this daemon (another one may have started
/// on another jobs folder and replaced it since).
pub fn remove_daemon_info(path: &Path, token: &str) {
    let ours = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<DaemonInfo>(&bytes).ok())
        .is_some_and(|info| info.token == token);
    if ours {
        let _ = std::fs::remove_file(path);
    }
}
