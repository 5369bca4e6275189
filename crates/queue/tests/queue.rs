//! The queue through its public API on a real sled database in a temporary folder: leases,
//! retries, cancel, pause, dispatch order, restart recovery, history and `jobs.log`.
#![allow(clippy::unwrap_used)]

use imagelab_core::GenerationParams;
use imagelab_queue::{
    output_stem, read_log, Completion, JobId, JobState, NewJob, Placement, Priority, Queue,
    QueueError, QueueOptions, RecoveryPolicy, WorkerView,
};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

fn job(model: &str) -> NewJob {
    NewJob::new(GenerationParams {
        model: model.into(),
        prompt: "a lighthouse".into(),
        ..Default::default()
    })
}

fn open(dir: &Path) -> Queue {
    Queue::open(dir, QueueOptions::default()).unwrap()
}

fn worker(name: &str, models: &[&str]) -> WorkerView {
    let models: Vec<String> = models.iter().map(|m| m.to_string()).collect();
    WorkerView::new(name, format!("GPU-{name}"), &models)
}

fn done(outputs: &[&str]) -> Completion {
    Completion {
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        seeds: vec![1234],
        model_hash: Some("cafe".into()),
        step_time_ms: Some(40.0),
    }
}

#[test]
fn enqueued_jobs_survive_reopening_and_ids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let q = open(dir.path());
        let a = q.enqueue(job("a")).unwrap();
        let b = q.enqueue(job("b").priority(Priority::Interactive)).unwrap();
        assert!(b.id > a.id);
        (a.id, b.id)
    };
    let q = open(dir.path());
    assert_eq!(q.get(first.0).unwrap().spec.params.model, "a");
    assert_eq!(q.get(first.1).unwrap().priority, Priority::Interactive);
    let c = q.enqueue(job("c")).unwrap();
    assert!(c.id > first.1, "ids are never reused after a reopen");
    assert_eq!(q.counts().unwrap().queued, 3);
    assert!(matches!(
        q.get(JobId(999)),
        Err(QueueError::NotFound { id: JobId(999) })
    ));
}

#[test]
fn bad_specs_and_a_second_open_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let mut bad = job("a");
    bad.spec.params.width = 7;
    let err = q.enqueue(bad).unwrap_err();
    assert!(err.to_string().contains("width 7"), "{err}");
    assert!(q.enqueue(job("a").max_attempts(0)).is_err());
    assert_eq!(q.list().unwrap().len(), 0);
    let err = Queue::open(dir.path(), QueueOptions::default()).unwrap_err();
    assert!(matches!(err, QueueError::Storage { .. }), "{err}");
}

#[test]
fn leases_are_never_granted_twice_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(open(dir.path()));
    q.enqueue_batch((0..120).map(|_| job("m")).collect())
        .unwrap();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                let me = worker(&format!("w{t}"), &[]);
                let mut got = Vec::new();
                while let Some(job) = q.next_for_worker(&me).unwrap() {
                    got.push(job.id);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (120, 120));
    assert_eq!(q.counts().unwrap().leased, 120);
    assert!(q.verify().unwrap().is_empty());
}

#[test]
fn retryable_failures_retry_then_the_job_is_dead_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let id = q.enqueue(job("m").max_attempts(2)).unwrap().id;
    let w = worker("w", &[]);
    let first = q.next_for_worker(&w).unwrap().unwrap();
    assert_eq!(first.id, id);
    assert_eq!(
        q.fail(id, 1, "CUDA out of memory", true).unwrap().state,
        JobState::Queued
    );
    q.next_for_worker(&w).unwrap().unwrap();
    // A late report from attempt 1 no longer counts.
    assert!(matches!(
        q.fail(id, 1, "late", true),
        Err(QueueError::StaleLease { .. })
    ));
    let dead = q.fail(id, 2, "CUDA out of memory", true).unwrap();
    assert_eq!((dead.state.name(), dead.attempts), ("dead", 2));
    assert!(q.next_for_worker(&w).unwrap().is_none());
    let log = read_log(&dir.path().join("jobs.log")).unwrap();
    assert_eq!((log.records.len(), log.skipped), (1, 0));
    assert_eq!(log.records[0].state, "dead");
    assert_eq!(log.records[0].error.as_deref(), Some("CUDA out of memory"));
}

