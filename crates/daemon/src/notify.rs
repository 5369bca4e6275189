//! systemd service notifications (the sd_notify protocol): `READY=1` once the daemon serves,
//! `WATCHDOG=1` keep-alives, a `STATUS=` line with the queue depth, and `STOPPING=1`.
//!
//! Written over a plain `UnixDatagram` rather than the `sd-notify` crate because that crate
//! reads the socket only from the process environment, and tests must point the daemon at
//! a socket of their own without mutating the environment of a multi-threaded process.

use imagelab_queue::{Counts, Queue};
use std::ffi::OsString;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the `STATUS=` line is refreshed unless a test asks for another pace.
pub const DEFAULT_STATUS_EVERY: Duration = Duration::from_secs(5);

const ENV_SOCKET: &str = "NOTIFY_SOCKET";
const ENV_WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const ENV_WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Where and how often to tell the service manager about the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// The datagram socket: a path, or `@name` for a Linux abstract socket (as systemd
    /// writes `NOTIFY_SOCKET`).
    pub socket: PathBuf,
    /// The unit's `WatchdogSec=`; `WATCHDOG=1` goes out every half of it. `None`: no pings.
    pub watchdog: Option<Duration>,
    /// How often the `STATUS=` line is refreshed.
    pub status_every: Duration,
}

impl NotifyConfig {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; `None` when not started by
    /// a service manager that listens.
    pub fn from_env() -> Option<NotifyConfig> {
        Self::from_vars(
            std::env::var_os(ENV_SOCKET),
            std::env::var(ENV_WATCHDOG_USEC).ok(),
            std::env::var(ENV_WATCHDOG_PID).ok(),
            std::process::id(),
        )
    }

    /// Like [`NotifyConfig::from_env`], then removes the variables so that child processes
    /// (the workers) do not inherit them and mistake themselves for the service. Call it
    /// before any other thread starts: changing the environment is not thread-safe.
    pub fn take_from_env() -> Option<NotifyConfig> {
        let config = Self::from_env();
        for name in [ENV_SOCKET, ENV_WATCHDOG_USEC, ENV_WATCHDOG_PID] {
            std::env::remove_var(name);
        }
        config
    }

    /// The rules of `sd_watchdog_enabled(3)`: a watchdog meant for another PID (systemd
    /// names the main PID) is not ours, and a bad or zero interval means none.
    pub fn from_vars(
        socket: Option<OsString>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
        our_pid: u32,
    ) -> Option<NotifyConfig> {
        let socket = socket.filter(|s| !s.is_empty())?;
        let ours = match watchdog_pid.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(pid) => pid.parse::<u32>().ok() == Some(our_pid),
        };
        let watchdog = match watchdog_usec.as_deref().map(str::trim) {
            Some(usec) if ours => match usec.parse::<u64>() {
                Ok(0) => None,
                Ok(usec) => Some(Duration::from_micros(usec)),
                Err(_) => {
                    tracing::warn!("{ENV_WATCHDOG_USEC}={usec:?} is not a number of microseconds; no watchdog pings");
                    None
                }
            },
            _ => None,
        };
        Some(NotifyConfig {
            socket: PathBuf::from(socket),
            watchdog,
            status_every: DEFAULT_STATUS_EVERY,
        })
    }
}

/// The `STATUS=` text: `3 queued, 1 running on 1/2 workers; queue active`. A leased job
/// holds one worker, so busy workers are the leased jobs (capped: a lease may outlive a
/// worker that is being replaced).
pub fn status_line(counts: &Counts, paused: bool, workers: usize) -> String {
    let busy = counts.leased.min(workers);
    let state = if paused {
        "queue paused"
    } else {
        "queue active"
    };
    format!(
        "{} queued, {} running on {busy}/{workers} workers; {state}",
        counts.queued, counts.leased
    )
}

/// One connected-on-demand datagram socket to the service manager.
struct Link {
    socket: UnixDatagram,
    address: SocketAddr,
    shown: String,
    /// Set after a failed send, so a vanished manager costs one warning, not one per ping.
    failing: AtomicBool,
}

impl Link {
    fn open(path: &std::path::Path) -> std::io::Result<Link> {
        let shown = path.display().to_string();
        let address = match path.to_str().and_then(|s| s.strip_prefix('@')) {
            Some(name) => abstract_address(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Link {
            socket: UnixDatagram::unbound()?,
            address,
            shown,
            failing: AtomicBool::new(false),
        })
    }

    /// Errors are logged, never returned: systemd being away must not stop the daemon.
    fn send(&self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.address) {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the service manager at {} listens again", self.shown);
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!("cannot notify the service manager at {}: {e}", self.shown);
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &str) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(name: &str) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::other(format!(
        "abstract socket @{name} is Linux-only"
    )))
}

