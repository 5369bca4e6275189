//! The runner over a real queue in a temporary folder, on a fake clock: the feed while a
//! fake worker drains it, limits, stop, interactive jobs first, resume after a restart
//! (including a crash between enqueue and persist), and refused requests.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::night::plan::seeds_at;
use crate::night::testlab::{request, TestLab, KNIGHTS, T0};
use imagelab_core::night::NightState;
use imagelab_queue::{Completion, NewJob, Priority, WorkerView};
use std::time::Duration;

fn worker() -> WorkerView {
    WorkerView::new("w", "GPU-0", &[])
}

/// Leases and completes up to `n` jobs, as a worker would.
fn drain(queue: &Queue, n: usize) {
    for _ in 0..n {
        let Some(job) = queue.next_for_worker(&worker()).unwrap() else {
            return;
        };
        queue.complete(job.id, 1, Completion::default()).unwrap();
    }
}

/// The prompt seeds of every job the run submitted, in submission order.
fn run_prompt_seeds(queue: &Queue, run: &str) -> Vec<u64> {
    queue
        .run_jobs_after(run, None)
        .unwrap()
        .iter()
        .map(|j| j.spec.prompt_seed.unwrap())
        .collect()
}

fn expected_seeds(n: u64) -> Vec<u64> {
    (0..n).map(|i| seeds_at(42, i).0).collect()
}

#[test]
fn the_depth_stays_bounded_while_a_worker_drains_the_queue() {
    let lab = TestLab::new();
    lab.set_workers(2);
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    let status = runner.start(request(&["knights", "castles"])).unwrap();
    assert_eq!(
        (status.state, status.submitted, status.queued),
        (NightState::Running, 4, 4)
    );
    for round in 0..30 {
        drain(&queue, 1 + round % 3);
        lab.clock.advance(Duration::from_secs(1));
        runner.tick().unwrap();
        let queued = queue.queued_in_run(&status.run_id).unwrap().len();
        assert!(queued <= 4, "round {round}: {queued} queued with 2 workers");
    }
    let status = runner.status().unwrap();
    assert!(status.submitted > 40, "{status:?}");
    assert_eq!(status.queued, 4, "each tick refills to the target");
    assert_eq!(status.done, status.submitted - 4);
    // Fewer workers free: the run waits instead of piling jobs up.
    lab.set_workers(1);
    runner.tick().unwrap();
    assert_eq!(runner.status().unwrap().submitted, status.submitted);
    assert_eq!(
        run_prompt_seeds(&queue, &status.run_id),
        expected_seeds(status.submitted)
    );
}

#[test]
fn the_run_stops_exactly_at_max_jobs_and_keeps_those_jobs() {
    let lab = TestLab::new();
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    let req = NightRequest {
        max_jobs: Some(5),
        ..request(&["knights"])
    };
    let id = runner.start(req).unwrap().run_id;
    for _ in 0..10 {
        drain(&queue, 1);
        lab.clock.advance(Duration::from_secs(1));
        runner.tick().unwrap();
    }
    let status = runner.status().unwrap();
    assert_eq!((status.state, status.submitted), (NightState::Finished, 5));
    assert!(status.reason.unwrap().contains("max_jobs"));
    assert_eq!(queue.run_jobs_after(&id, None).unwrap().len(), 5);
    assert_eq!(status.done + status.queued, 5);
}

#[test]
fn the_run_stops_at_its_end_time_and_withdraws_its_queued_jobs() {
    let lab = TestLab::new();
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    let req = NightRequest {
        duration_secs: Some(10),
        ..request(&["knights"])
    };
    let id = runner.start(req).unwrap().run_id;
    lab.clock.advance(Duration::from_secs(9));
    drain(&queue, 1);
    runner.tick().unwrap();
    let before = runner.status().unwrap().submitted;
    assert_eq!(before, 3);
    lab.clock.advance(Duration::from_secs(1));
    runner.tick().unwrap();
    runner.tick().unwrap();
    let status = runner.status().unwrap();
    assert_eq!(
        (status.state, status.submitted),
        (NightState::Finished, before)
    );
    assert!(status.reason.unwrap().contains("end time"));
    assert!(queue.queued_in_run(&id).unwrap().is_empty());
    assert_eq!(queue.run_counts(&id).unwrap().cancelled, 2);
}

