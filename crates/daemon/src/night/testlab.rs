//! A temporary lab for the overnight runner's unit tests: themes (one plain, one with its
//! own weighted models, one using a mature profile, one malformed), a profile file, three
//! checkpoints, a fake clock and an adjustable worker count.
#![allow(clippy::unwrap_used)]

use super::catalog::Catalog;
use super::store::RunRecord;
use super::{Clock, FakeClock, NightOptions, Runner};
use imagelab_core::night::NightRequest;
use imagelab_core::Folders;
use imagelab_queue::{Queue, QueueOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// 2030-01-01 00:00 UTC: any fixed instant works, the runner only compares them.
pub const T0: u64 = 1_893_456_000_000;

pub const KNIGHTS: &str = "\
name: knights
templates:
  - \"a {red|blue|green} knight {riding|standing} in a {forest|castle|desert}, __light__\"
words:
  light: [dawn light, moonlight, torchlight]
negative: blurry
profile: noir
settings:
  steps: [20, 30]
  size: 512x512
";

const CASTLES: &str = "\
templates: [\"a {stone|ice} castle at {dusk|noon}\"]
models: [a, {value: b, weight: 2}]
settings: {size: 512x512}
";

const SPICY: &str = "\
templates: [\"a portrait\"]
profile: spicy
settings: {size: 512x512}
";

const PROFILES: &str = "\
profiles:
  - {id: noir, name: Noir, group: custom, prompt: \"{prompt}, film noir\"}
  - {id: spicy, name: Spicy, group: custom, prompt: \"{prompt}, spicy\", mature: true}
";

pub struct TestLab {
    pub dir: tempfile::TempDir,
    pub clock: Arc<FakeClock>,
    pub workers: Arc<AtomicUsize>,
    pub options: NightOptions,
}

impl TestLab {
    pub fn new() -> TestLab {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["models/checkpoints", "themes/profiles", "jobs", "output"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for model in ["a", "b", "c"] {
            std::fs::write(
                root.join(format!("models/checkpoints/{model}.safetensors")),
                b"x",
            )
            .unwrap();
        }
        let files = [
            ("themes/knights.yaml", KNIGHTS),
            ("themes/castles.yaml", CASTLES),
            ("themes/spicy.yaml", SPICY),
            ("themes/broken.yaml", "templates:\n  - \"ok\"\n  bad: [\n"),
            ("themes/profiles/test.yaml", PROFILES),
        ];
        for (path, text) in files {
            std::fs::write(root.join(path), text).unwrap();
        }
        let mut options = NightOptions::default();
        options.settings.models = vec!["c".into()];
        TestLab {
            dir,
            clock: Arc::new(FakeClock::new(T0)),
            workers: Arc::new(AtomicUsize::new(1)),
            options,
        }
    }

    pub fn folders(&self) -> Folders {
        let root = self.dir.path();
        Folders {
            models: root.join("models"),
            output: root.join("output"),
            jobs: root.join("jobs"),
            themes: root.join("themes"),
        }
    }

    /// Opens the lab's queue. A test that drops a queue and opens it again (a restart)
    /// may find sled's file lock still held for a moment by the dropped database's
    /// background flusher, so the open is retried for up to 5 s.
    pub fn queue(&self) -> Arc<Queue> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Queue::open(&self.folders().jobs, QueueOptions::default()) {
                Ok(queue) => return Arc::new(queue),
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot open the test queue: {e}"),
            }
        }
    }

    pub fn runner(&self, queue: Arc<Queue>) -> Runner {
        let workers = self.workers.clone();
        Runner::new(
            queue,
            self.folders(),
            self.options.clone(),
            self.clock.clone() as Arc<dyn Clock>,
            Arc::new(move || workers.load(Ordering::SeqCst)),
        )
    }

    pub fn set_workers(&self, n: usize) {
        self.workers.store(n, Ordering::SeqCst);
    }

    pub fn catalog(&self, request: &NightRequest) -> Catalog {
        Catalog::load(request, &self.options, &self.folders()).unwrap()
    }
}

/// A one-hour run of `themes` with run seed 42.
pub fn request(themes: &[&str]) -> NightRequest {
    NightRequest {
        themes: themes.iter().map(|t| t.to_string()).collect(),
        duration_secs: Some(3600),
        seed: Some(42),
        ..NightRequest::default()
    }
}

/// A running record for `request` as the runner would make it at [`T0`].
pub fn record(request: NightRequest) -> RunRecord {
    let ends = T0 + request.duration_secs.unwrap_or(3600) * 1000;
    let seed = request.seed.unwrap_or(42);
    RunRecord::new("night-test".into(), request, seed, T0, ends)
}