fn current_status(queue: &Weak<Queue>, workers: usize) -> Option<String> {
    let queue = queue.upgrade()?;
    match (queue.counts(), queue.is_paused()) {
        (Ok(counts), Ok(paused)) => Some(status_line(&counts, paused, workers)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("no STATUS for the service manager: {e}");
            None
        }
    }
}

/// Sends `READY=1` on start, then pings and refreshes the status on a thread of its own.
pub(crate) struct Notifier {
    link: Arc<Link>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Sends `READY=1` with the first status before returning, so "started" means systemd
    /// was told. The thread holds the queue weakly: it never keeps the database open.
    pub(crate) fn start(
        config: &NotifyConfig,
        queue: &Arc<Queue>,
        workers: usize,
    ) -> Option<Notifier> {
        let link = match Link::open(&config.socket) {
            Ok(link) => Arc::new(link),
            Err(e) => {
                tracing::warn!(
                    "cannot open the notify socket {}: {e}",
                    config.socket.display()
                );
                return None;
            }
        };
        let queue = Arc::downgrade(queue);
        let status = current_status(&queue, workers).unwrap_or_else(|| "serving".into());
        link.send(&format!("READY=1\nSTATUS={status}"));
        let (stop, stopped) = mpsc::channel::<()>();
        let (ping_every, status_every) = (config.watchdog.map(|w| w / 2), config.status_every);
        let thread_link = link.clone();
        let thread = std::thread::Builder::new()
            .name("imagelab-notify".into())
            .spawn(move || {
                let now = Instant::now();
                let mut next_ping = ping_every.map(|every| now + every);
                let mut next_status = now + status_every;
                loop {
                    let wake = next_ping.map_or(next_status, |p| p.min(next_status));
                    match stopped.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let now = Instant::now();
                    if let (Some(at), Some(every)) = (next_ping, ping_every) {
                        if now >= at {
                            thread_link.send("WATCHDOG=1");
                            next_ping = Some(now + every);
                        }
                    }
                    if now >= next_status {
                        if let Some(status) = current_status(&queue, workers) {
                            thread_link.send(&format!("STATUS={status}"));
                        }
                        next_status = now + status_every;
                    }
                }
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::warn!("no watchdog pings or status updates: cannot start a thread: {e}");
                None
            }
        };
        Some(Notifier {
            link,
            stop: Some(stop),
            thread,
        })
    }

    /// Sends `STOPPING=1` (once) and ends the thread; pings stop with it.
    pub(crate) fn stopping(&mut self) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        self.link
            .send("STOPPING=1\nSTATUS=stopping: ending workers");
        drop(stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stopping();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_watchdog_belongs_to_the_pid_systemd_names() {
        let socket = || Some(OsString::from("/run/notify"));
        let usec = || Some("60000000".to_string());
        let mine = NotifyConfig::from_vars(socket(), usec(), Some("42".into()), 42).unwrap();
        assert_eq!(mine.watchdog, Some(Duration::from_secs(60)));
        assert_eq!(mine.socket, PathBuf::from("/run/notify"));
        let unnamed = NotifyConfig::from_vars(socket(), usec(), None, 42).unwrap();
        assert_eq!(unnamed.watchdog, Some(Duration::from_secs(60)));
        let other = NotifyConfig::from_vars(socket(), usec(), Some("7".into()), 42).unwrap();
        assert_eq!(other.watchdog, None, "a watchdog for PID 7 is not ours");
        let zero = NotifyConfig::from_vars(socket(), Some("0".into()), None, 42).unwrap();
        assert_eq!(zero.watchdog, None);
        let junk = NotifyConfig::from_vars(socket(), Some("soon".into()), None, 42).unwrap();
        assert_eq!(junk.watchdog, None);
        assert_eq!(NotifyConfig::from_vars(None, usec(), None, 42), None);
        assert_eq!(
            NotifyConfig::from_vars(Some(OsString::new()), usec(), None, 42),
            None
        );
    }

    #[test]
    fn the_status_line_counts_queued_running_and_busy_workers() {
        let counts = Counts {
            queued: 3,
            leased: 1,
            done: 9,
            ..Counts::default()
        };
        assert_eq!(
            status_line(&counts, false, 2),
            "3 queued, 1 running on 1/2 workers; queue active"
        );
        let many = Counts {
            leased: 3,
            ..Counts::default()
        };
        assert_eq!(
            status_line(&many, true, 2),
            "0 queued, 3 running on 2/2 workers; queue paused"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_receives_the_message() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("imagelab-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let link = Link::open(std::path::Path::new(&format!("@{name}"))).unwrap();
        link.send("READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