#[test]
fn stop_ends_the_run_and_a_second_start_is_refused_while_one_runs() {
    let lab = TestLab::new();
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    assert_eq!(runner.status().unwrap_err(), NightError::NoRun);
    assert_eq!(runner.stop().unwrap_err(), NightError::NoRun);
    let id = runner.start(request(&["knights"])).unwrap().run_id;
    let err = runner.start(request(&["castles"])).unwrap_err();
    assert!(
        matches!(&err, NightError::Conflict(m) if m.contains(&id)),
        "{err:?}"
    );
    let stopped = runner.stop().unwrap();
    assert_eq!(stopped.state, NightState::Stopped);
    drain(&queue, 5);
    runner.tick().unwrap();
    assert_eq!(
        runner.status().unwrap().submitted,
        2,
        "nothing added after stop"
    );
    assert_eq!(
        runner.stop().unwrap().state,
        NightState::Stopped,
        "stop twice is fine"
    );
    // A new run may start once the last one ended; it gets its own id.
    let next = runner.start(request(&["castles"])).unwrap();
    assert_ne!(next.run_id, id);
}

#[test]
fn an_interactive_job_is_leased_before_the_runs_jobs() {
    let lab = TestLab::new();
    lab.set_workers(3);
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    runner.start(request(&["knights"])).unwrap();
    let mut params = lab.options.base.clone();
    params.model = "a.safetensors".into();
    let interactive = queue
        .enqueue(NewJob::new(params).priority(Priority::Interactive))
        .unwrap();
    // The worker holds the run's model, and the interactive job still goes first.
    let holder = WorkerView::new("w", "GPU-0", &["c.safetensors".to_string()]);
    assert_eq!(
        queue.next_for_worker(&holder).unwrap().unwrap().id,
        interactive.id
    );
    let next = queue.next_for_worker(&holder).unwrap().unwrap();
    assert_eq!(next.priority, Priority::Background);
}

#[test]
fn a_restart_resumes_the_sequence_without_repeats_or_gaps() {
    let lab = TestLab::new();
    let id = {
        let queue = lab.queue();
        let mut runner = lab.runner(queue.clone());
        let id = runner
            .start(request(&["knights", "castles"]))
            .unwrap()
            .run_id;
        for _ in 0..5 {
            drain(&queue, 2);
            lab.clock.advance(Duration::from_secs(1));
            runner.tick().unwrap();
        }
        id
    };
    lab.clock.advance(Duration::from_secs(60));
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    runner.resume().unwrap();
    let status = runner.status().unwrap();
    assert_eq!(
        (status.run_id.as_str(), status.state),
        (id.as_str(), NightState::Running)
    );
    assert_eq!(status.submitted, 12);
    for _ in 0..3 {
        drain(&queue, 2);
        runner.tick().unwrap();
    }
    let submitted = runner.status().unwrap().submitted;
    assert_eq!(submitted, 18);
    assert_eq!(run_prompt_seeds(&queue, &id), expected_seeds(submitted));
}

#[test]
fn a_crash_between_enqueue_and_persist_is_repaired_on_resume() {
    let lab = TestLab::new();
    let id = {
        let queue = lab.queue();
        let mut runner = lab.runner(queue.clone());
        let id = runner.start(request(&["knights"])).unwrap().run_id;
        drain(&queue, 2);
        // The next top-up reaches the queue, then the daemon dies before night.json is
        // written: the file still says 2 jobs.
        let store = NightStore::new(&lab.folders().jobs);
        let record = store.load().unwrap().unwrap();
        let catalog = lab.catalog(&record.request);
        let lost: Vec<_> = (2..4)
            .map(|i| plan::job_at(&record, &catalog, i).unwrap())
            .collect();
        queue.enqueue_batch(lost).unwrap();
        assert_eq!(record.submitted, 2);
        id
    };
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    runner.resume().unwrap();
    assert_eq!(runner.status().unwrap().submitted, 4);
    drain(&queue, 2);
    runner.tick().unwrap();
    assert_eq!(runner.status().unwrap().submitted, 6);
    assert_eq!(run_prompt_seeds(&queue, &id), expected_seeds(6));
}