#[test]
fn cancel_a_queued_job_and_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let a = q.enqueue(job("m")).unwrap().id;
    let b = q.enqueue(job("m")).unwrap().id;
    assert_eq!(q.cancel(b).unwrap().state.name(), "cancelled");
    let leased = q.next_for_worker(&worker("w", &[])).unwrap().unwrap();
    assert_eq!(leased.id, a);
    let asked = q.cancel(a).unwrap();
    assert!(asked.cancel_requested && asked.state.name() == "leased");
    assert_eq!(
        q.complete(a, 1, done(&["x.png"])).unwrap().state.name(),
        "cancelled"
    );
    assert!(matches!(
        q.cancel(a),
        Err(QueueError::IllegalTransition {
            action: "cancel",
            state: "cancelled",
            ..
        })
    ));
    let states: Vec<_> = read_log(&dir.path().join("jobs.log"))
        .unwrap()
        .records
        .into_iter()
        .map(|r| (r.id, r.state))
        .collect();
    assert_eq!(
        states,
        vec![(b, "cancelled".into()), (a, "cancelled".into())]
    );
}

#[test]
fn pause_is_persisted_and_stops_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        q.enqueue(job("m")).unwrap();
        q.pause().unwrap();
        assert!(q.next_for_worker(&worker("w", &[])).unwrap().is_none());
    }
    let q = open(dir.path());
    assert!(q.is_paused().unwrap());
    assert!(q.peek_for_worker(&worker("w", &[])).unwrap().is_none());
    q.resume().unwrap();
    assert!(q.next_for_worker(&worker("w", &[])).unwrap().is_some());
}

#[test]
fn dispatch_goes_by_priority_then_model_affinity_then_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let bg = q
        .enqueue(job("x").priority(Priority::Background))
        .unwrap()
        .id;
    let n1 = q.enqueue(job("x")).unwrap().id;
    let n2 = q.enqueue(job("y")).unwrap().id;
    let n3 = q.enqueue(job("x")).unwrap().id;
    let hi = q
        .enqueue(job("x").priority(Priority::Interactive))
        .unwrap()
        .id;
    let pinned = q
        .enqueue(
            job("y")
                .priority(Priority::Interactive)
                .placement(Placement::Gpu("GPU-other".into())),
        )
        .unwrap()
        .id;
    let w = worker("w", &["y"]);
    let mut order = Vec::new();
    while let Some(peeked) = q.peek_for_worker(&w).unwrap() {
        let leased = q.next_for_worker(&w).unwrap().unwrap();
        assert_eq!(peeked.id, leased.id, "peek predicts the lease");
        order.push(leased.id);
    }
    assert_eq!(order, vec![hi, n2, n1, n3, bg]);
    assert_eq!(q.get(pinned).unwrap().state, JobState::Queued);
    let other = WorkerView::new("o", "GPU-other", &[]);
    assert_eq!(q.next_for_worker(&other).unwrap().unwrap().id, pinned);
}

#[test]
fn reprioritising_moves_a_job_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let a = q.enqueue(job("m")).unwrap().id;
    let b = q.enqueue(job("m")).unwrap().id;
    q.reprioritise(b, Priority::Interactive).unwrap();
    q.reprioritise(a, Priority::Background).unwrap();
    assert_eq!(q.next_for_worker(&worker("w", &[])).unwrap().unwrap().id, b);
    assert!(q.verify().unwrap().is_empty());
}

#[test]
fn restart_recovery_requeues_leased_jobs_without_using_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = {
        let q = open(dir.path());
        let a = q.enqueue(job("m")).unwrap().id;
        let b = q.enqueue(job("m").max_attempts(1)).unwrap().id;
        let c = q.enqueue(job("m")).unwrap().id;
        for _ in 0..3 {
            q.next_for_worker(&worker("w", &[])).unwrap().unwrap();
        }
        q.cancel(c).unwrap();
        (a, b, c)
    };
    let q = open(dir.path());
    let rec = q.recover_after_restart(RecoveryPolicy::Pause).unwrap();
    // b had one attempt: an interruption is not its fault, so it lives on.
    assert_eq!(
        (rec.requeued, rec.dead, rec.cancelled),
        (vec![a, b], vec![], vec![c])
    );
    assert!(rec.paused && q.is_paused().unwrap());
    let requeued = q.get(b).unwrap();
    assert_eq!(
        (
            requeued.state.name(),
            requeued.attempts,
            requeued.interruptions
        ),
        ("queued", 0, 1)
    );
    assert!(matches!(
        q.complete(a, 1, done(&[])),
        Err(QueueError::IllegalTransition { .. })
    ));
    q.resume().unwrap();
    let again = q.next_for_worker(&worker("w", &[])).unwrap().unwrap();
    assert_eq!(again.id, a);
    assert!(matches!(again.state, JobState::Leased { attempt: 1, .. }));
    assert!(q.verify().unwrap().is_empty());
    let none = q.recover_after_restart(RecoveryPolicy::Requeue).unwrap();
    assert_eq!(none.requeued, vec![a]);
    assert!(!none.paused);
    assert_eq!(q.get(a).unwrap().interruptions, 2);
}

