//! Starting a daemon when none answers: which program (the `imagelab` beside the app,
//! else the one on `PATH`), with which workers (the config's GPUs, or one CPU worker when
//! the machine has no NVIDIA GPU), and what the app tells the user about it.

use std::path::{Path, PathBuf};

/// The `imagelab` program: beside `app_exe` when it is there (an installed or built
/// tree), else the bare name, which the OS looks up on `PATH`.
pub fn daemon_program(app_exe: Option<&Path>) -> PathBuf {
    let beside = app_exe
        .and_then(|exe| exe.parent())
        .map(|dir| dir.join("imagelab"))
        .filter(|candidate| candidate.is_file());
    beside.unwrap_or_else(|| PathBuf::from("imagelab"))
}

/// The daemon's arguments. With GPUs it plans its workers itself from `config.yaml`
/// (`workers:`, else one per selected GPU); without any it gets one CPU worker.
pub fn daemon_args(gpu_count: usize) -> Vec<String> {
    if gpu_count == 0 {
        vec!["daemon".into(), "--worker".into(), "cpu".into()]
    } else {
        vec!["daemon".into()]
    }
}

/// What the status line says about the daemon the app is using.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonOrigin {
    /// One that was running already; it keeps running when the app closes.
    Found,
    /// One the app started; it stops with the app.
    Started { cpu_only: bool },
}

impl DaemonOrigin {
    pub fn notice(&self) -> Option<&'static str> {
        match self {
            DaemonOrigin::Started { cpu_only: true } => Some(
                "No NVIDIA GPU was found: images are made on the CPU, which is slow \
                 (minutes per image at full size).",
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_beside_the_app_wins_over_path() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("imagelab-gui");
        assert_eq!(daemon_program(Some(&app)), PathBuf::from("imagelab"));
        std::fs::write(dir.path().join("imagelab"), b"").unwrap();
        assert_eq!(daemon_program(Some(&app)), dir.path().join("imagelab"));
        assert_eq!(daemon_program(None), PathBuf::from("imagelab"));
    }

    #[test]
    fn without_gpus_the_daemon_gets_a_cpu_worker_and_the_user_is_told() {
        assert_eq!(daemon_args(0), ["daemon", "--worker", "cpu"]);
        assert_eq!(daemon_args(2), ["daemon"]);
        assert!(DaemonOrigin::Started { cpu_only: true }
            .notice()
            .unwrap()
            .contains("CPU"));
        assert_eq!(DaemonOrigin::Found.notice(), None);
    }
}
