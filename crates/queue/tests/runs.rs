//! A job's origin (theme, theme hash, template, prompt seed, overnight run) on a real queue:
//! stored, logged to `jobs.log`, optional for older records; and the reads an overnight run
//! makes (its queued jobs from the index, its newest jobs, its per-state counts).
#![allow(clippy::unwrap_used)]

use imagelab_core::GenerationParams;
use imagelab_queue::{
    read_log, Counts, Job, JobId, JobSpec, NewJob, Priority, Queue, QueueOptions, Source,
    WorkerView,
};

fn night_job(run: &str, prompt_seed: u64) -> NewJob {
    NewJob {
        spec: JobSpec {
            params: GenerationParams {
                model: "m".into(),
                prompt: format!("prompt {prompt_seed}"),
                seed: 5,
                ..Default::default()
            },
            style: Some("noir".into()),
            theme: Some("dark fantasy".into()),
            theme_hash: Some("0123456789ab".into()),
            template: Some("a {red|blue} knight".into()),
            prompt_seed: Some(prompt_seed),
            night_run: Some(run.into()),
            ..JobSpec::default()
        },
        priority: Priority::Background,
        source: Source::NightRun,
        ..NewJob::default()
    }
}

fn plain_job() -> NewJob {
    NewJob::new(GenerationParams {
        model: "m".into(),
        ..Default::default()
    })
}

#[test]
fn origin_fields_are_stored_and_logged_and_older_records_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    let id = q.enqueue(night_job("night-1", 42)).unwrap().id;
    let stored = q.get(id).unwrap();
    assert_eq!(stored.spec.theme.as_deref(), Some("dark fantasy"));
    assert_eq!(stored.spec.prompt_seed, Some(42));
    assert_eq!(stored.spec.night_run.as_deref(), Some("night-1"));
    q.cancel(id).unwrap();
    let log = read_log(&dir.path().join("jobs.log")).unwrap();
    assert_eq!(log.records.len(), 1);
    let line = serde_json::to_value(&log.records[0]).unwrap();
    assert_eq!(line["spec"]["theme"], "dark fantasy");
    assert_eq!(line["spec"]["theme_hash"], "0123456789ab");
    assert_eq!(line["spec"]["template"], "a {red|blue} knight");
    assert_eq!(line["spec"]["prompt_seed"], 42);
    assert_eq!(line["spec"]["night_run"], "night-1");

    // A job without an origin writes none of the fields, and a record from before they
    // existed still decodes.
    let plain = serde_json::to_value(JobSpec::default()).unwrap();
    assert!(plain.get("theme").is_none() && plain.get("night_run").is_none());
    let mut old = serde_json::to_value(&stored).unwrap();
    for field in [
        "theme",
        "theme_hash",
        "template",
        "prompt_seed",
        "night_run",
    ] {
        old["spec"].as_object_mut().unwrap().remove(field);
    }
    let old: Job = serde_json::from_value(old).unwrap();
    assert_eq!((old.spec.theme, old.spec.night_run), (None, None));
}

#[test]
fn a_run_finds_its_queued_jobs_its_newest_jobs_and_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    let a = q
        .enqueue_batch(vec![
            night_job("a", 1),
            night_job("a", 2),
            night_job("a", 3),
        ])
        .unwrap();
    let b = q.enqueue(night_job("b", 9)).unwrap();
    q.enqueue(plain_job()).unwrap();
    let ids: Vec<JobId> = a.iter().map(|j| j.id).collect();
    assert_eq!(q.queued_in_run("a").unwrap(), ids);
    assert_eq!(q.queued_in_run("b").unwrap(), vec![b.id]);
    assert!(q.queued_in_run("c").unwrap().is_empty());

    // Leasing one (the oldest background job, since the plain one is normal priority and
    // goes first) and cancelling another takes them out of the queued index.
    let worker = WorkerView::new("w", "GPU-0", &[]);
    let first = q.next_for_worker(&worker).unwrap().unwrap();
    assert_eq!(first.priority, Priority::Normal);
    let leased = q.next_for_worker(&worker).unwrap().unwrap();
    assert_eq!(leased.id, ids[0]);
    q.cancel(ids[1]).unwrap();
    assert_eq!(q.queued_in_run("a").unwrap(), vec![ids[2]]);
    assert_eq!(
        q.run_counts("a").unwrap(),
        Counts {
            queued: 1,
            leased: 1,
            cancelled: 1,
            ..Counts::default()
        }
    );

    let newer: Vec<JobId> = q
        .run_jobs_after("a", Some(ids[0]))
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(newer, ids[1..].to_vec());
    assert_eq!(q.run_jobs_after("a", None).unwrap().len(), 3);
    assert!(q.run_jobs_after("a", Some(ids[2])).unwrap().is_empty());
    assert!(q.verify().unwrap().is_empty());
}