#[test]
fn a_job_interrupted_max_interruptions_times_is_dead_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        max_interruptions: 2,
        ..QueueOptions::default()
    };
    let q = Queue::open(dir.path(), options).unwrap();
    let id = q.enqueue(job("m").max_attempts(1)).unwrap().id;
    q.next_for_worker(&worker("w", &[])).unwrap().unwrap();
    assert_eq!(
        q.recover_after_restart(RecoveryPolicy::Requeue)
            .unwrap()
            .requeued,
        vec![id]
    );
    q.next_for_worker(&worker("w", &[])).unwrap().unwrap();
    assert_eq!(
        q.recover_after_restart(RecoveryPolicy::Requeue)
            .unwrap()
            .dead,
        vec![id]
    );
    let dead = q.get(id).unwrap();
    assert_eq!((dead.attempts, dead.interruptions), (0, 2));
    let JobState::Dead { error, .. } = &dead.state else {
        panic!("not dead: {:?}", dead.state)
    };
    assert!(error.contains("interrupted 2 times"), "{error}");
    assert!(q.verify().unwrap().is_empty());
}

#[test]
fn history_limit_keeps_the_newest_finished_jobs_and_clear_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        history_limit: Some(3),
        ..QueueOptions::default()
    };
    let q = Queue::open(dir.path(), options).unwrap();
    let ids: Vec<JobId> = (0..5).map(|_| q.enqueue(job("m")).unwrap().id).collect();
    let waiting = q
        .enqueue(job("m").priority(Priority::Background))
        .unwrap()
        .id;
    for id in &ids {
        let leased = q.next_for_worker(&worker("w", &[])).unwrap().unwrap();
        assert_eq!(leased.id, *id);
        q.complete(*id, 1, done(&[&format!("{}.png", output_stem(*id, 0))]))
            .unwrap();
    }
    let kept: Vec<JobId> = q.list().unwrap().iter().map(|j| j.id).collect();
    assert_eq!(kept, vec![ids[2], ids[3], ids[4], waiting]);
    assert!(q.verify().unwrap().is_empty());
    assert_eq!(
        read_log(&dir.path().join("jobs.log"))
            .unwrap()
            .records
            .len(),
        5
    );
    assert_eq!(q.clear_finished().unwrap(), 3);
    assert_eq!(q.list().unwrap().len(), 1);
    assert!(q.verify().unwrap().is_empty());
}

#[test]
fn jobs_log_records_the_run_and_readers_skip_corrupt_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("jobs.log");
    // A torn line from a crash (no newline) and a garbage line already in the log.
    std::fs::write(&log_path, b"not json\n{\"id\":1,\"state\":\"do").unwrap();
    let q = open(dir.path());
    let id = q.enqueue(job("m")).unwrap().id;
    q.next_for_worker(&worker("w", &["m"])).unwrap().unwrap();
    q.complete(id, 1, done(&["output/a.png"])).unwrap();
    let read = read_log(&log_path).unwrap();
    assert_eq!((read.records.len(), read.skipped), (1, 2));
    let r = &read.records[0];
    assert_eq!((r.id, r.state.as_str()), (id, "done"));
    assert_eq!(
        (r.seeds.clone(), r.model_hash.as_deref()),
        (vec![1234], Some("cafe"))
    );
    assert_eq!(r.gpus, vec!["GPU-w".to_string()]);
    assert_eq!(r.outputs, vec!["output/a.png".to_string()]);
    assert_eq!(r.timings.step_time_ms, Some(40.0));
    assert!(r.timings.started_at_ms.is_some() && r.timings.finished_at_ms.is_some());
    assert_eq!(r.spec.params.prompt, "a lighthouse");
    assert!(std::fs::read(&log_path).unwrap().ends_with(b"\n"));
}

#[test]
fn output_stems_are_deterministic_per_job_and_image() {
    assert_eq!(output_stem(JobId(42), 3), "job0000000042_003");
    assert_eq!(output_stem(JobId(42), 3), output_stem(JobId(42), 3));
    assert_ne!(output_stem(JobId(42), 3), output_stem(JobId(43), 3));
}
