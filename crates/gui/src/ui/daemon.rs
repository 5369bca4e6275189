//! Finding the daemon, or starting one: the child the app started is stopped (SIGTERM,
//! then a kill) when the app closes, and also if the app dies first (the parent-death
//! signal); a daemon the app found is left running.

use crate::state::launch::{daemon_args, daemon_program, DaemonOrigin};
use imagelab_client::Client;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a started daemon gets to answer its health check (it opens the queue and
/// starts its workers first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon answering from `settings_dir/daemon.json`, if one does.
pub fn find(settings_dir: &Path) -> Option<Client> {
    let client = Client::from_daemon_json(settings_dir).ok()?;
    client.health().ok().map(|_| client)
}

/// The niceness of a CPU-only daemon the app starts (and of its workers).
const CPU_DAEMON_NICE: i32 = 10;

/// A daemon process the app started.
#[derive(Debug)]
pub struct DaemonChild {
    child: Arc<Mutex<Child>>,
}

impl DaemonChild {
    /// Starts `imagelab daemon`. Runs on the main thread on purpose: the parent-death
    /// signal follows the thread that forked, and the main thread lives as long as the app.
    pub fn spawn(gpu_count: usize) -> Result<DaemonChild, String> {
        let program = daemon_program(std::env::current_exe().ok().as_deref());
        let mut command = Command::new(&program);
        command
            .args(daemon_args(gpu_count))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A CPU daemon's worker would take every core from the window that shows its
        // progress: it runs at a lower priority (its workers inherit it), as a background
        // build would. A GPU daemon's host threads are light and keep the normal one.
        let nice = if gpu_count == 0 { CPU_DAEMON_NICE } else { 0 };
        // SAFETY: prctl and setpriority are async-signal-safe and touch only the child
        // being created.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if nice != 0 {
                    libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {} daemon: {e}", program.display()))?;
        Ok(DaemonChild {
            child: Arc::new(Mutex::new(child)),
        })
    }

    /// A check another thread can make: how the daemon ended, if it has.
    pub fn exit_check(&self) -> impl Fn() -> Option<String> + Send + 'static {
        let child = Arc::clone(&self.child);
        move || {
            let mut child = child.lock().ok()?;
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| status.to_string())
        }
    }

    /// Stops the daemon: SIGTERM (it finishes cleanly and stops its workers), then a kill
    /// after five seconds.
    pub fn stop(&mut self) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: kill on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits off the main thread until the started daemon answers. `exited` tells whether it
/// has died meanwhile (so a broken daemon is reported at once, not after the timeout).
pub fn wait_until_up(
    settings_dir: PathBuf,
    exited: impl Fn() -> Option<String>,
) -> Result<Client, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(client) = find(&settings_dir) {
            return Ok(client);
        }
        if let Some(status) = exited() {
            return Err(format!(
                "the daemon stopped at start ({status}); its log is in {}",
                settings_dir.join("logs").display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the daemon did not answer within {} s; its log is in {}",
                START_TIMEOUT.as_secs(),
                settings_dir.join("logs").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the app is connected to.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: Arc<Client>,
    pub origin: DaemonOrigin,
}