#[test]
fn a_run_whose_window_passed_while_down_is_finished_on_resume() {
    let lab = TestLab::new();
    let id = {
        let queue = lab.queue();
        let mut runner = lab.runner(queue);
        runner.start(request(&["knights"])).unwrap().run_id
    };
    lab.clock.set(T0 + 3600 * 1000);
    let queue = lab.queue();
    let mut runner = lab.runner(queue.clone());
    runner.resume().unwrap();
    let status = runner.status().unwrap();
    assert_eq!((status.state, status.submitted), (NightState::Finished, 2));
    assert!(status.reason.unwrap().contains("while the daemon was down"));
    runner.tick().unwrap();
    assert!(queue.queued_in_run(&id).unwrap().is_empty());
    // And it stays finished across another restart.
    let mut again = lab.runner(queue);
    again.resume().unwrap();
    assert_eq!(again.status().unwrap().state, NightState::Finished);
}

fn refused(lab: &TestLab, req: NightRequest) -> (String, String) {
    match lab.runner(lab.queue()).start(req).unwrap_err() {
        NightError::Invalid { field, message } => (field, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn bad_requests_are_refused_naming_the_field_and_the_file() {
    let lab = TestLab::new();
    let (field, message) = refused(&lab, request(&["knights", "nope"]));
    assert_eq!(field, "themes[1]");
    assert!(
        message.contains("\"nope\"") && message.contains("knights"),
        "{message}"
    );
    let (field, message) = refused(&lab, request(&["spicy"]));
    assert_eq!(field, "themes[0]");
    assert!(
        message.contains("spicy.yaml") && message.contains("mature"),
        "{message}"
    );
    let (field, message) = refused(&lab, request(&["broken"]));
    assert_eq!(field, "themes[0]");
    assert!(
        message.contains("broken.yaml") && message.contains("line"),
        "{message}"
    );
    let (field, _) = refused(&lab, request(&["knights:0"]));
    assert_eq!(field, "themes[0]");
    let both = NightRequest {
        ends_at_ms: Some(T0 + 1000),
        ..request(&["knights"])
    };
    assert_eq!(refused(&lab, both).0, "ends_at_ms");
    let neither = NightRequest {
        duration_secs: None,
        ..request(&["knights"])
    };
    assert_eq!(refused(&lab, neither).0, "ends_at_ms");
    let past = NightRequest {
        duration_secs: None,
        ends_at_ms: Some(T0 - 1),
        ..request(&["knights"])
    };
    let (field, message) = refused(&lab, past);
    assert!(
        field == "ends_at_ms" && message.contains("past"),
        "{message}"
    );
    let zero = NightRequest {
        max_jobs: Some(0),
        ..request(&["knights"])
    };
    assert_eq!(refused(&lab, zero).0, "max_jobs");
    let model = NightRequest {
        models: vec!["a".into(), "../../etc/passwd".into()],
        ..request(&["knights"])
    };
    assert_eq!(refused(&lab, model).0, "models[1]");
    assert_eq!(refused(&lab, request(&[])).0, "themes");
    // Without the settings file's fallback, a theme without models has none.
    let mut bare = TestLab::new();
    bare.options.settings.models.clear();
    let (field, message) = refused(&bare, request(&["knights"]));
    assert!(
        field == "models" && message.contains("knights"),
        "{message}"
    );
    // Mature mode on in the settings file lets the mature theme run.
    let mut mature = TestLab::new();
    mature.options.settings.mature = true;
    let status = mature
        .runner(mature.queue())
        .start(request(&["spicy"]))
        .unwrap();
    assert_eq!(status.state, NightState::Running);
    assert!(KNIGHTS.contains("profile: noir"));
}
