//! Favorites in the queue's store: durable across reopening, validated, and logged as
//! event lines in jobs.log that the job-record reader passes over without calling damage.
#![allow(clippy::unwrap_used)]

use imagelab_core::GenerationParams;
use imagelab_queue::{read_log, FavoriteTarget, JobId, NewJob, Queue, QueueError, QueueOptions};

fn new_job() -> NewJob {
    NewJob::new(GenerationParams {
        model: "m".into(),
        ..GenerationParams::default()
    })
}

#[test]
fn favorites_are_durable_validated_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let queue = Queue::open(dir.path(), QueueOptions::default()).unwrap();
        let id = queue.enqueue(new_job()).unwrap().id;
        queue
            .set_favorite(&FavoriteTarget::Job(id), Some(5))
            .unwrap();
        queue
            .set_favorite(&FavoriteTarget::Image("a.png".into()), None)
            .unwrap();
        assert!(matches!(
            queue.set_favorite(&FavoriteTarget::Job(JobId(9999)), None),
            Err(QueueError::NotFound { .. })
        ));
        assert!(queue
            .set_favorite(&FavoriteTarget::Job(id), Some(6))
            .is_err());
        id
    };
    let queue = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    let favs = queue.favorites().unwrap();
    assert_eq!(favs.len(), 2);
    assert_eq!((favs[0].job, favs[0].rating), (Some(id.0), Some(5)));
    assert_eq!(favs[1].image.as_deref(), Some("a.png"));
    assert!(queue
        .clear_favorite(&FavoriteTarget::Image("a.png".into()))
        .unwrap());
    assert!(!queue
        .clear_favorite(&FavoriteTarget::Image("a.png".into()))
        .unwrap());
    assert_eq!(queue.favorites().unwrap().len(), 1);

    let log = std::fs::read_to_string(dir.path().join("jobs.log")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["favorite", "favorite", "unfavorite"]);
    assert_eq!(events[0]["job"], id.0);
    assert_eq!(events[0]["rating"], 5);
    assert_eq!(read_log(&dir.path().join("jobs.log")).unwrap().skipped, 0);
}
