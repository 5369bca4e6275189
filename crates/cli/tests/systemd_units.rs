//! The systemd units in `systemd/` (system) and `systemd/user/`: `systemd-analyze verify`
//! accepts them with ExecStart pointed at the built binary, and they carry the settings the
//! daemon's notify, watchdog and shutdown behaviour depend on.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INSTALLED: &str = "/usr/local/bin/imagelab";
const UNITS: [&str; 3] = [
    "imagelab-daemon.service",
    "imagelab-night.service",
    "imagelab-night.timer",
];

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../systemd")
}

fn systemd_analyze() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("systemd-analyze"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "systemd-analyze is not installed: run scripts/setup.sh (it installs the Debian \
             package `systemd`, which provides it)"
        )
    })
}

/// A unit file's settings in order: (section, key, value).
type Unit = Vec<(String, String, String)>;

/// Comments and blank lines dropped; repeated keys (Environment=) all kept.
fn settings(text: &str) -> Unit {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((section.clone(), key.trim().into(), value.trim().into()));
        }
    }
    out
}

fn read(rel: &str) -> Unit {
    let path = systemd_dir().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    settings(&text)
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn require(file: &str, unit: &Unit, section: &str, key: &str, want: &str) {
    let got = values(unit, section, key);
    assert!(
        got.contains(&want),
        "{file}: [{section}] {key}={want} is missing (found {got:?})"
    );
}

/// Copies the units into `dir` with ExecStart pointed at the binary this build made, so
/// verify's "is the command executable" check looks at something that exists here.
fn staged(sub: &str, dir: &Path) -> Vec<PathBuf> {
    let binary = env!("CARGO_BIN_EXE_imagelab");
    UNITS
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(systemd_dir().join(sub).join(name)).unwrap();
            assert!(
                !name.ends_with(".service") || text.contains(INSTALLED),
                "{sub}/{name}: ExecStart does not run {INSTALLED}"
            );
            let path = dir.join(name);
            std::fs::write(&path, text.replace(INSTALLED, binary)).unwrap();
            path
        })
        .collect()
}

fn verify(mut cmd: Command, files: &[PathBuf]) -> Output {
    cmd.arg("verify")
        .arg("--man=no")
        .args(files)
        .output()
        .unwrap()
}

/// Fails on a non-zero exit or on any complaint naming one of the units (an unknown key or
/// a bad value is only a warning line, with exit status 0).
fn assert_verified(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| UNITS.iter().any(|unit| line.contains(unit)))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify ({what}) refused the units: {}\n{stderr}",
        out.status
    );
}

#[test]
fn system_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let files = staged("", dir.path());
    // User=imagelab stays: verify does not require the account to exist.
    let out = verify(Command::new(systemd_analyze()), &files);
    assert_verified(&out, "system");
}

#[test]
fn user_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let files = staged("user", dir.path());
    // The user manager wants $XDG_RUNTIME_DIR; a private one stands in for the login
    // session that test machines and containers lack.
    let runtime = tempfile::tempdir().unwrap();
    let mut user = Command::new(systemd_analyze());
    user.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
    let out = verify(user, &files);
    if String::from_utf8_lossy(&out.stderr).contains("Failed to initialize manager") {
        // Some containers cannot start even a verify-only user manager. The user units use
        // only settings a system manager accepts too (no User=; %h expands there as well),
        // so system mode still catches every typo and bad value.
        eprintln!("no user manager here: verifying the user units in system mode");
        let out = verify(Command::new(systemd_analyze()), &files);
        assert_verified(&out, "user units, in system mode");
    } else {
        assert_verified(&out, "user");
    }
}

#[test]
fn the_daemon_units_are_notify_services_that_stop_their_workers_gracefully() {
    for file in ["imagelab-daemon.service", "user/imagelab-daemon.service"] {
        let unit = read(file);
        for (key, want) in [
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            ("WatchdogSec", "60"),
            ("KillMode", "mixed"),
            ("TimeoutStopSec", "30"),
            ("Restart", "on-failure"),
            ("ExecStart", "/usr/local/bin/imagelab daemon"),
            ("Environment", "CUDA_DEVICE_ORDER=PCI_BUS_ID"),
        ] {
            require(file, &unit, "Service", key, want);
        }
        // Each would cut the workers off from the GPUs or the CUDA JIT.
        for banned in ["PrivateDevices", "MemoryDenyWriteExecute", "ProtectClock"] {
            assert!(
                values(&unit, "Service", banned).is_empty(),
                "{file}: {banned}= breaks CUDA"
            );
        }
        let policy = values(&unit, "Service", "DevicePolicy");
        assert!(
            policy.iter().all(|p| *p == "auto"),
            "{file}: DevicePolicy={policy:?} hides the GPUs"
        );
    }
    let file = "imagelab-daemon.service";
    let unit = read(file);
    require(file, &unit, "Service", "User", "imagelab");
    require(file, &unit, "Service", "StateDirectory", "imagelab");
    require(
        file,
        &unit,
        "Service",
        "WorkingDirectory",
        "/var/lib/imagelab",
    );
    for env in [
        "AIIMAGEGEN_HOME=/var/lib/imagelab",
        "IMAGELAB_APP_DIR=/var/lib/imagelab",
    ] {
        require(file, &unit, "Service", "Environment", env);
    }
}

#[test]
fn the_night_run_is_a_oneshot_on_a_persistent_timer_after_the_daemon() {
    for sub in ["", "user/"] {
        let file = format!("{sub}imagelab-night.service");
        let unit = read(&file);
        require(&file, &unit, "Service", "Type", "oneshot");
        require(
            &file,
            &unit,
            "Service",
            "ExecStart",
            "/usr/local/bin/imagelab night start",
        );
        require(&file, &unit, "Unit", "Requires", "imagelab-daemon.service");
        require(&file, &unit, "Unit", "After", "imagelab-daemon.service");

        let file = format!("{sub}imagelab-night.timer");
        let unit = read(&file);
        require(&file, &unit, "Timer", "OnCalendar", "*-*-* 22:00:00");
        require(&file, &unit, "Timer", "Persistent", "true");
        require(&file, &unit, "Timer", "Unit", "imagelab-night.service");
        require(&file, &unit, "Install", "WantedBy", "timers.target");
    }
}
