//! Tests of the pure state machine: every legal path, and illegal transitions as errors.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::job::{JobId, JobSpec, Placement, Priority, Source};

fn queued(max_attempts: u32) -> Job {
    Job {
        id: JobId(7),
        spec: JobSpec::default(),
        priority: Priority::Normal,
        source: Source::Cli,
        placement: Placement::Any,
        created_at_ms: 100,
        attempts: 0,
        max_attempts,
        state: JobState::Queued,
        interruptions: 0,
        cancel_requested: false,
        last_error: None,
        started_at_ms: None,
        last_worker: None,
        last_gpus: vec![],
        completion: None,
    }
}

fn lease(job: &Job) -> Job {
    apply(
        job,
        Event::Lease {
            worker: "w0".into(),
            gpu_uuids: vec!["GPU-a".into()],
            now_ms: 200,
        },
    )
    .unwrap()
}

fn fail(job: &Job, attempt: u32, retryable: bool) -> Result<Job> {
    apply(
        job,
        Event::Fail {
            attempt,
            error: "CUDA out of memory".into(),
            retryable,
            now_ms: 300,
        },
    )
}

#[test]
fn lease_then_complete_records_outputs_and_timings() {
    let leased = lease(&queued(3));
    assert!(matches!(
        leased.state,
        JobState::Leased { attempt: 1, since_ms: 200, ref worker, .. } if worker == "w0"
    ));
    let done = apply(
        &leased,
        Event::Complete {
            attempt: 1,
            completion: Completion {
                outputs: vec!["a.png".into()],
                seeds: vec![42],
                model_hash: Some("abc".into()),
                step_time_ms: Some(12.5),
            },
            now_ms: 400,
        },
    )
    .unwrap();
    let JobState::Done {
        outputs, timings, ..
    } = &done.state
    else {
        panic!("not done: {:?}", done.state)
    };
    assert_eq!(outputs, &vec!["a.png".to_string()]);
    assert_eq!(
        (
            timings.queued_at_ms,
            timings.started_at_ms,
            timings.finished_at_ms
        ),
        (100, Some(200), Some(400))
    );
    assert_eq!(done.spec.model_hash.as_deref(), Some("abc"));
    assert_eq!(done.attempts, 0, "a success uses no failed attempt");
}

#[test]
fn retryable_failures_requeue_until_attempts_run_out_then_dead() {
    let mut job = queued(2);
    job = fail(&lease(&job), 1, true).unwrap();
    assert_eq!((job.state.name(), job.attempts), ("queued", 1));
    let leased = lease(&job);
    assert!(matches!(leased.state, JobState::Leased { attempt: 2, .. }));
    job = fail(&leased, 2, true).unwrap();
    assert_eq!((job.state.name(), job.attempts), ("dead", 2));
    assert_eq!(job.last_error.as_deref(), Some("CUDA out of memory"));
}

#[test]
fn non_retryable_failure_is_failed_at_once() {
    let job = fail(&lease(&queued(5)), 1, false).unwrap();
    assert!(matches!(job.state, JobState::Failed { ref error, .. } if error.contains("memory")));
}

#[test]
fn illegal_transitions_are_errors_naming_the_job() {
    let q = queued(3);
    let err = fail(&q, 1, true).unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::IllegalTransition {
                id: JobId(7),
                action: "fail",
                state: "queued"
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("job 7"), "{err}");
    let leased = lease(&q);
    let err = apply(
        &leased,
        Event::Lease {
            worker: "w1".into(),
            gpu_uuids: vec![],
            now_ms: 0,
        },
    )
    .unwrap_err();
    assert!(matches!(
        err,
        QueueError::IllegalTransition {
            action: "lease",
            state: "leased",
            ..
        }
    ));
    let done = apply(
        &leased,
        Event::Complete {
            attempt: 1,
            completion: Completion::default(),
            now_ms: 1,
        },
    )
    .unwrap();
    for event in [
        Event::Cancel { now_ms: 2 },
        Event::Recover {
            now_ms: 2,
            max_interruptions: 20,
        },
        Event::Release {
            attempt: 1,
            now_ms: 2,
        },
    ] {
        let err = apply(&done, event).unwrap_err();
        assert!(
            matches!(err, QueueError::IllegalTransition { state: "done", .. }),
            "{err}"
        );
    }
    assert!(apply(
        &q,
        Event::Recover {
            now_ms: 1,
            max_interruptions: 20
        }
    )
    .is_err());
}

#[test]
fn reports_from_a_stale_attempt_are_refused() {
    let leased = lease(&queued(3));
    let err = fail(&leased, 2, true).unwrap_err();
    assert!(matches!(
        err,
        QueueError::StaleLease {
            reported: 2,
            current: 1,
            ..
        }
    ));
}

#[test]
fn cancel_queued_is_immediate_and_cancel_running_waits_for_the_report() {
    let cancelled = apply(&queued(3), Event::Cancel { now_ms: 5 }).unwrap();
    assert_eq!(cancelled.state.name(), "cancelled");

    let leased = lease(&queued(3));
    let asked = apply(&leased, Event::Cancel { now_ms: 5 }).unwrap();
    assert_eq!(asked.state.name(), "leased");
    assert!(asked.cancel_requested);
    let done = apply(
        &asked,
        Event::Complete {
            attempt: 1,
            completion: Completion::default(),
            now_ms: 6,
        },
    )
    .unwrap();
    assert_eq!(done.state.name(), "cancelled");
    // A failure report (the worker killed its run) also ends it cancelled, not retried.
    assert_eq!(fail(&asked, 1, true).unwrap().state.name(), "cancelled");
}

#[test]
fn release_returns_the_job_without_using_an_attempt() {
    let released = apply(
        &lease(&queued(1)),
        Event::Release {
            attempt: 1,
            now_ms: 3,
        },
    )
    .unwrap();
    assert_eq!((released.state.name(), released.attempts), ("queued", 0));
}

#[test]
fn recover_counts_an_interruption_not_an_attempt_and_caps_them() {
    let recover = |now_ms| Event::Recover {
        now_ms,
        max_interruptions: 3,
    };
    // More interruptions than the job has attempts: it stays queued, attempts untouched.
    let mut job = queued(2);
    for now in 0..2 {
        job = apply(&lease(&job), recover(now)).unwrap();
        assert_eq!(job.state.name(), "queued");
    }
    assert_eq!((job.attempts, job.interruptions), (0, 2));
    assert!(job.last_error.as_deref().unwrap().contains("2 times"));
    let job = apply(&lease(&job), recover(9)).unwrap();
    assert_eq!(
        (job.state.name(), job.attempts, job.interruptions),
        ("dead", 0, 3)
    );
    let JobState::Dead { error, .. } = &job.state else {
        unreachable!()
    };
    assert!(
        error.contains("interrupted 3 times") && error.contains("scheduler.max_interruptions"),
        "{error}"
    );
}
