//! A real `imagelab daemon` process in a sandbox for the CLI tests, killed when the test
//! ends however it ends, and the small helpers those tests share for running commands.

use super::Sandbox;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `imagelab daemon EXTRA…` in `sb`, returned once it has written `daemon.json`.
pub fn start_daemon(sb: &Sandbox, extra: &[&str]) -> Running {
    start_daemon_with(sb, extra, &[])
}

/// [`start_daemon`] with more environment variables; a `daemon.json` left by a killed
/// daemon is removed first, so the wait is for the new one's.
pub fn start_daemon_with(sb: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Running {
    std::fs::create_dir_all(sb.path("jobs")).unwrap();
    let _ = std::fs::remove_file(sb.path("home/daemon.json"));
    let mut command = sb.imagelab();
    command.arg("daemon").args(extra);
    for (key, value) in env {
        command.env(key, value);
    }
    let daemon = Running(command.stderr(Stdio::null()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sb.path("home/daemon.json").exists() {
        assert!(Instant::now() < deadline, "daemon.json never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// `imagelab ARGS` in `sb`, waited for.
pub fn imagelab(sb: &Sandbox, args: &[&str]) -> Output {
    sb.imagelab().args(args).output().unwrap()
}

/// The stdout of a command that must have succeeded (its stderr otherwise).
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Submits one 64×64 job of `steps` steps on the tiny checkpoint; returns its id.
pub fn submit_tiny(sb: &Sandbox, steps: &str) -> u64 {
    let args = [
        "submit", "--model", "tiny", "--prompt", "a fox", "--width", "64", "--height", "64",
        "--seed", "3", "--steps", steps,
    ];
    stdout(&imagelab(sb, &args)).trim().parse().unwrap()
}
