//! The reader against lines the real subscriber writes (text and JSON), and against
//! lines that only look like a job's.

use super::*;
use crate::settings::{Format, LogSettings};
use crate::setup::{file_layer, Options};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

/// Writes a small story into `dir/name` with the production layer: job 3's submit outside
/// an attempt, its attempt 1 with a nested step span, job 31's line, and a line about no job.
fn write_story(dir: &Path, name: &str, format: Format) {
    let file = std::fs::File::create(dir.join(name)).unwrap();
    let options = Options {
        command: "test",
        dir,
        span_timings: true,
        journal: false,
        settings: LogSettings {
            filter: "info".into(),
            format,
        },
    };
    let subscriber = tracing_subscriber::registry().with(file_layer(file, &options));
    tracing::subscriber::with_default(subscriber, || {
        crate::job_span!(3u64).in_scope(|| tracing::info!("submitted"));
        tracing::info!("a line about job{{id=3}} in the message only");
        crate::job_span!(31u64, 1u32).in_scope(|| tracing::info!("another job"));
        let attempt = crate::job_span!(3u64, 1u32);
        let _in_attempt = attempt.enter();
        tracing::info_span!("step", n = 1).in_scope(|| tracing::info!("stepping: {{}} : x"));
        tracing::warn!(error = "a: b", "done");
    });
}

fn texts(lines: &[JobLine]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

#[test]
fn text_lines_of_one_job_are_found_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_story(dir.path(), "daemon-a.log", Format::Text);
    let lines = job_lines(dir.path(), 3, SystemTime::UNIX_EPOCH).unwrap();
    let found = texts(&lines);
    // submitted and its span's close, the step's line and close, done, the attempt's close.
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(found[0].ends_with("submitted"), "{found:#?}");
    assert!(found[0].contains("job{id=3}"), "{found:#?}");
    assert!(
        found[2].contains("job{id=3 attempt=1}:step{n=1}"),
        "{found:#?}"
    );
    assert!(found[3].contains("close time.busy="), "{found:#?}");
    assert!(
        found[4].contains("WARN") && found[4].contains("done"),
        "{found:#?}"
    );
    assert!(lines.windows(2).all(|w| w[0].time <= w[1].time));
    assert!(lines.iter().all(|l| l.source == Source::Daemon));
    let other = job_lines(dir.path(), 31, SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(other.len(), 2, "{:#?}", texts(&other));
    assert!(job_lines(dir.path(), 1, SystemTime::UNIX_EPOCH)
        .unwrap()
        .is_empty());
}

#[test]
fn json_lines_are_found_by_their_span_list() {
    let dir = tempfile::tempdir().unwrap();
    write_story(dir.path(), "worker-a-cpu0-1.log", Format::Json);
    let lines = job_lines(dir.path(), 3, SystemTime::UNIX_EPOCH).unwrap();
    let all = std::fs::read_to_string(dir.path().join("worker-a-cpu0-1.log")).unwrap();
    assert_eq!(lines.len(), 6, "{all}");
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(&line.text).unwrap();
        assert!(value["timestamp"].is_string(), "{}", line.text);
        assert_eq!(line.source, Source::Worker);
    }
    assert_eq!(
        job_lines(dir.path(), 31, SystemTime::UNIX_EPOCH)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn both_sides_merge_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = "2026-12-03T10:00:00.100Z  INFO job{id=7}: imagelab_daemon: submitted\n\
                  2026-12-03T10:00:02.000Z  INFO job{id=7 attempt=1}: imagelab_daemon: done\n";
    let worker = "2026-12-03T10:00:01Z  INFO job{id=7 attempt=1}: imagelab::worker: started\n\
                  2026-12-03T10:00:01.5Z  INFO job{id=70 attempt=1}: imagelab::worker: no\n";
    std::fs::write(dir.path().join("daemon-x.log"), daemon).unwrap();
    std::fs::write(dir.path().join("worker-x-cpu0-1.log"), worker).unwrap();
    std::fs::write(dir.path().join("generate-x.log"), daemon).unwrap();
    let lines = job_lines(dir.path(), 7, SystemTime::UNIX_EPOCH).unwrap();
    let sources: Vec<_> = lines.iter().map(|l| l.source).collect();
    assert_eq!(sources, [Source::Daemon, Source::Worker, Source::Daemon]);
    assert!(lines[1].text.ends_with("started"));
    assert_eq!(lines[1].file, "worker-x-cpu0-1.log");
}

#[test]
fn files_older_than_the_job_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let line = "2026-12-03T10:00:00Z  INFO job{id=7}: imagelab_daemon: submitted\n";
    std::fs::write(dir.path().join("daemon-old.log"), line).unwrap();
    let later = SystemTime::now() + Duration::from_secs(60);
    assert!(job_lines(dir.path(), 7, later).unwrap().is_empty());
    assert_eq!(
        job_lines(dir.path(), 7, SystemTime::UNIX_EPOCH)
            .unwrap()
            .len(),
        1
    );
    let missing = dir.path().join("nothing-here");
    assert!(job_lines(&missing, 7, SystemTime::UNIX_EPOCH)
        .unwrap()
        .is_empty());
}
