//! The job state machine as a pure function: `apply(job, event)` returns the job's next
//! record or an error naming the illegal transition. The store only persists what this
//! returns, so every rule lives here and is tested without a database.
//!
//! ```text
//! queued --lease--> leased --complete--> done
//!   |                 |  \--fail(retryable, attempts left)--> queued
//!   |                 |  \--fail(retryable, none left)-------> dead
//!   |                 |  \--fail(not retryable)--------------> failed
//!   |                 |  \--release (yield, no attempt used)-> queued
//!   |                 |  \--recover (restart: attempt used)--> queued | dead
//!   |                 \--cancel: marks cancel_requested; the next report ends it cancelled
//!   \--cancel--> cancelled
//! ```

use crate::error::{QueueError, Result};
use crate::job::{Completion, Job, JobState, Timings};

/// Something that happens to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Lease {
        worker: String,
        gpu_uuids: Vec<String>,
        now_ms: u64,
    },
    Complete {
        attempt: u32,
        completion: Completion,
        now_ms: u64,
    },
    Fail {
        attempt: u32,
        error: String,
        retryable: bool,
        now_ms: u64,
    },
    /// The worker gives the job back unrun (a foreign process appeared and the policy says
    /// yield): no attempt is used up.
    Release {
        attempt: u32,
        now_ms: u64,
    },
    Cancel {
        now_ms: u64,
    },
    /// The daemon restarted while the job was leased: no attempt is used, the interruption
    /// is counted, and the job is dead once it reaches `max_interruptions`.
    Recover {
        now_ms: u64,
        max_interruptions: u32,
    },
}

impl Event {
    fn action(&self) -> &'static str {
        match self {
            Event::Lease { .. } => "lease",
            Event::Complete { .. } => "complete",
            Event::Fail { .. } => "fail",
            Event::Release { .. } => "release",
            Event::Cancel { .. } => "cancel",
            Event::Recover { .. } => "recover",
        }
    }
}

/// The job after `event`, or why the event is not allowed in the job's state.
pub fn apply(job: &Job, event: Event) -> Result<Job> {
    let illegal = || QueueError::IllegalTransition {
        id: job.id,
        action: event.action(),
        state: job.state.name(),
    };
    let mut next = job.clone();
    match (&job.state, event.clone()) {
        (
            JobState::Queued,
            Event::Lease {
                worker,
                gpu_uuids,
                now_ms,
            },
        ) => {
            next.started_at_ms = Some(now_ms);
            next.last_worker = Some(worker.clone());
            next.last_gpus = gpu_uuids.clone();
            next.state = JobState::Leased {
                worker,
                gpu_uuids,
                attempt: job.attempts.saturating_add(1),
                since_ms: now_ms,
            };
        }
        (JobState::Queued, Event::Cancel { now_ms }) => {
            next.state = JobState::Cancelled {
                finished_at_ms: now_ms,
            };
        }
        (JobState::Leased { .. }, Event::Cancel { .. }) => {
            // The worker is mid-job; it is told separately and its report ends the job.
            next.cancel_requested = true;
        }
        (JobState::Leased { attempt, .. }, reported) => {
            let current = *attempt;
            if let Some(got) = reported_attempt(&reported) {
                if got != current {
                    return Err(QueueError::StaleLease {
                        id: job.id,
                        reported: got,
                        current,
                    });
                }
            }
            leased_outcome(&mut next, reported).ok_or_else(illegal)?;
        }
        _ => return Err(illegal()),
    }
    Ok(next)
}

fn reported_attempt(event: &Event) -> Option<u32> {
    match event {
        Event::Complete { attempt, .. }
        | Event::Fail { attempt, .. }
        | Event::Release { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

/// How a worker's report (or a restart) ends a lease; `None` for events a leased job
/// does not accept.
fn leased_outcome(next: &mut Job, event: Event) -> Option<()> {
    let cancelled = next.cancel_requested;
    match event {
        Event::Complete {
            completion, now_ms, ..
        } => {
            next.state = if cancelled {
                JobState::Cancelled {
                    finished_at_ms: now_ms,
                }
            } else {
                JobState::Done {
                    outputs: completion.outputs.clone(),
                    finished_at_ms: now_ms,
                    timings: Timings {
                        queued_at_ms: next.created_at_ms,
                        started_at_ms: next.started_at_ms,
                        finished_at_ms: Some(now_ms),
                        step_time_ms: completion.step_time_ms,
                    },
                }
            };
            if completion.model_hash.is_some() {
                next.spec.model_hash = completion.model_hash.clone();
            }
            next.completion = Some(completion);
        }
        Event::Fail {
            error,
            retryable,
            now_ms,
            ..
        } => {
            next.attempts = next.attempts.saturating_add(1);
            next.state = if cancelled {
                JobState::Cancelled {
                    finished_at_ms: now_ms,
                }
            } else if !retryable {
                JobState::Failed {
                    error: error.clone(),
                    finished_at_ms: now_ms,
                }
            } else if next.attempts >= next.max_attempts {
                JobState::Dead {
                    error: error.clone(),
                    finished_at_ms: now_ms,
                }
            } else {
                JobState::Queued
            };
            next.last_error = Some(error);
        }
        Event::Release { now_ms, .. } => {
            next.state = if cancelled {
                JobState::Cancelled {
                    finished_at_ms: now_ms,
                }
            } else {
                JobState::Queued
            };
        }
        Event::Recover {
            now_ms,
            max_interruptions,
        } => {
            next.interruptions = next.interruptions.saturating_add(1);
            let times = next.interruptions;
            next.state = if cancelled {
                JobState::Cancelled {
                    finished_at_ms: now_ms,
                }
            } else if times >= max_interruptions {
                JobState::Dead {
                    error: format!(
                        "interrupted {times} times: the daemon stopped or crashed while the job \
                         ran, each time (the cap is scheduler.max_interruptions: {max_interruptions})"
                    ),
                    finished_at_ms: now_ms,
                }
            } else {
                JobState::Queued
            };
            next.last_error = Some(format!(
                "interrupted: the daemon stopped while the job ran ({times} time{})",
                if times == 1 { "" } else { "s" }
            ));
        }
        Event::Lease { .. } | Event::Cancel { .. } => return None,
    }
    Some(())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
