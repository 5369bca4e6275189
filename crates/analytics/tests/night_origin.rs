//! Analytics reads the theme that the queue writes into `jobs.log` for a generated prompt:
//! a real queue finishes a themed job, and the streaming reader sees `spec.theme`.
#![allow(clippy::unwrap_used)]

use imagelab_analytics::joblog::{stream_log, LogLine};
use imagelab_core::GenerationParams;
use imagelab_queue::{Completion, JobSpec, NewJob, Priority, Queue, QueueOptions, WorkerView};

#[test]
fn a_finished_themed_job_is_read_with_its_theme_and_profile() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    let spec = JobSpec {
        params: GenerationParams {
            model: "m.safetensors".into(),
            prompt: "a knight".into(),
            seed: 3,
            ..Default::default()
        },
        style: Some("dark-fantasy".into()),
        theme: Some("dark fantasy".into()),
        theme_hash: Some("abcdef012345".into()),
        prompt_seed: Some(77),
        night_run: Some("night-1".into()),
        ..JobSpec::default()
    };
    let new = NewJob {
        spec,
        ..NewJob::default()
    }
    .priority(Priority::Background);
    queue.enqueue(new).unwrap();
    let leased = queue
        .next_for_worker(&WorkerView::new("w", "GPU-0", &[]))
        .unwrap()
        .unwrap();
    let completion = Completion {
        outputs: vec!["job0000000001_000.png".into()],
        seeds: vec![3],
        ..Completion::default()
    };
    queue.complete(leased.id, 1, completion).unwrap();
    drop(queue);

    let mut seen = Vec::new();
    let counts = stream_log(&dir.path().join("jobs.log"), |line| {
        if let LogLine::Job(job) = line {
            seen.push((
                job.theme().map(str::to_string),
                job.spec.style.as_deref().map(str::to_string),
            ));
        }
    })
    .unwrap();
    assert_eq!((counts.jobs, counts.skipped), (1, 0));
    assert_eq!(
        seen,
        vec![(
            Some("dark fantasy".to_string()),
            Some("dark-fantasy".to_string())
        )]
    );
}
