//! The worker's stdin, read on a thread of its own so that a `cancel` reaches a running
//! job: the main loop takes commands one at a time, and a job's step callback looks at
//! what has arrived without blocking. Only a cancel of the running job acts at once;
//! everything else waits its turn, in arrival order.

use imagelab_core::worker::WorkerCommand;
use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// One line from the daemon: a command, or why it is not one.
pub type Incoming = Result<WorkerCommand, String>;

fn parse(line: &str) -> Incoming {
    serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))
}

pub struct Inbox {
    lines: Receiver<String>,
    /// Commands that arrived while a job ran, in order.
    pending: VecDeque<Incoming>,
    /// Keeps a silent inbox's channel open, so it never reads as a departed daemon.
    _open: Option<mpsc::Sender<String>>,
}

impl Inbox {
    /// Reads the process's stdin line by line on a thread of its own until it closes.
    pub fn stdin() -> Inbox {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("worker-stdin".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if !line.trim().is_empty() && tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the stdin reader thread");
        Inbox {
            lines: rx,
            pending: VecDeque::new(),
            _open: None,
        }
    }

    /// An inbox nobody writes to: a one-job worker under Slurm, whose cancel is a signal
    /// from `scancel`, not a line.
    pub fn silent() -> Inbox {
        let (tx, rx) = mpsc::channel();
        Inbox {
            lines: rx,
            pending: VecDeque::new(),
            _open: Some(tx),
        }
    }

    /// The next command in arrival order, waiting for one; `None` once stdin has closed
    /// and nothing is left.
    pub fn next(&mut self) -> Option<Incoming> {
        if let Some(incoming) = self.pending.pop_front() {
            return Some(incoming);
        }
        self.lines.recv().ok().map(|line| parse(&line))
    }

    /// Whether the daemon asked to stop `job`: reads whatever has arrived without
    /// blocking, keeping other commands for later. A cancel that came before the job
    /// started (queued behind its `generate`) counts too, and so does a closed stdin: the
    /// daemon is gone (killed, say), so nobody would take the result, and the GPU should
    /// be free at once rather than at the end of the job.
    pub fn cancel_requested(&mut self, job: u64) -> bool {
        let is_ours = |incoming: &Incoming| matches!(incoming, Ok(WorkerCommand::Cancel { job: j }) if *j == job);
        let mut cancelled = false;
        if let Some(at) = self.pending.iter().position(is_ours) {
            self.pending.remove(at);
            cancelled = true;
        }
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    let incoming = parse(&line);
                    if is_ours(&incoming) {
                        cancelled = true;
                    } else {
                        self.pending.push_back(incoming);
                    }
                }
                Err(TryRecvError::Empty) => return cancelled,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An inbox whose stdin already delivered `text` and stays open while the returned
    /// sender lives (no thread: the order of arrival is exactly the order of the lines).
    fn inbox(text: &str) -> (Inbox, mpsc::Sender<String>) {
        let (tx, rx) = mpsc::channel();
        for line in text.lines() {
            tx.send(line.to_string()).unwrap();
        }
        let inbox = Inbox {
            lines: rx,
            pending: VecDeque::new(),
            _open: None,
        };
        (inbox, tx)
    }

    #[test]
    fn a_silent_inbox_never_cancels() {
        let mut inbox = Inbox::silent();
        assert!(!inbox.cancel_requested(1));
    }

    #[test]
    fn a_closed_stdin_stops_the_running_job() {
        let (mut inbox, stdin) = inbox("{\"op\":\"unload\",\"model\":null}\n");
        assert!(!inbox.cancel_requested(1), "stdin is still open");
        drop(stdin);
        assert!(inbox.cancel_requested(1), "the daemon went away");
        assert_eq!(
            inbox.next().unwrap(),
            Ok(WorkerCommand::Unload { model: None })
        );
        assert!(inbox.next().is_none());
    }

    #[test]
    fn a_cancel_of_the_running_job_is_taken_and_the_rest_waits_in_order() {
        let (mut inbox, stdin) = inbox(concat!(
            "{\"op\":\"unload\",\"model\":null}\n",
            "not json\n",
            "{\"op\":\"cancel\",\"job\":9}\n",
            "{\"op\":\"cancel\",\"job\":7}\n",
            "{\"op\":\"load\",\"model\":\"m\"}\n",
        ));
        assert!(inbox.cancel_requested(7));
        assert!(!inbox.cancel_requested(7), "a cancel is taken once");
        assert_eq!(
            inbox.next().unwrap(),
            Ok(WorkerCommand::Unload { model: None })
        );
        assert!(inbox
            .next()
            .unwrap()
            .unwrap_err()
            .contains("malformed request"));
        assert_eq!(inbox.next().unwrap(), Ok(WorkerCommand::Cancel { job: 9 }));
        assert_eq!(
            inbox.next().unwrap(),
            Ok(WorkerCommand::Load {
                model: "m".into(),
                vae: None,
                clip: None
            })
        );
        drop(stdin);
        assert!(inbox.next().is_none(), "stdin closed");
    }

    #[test]
    fn a_cancel_queued_before_its_job_started_counts() {
        let (mut inbox, stdin) = inbox(concat!(
            "{\"op\":\"unload\",\"model\":null}\n",
            "{\"op\":\"cancel\",\"job\":3}\n",
        ));
        // Job 1 runs and sees neither line as its own.
        assert!(!inbox.cancel_requested(1));
        assert_eq!(
            inbox.next().unwrap(),
            Ok(WorkerCommand::Unload { model: None })
        );
        assert!(inbox.cancel_requested(3));
        drop(stdin);
        assert!(inbox.next().is_none());
    }
}
