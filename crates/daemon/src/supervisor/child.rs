//! One `imagelab worker` child process: how it is started (its devices, its log file) and
//! the thread that reads its stdout and hands each event to its actor.

use super::WorkerSpec;
use imagelab_core::worker::{WorkerCommand, WorkerEvent};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// What the reader thread reports; `start` tells a restarted child's lines from a dead
/// one's.
pub(super) enum ChildReport {
    Event(WorkerEvent),
    /// A line that is not an event (a bug in the child, or stray output).
    Garbage(String),
    /// stdout closed: the child exited or was killed.
    Gone,
}

/// A running child and the pipe its commands go into.
pub(super) struct ChildProcess {
    child: Child,
    stdin: ChildStdin,
}

impl ChildProcess {
    /// Starts `program worker` for `spec`; `report` receives every line it prints.
    pub(super) fn spawn(
        program: &Path,
        spec: &WorkerSpec,
        instance_id: &str,
        report: impl Fn(ChildReport) + Send + 'static,
    ) -> std::io::Result<ChildProcess> {
        let mut command = Command::new(program);
        command
            .arg("worker")
            .arg("--device")
            .arg(&spec.device)
            .args(&spec.args)
            // CUDA numbers devices by PCI bus like NVML does, so indices agree everywhere.
            .env("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            // The worker's own log file: worker-<daemon instance>-<worker>-<start>.log.
            .env("INSTANCE_ID", instance_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(visible) = &spec.cuda_visible_devices {
            command.env("CUDA_VISIBLE_DEVICES", visible);
        }
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("the child's pipes were not created"));
        };
        std::thread::Builder::new()
            .name(format!("worker-{}-stdout", spec.name))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<WorkerEvent>(&line) {
                        Ok(event) => report(ChildReport::Event(event)),
                        Err(_) => report(ChildReport::Garbage(line)),
                    }
                }
                report(ChildReport::Gone);
            })?;
        Ok(ChildProcess { child, stdin })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one command line; an error means the child is gone.
    pub(super) fn send(&mut self, command: &WorkerCommand) -> std::io::Result<()> {
        let line = serde_json::to_string(command).map_err(std::io::Error::other)?;
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()
    }

    /// Kills the child and reaps it (so no zombie is left behind).
    pub(super) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
