//! The job store: jobs on sled in `jobs/queue.db`, every state change applied as one atomic
//! batch and flushed to disk before the call returns (returning is the acknowledgement).
//!
//! Key layout, all in the tree `jobs` (ids and times are big-endian so keys sort by them):
//!
//! | key                                  | value                      | meaning                 |
//! |--------------------------------------|----------------------------|-------------------------|
//! | `j` id:u64                           | JSON [`Job`]               | the job, with its state |
//! | `q` priority-rank:u8 id:u64          | JSON model, placement, run | queued index            |
//! | `f` finished_at_ms:u64 id:u64        | empty                      | finished index          |
//! | `m/next_id`                          | u64                        | next job id             |
//! | `m/paused`                           | `[0]` or `[1]`             | dispatch paused         |
//!
//! The state lives only inside the `j` record, so a job can never be in two states; the
//! `q` and `f` entries are indexes that every batch updates together with the record, and a
//! sled batch is recovered all-or-nothing after a crash. One in-process mutex serialises
//! read-check-write, so two callers never lease the same job (sled admits one process).

use crate::dispatch::IndexEntry;
use crate::error::{QueueError, Result};
use crate::job::{now_ms, Job, JobId, JobState, NewJob, Priority};
use crate::log::{JobLog, LogRecord};
use crate::state::{apply, Event};
use sled::Batch;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

mod admin;
mod favorites;
mod runs;
mod worker;

pub use favorites::{Favorite, FavoriteTarget};

const NEXT_ID: &[u8] = b"m/next_id";
const PAUSED: &[u8] = b"m/paused";

/// How the queue behaves; the daemon fills this from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueOptions {
    /// Attempts a job gets when its submission does not say.
    pub default_max_attempts: u32,
    /// Keep only the newest N finished jobs in the store (`jobs.log` keeps everything).
    pub history_limit: Option<usize>,
    /// Daemon stops or crashes one running job may live through; the next makes it dead.
    pub max_interruptions: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            default_max_attempts: 3,
            history_limit: Some(10_000),
            max_interruptions: DEFAULT_MAX_INTERRUPTIONS,
        }
    }
}

/// The default cap on interruptions: far more daemon crashes than any job meets by bad
/// luck, few enough to stop a job that itself brings the daemon down.
pub const DEFAULT_MAX_INTERRUPTIONS: u32 = 20;

/// What to do with jobs that were leased when the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryPolicy {
    /// Put them back in the queue and carry on.
    #[default]
    Requeue,
    /// Put them back, and pause dispatch until someone resumes it.
    Pause,
}

/// What [`Queue::recover_after_restart`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recovery {
    pub requeued: Vec<JobId>,
    /// Jobs interrupted `max_interruptions` times.
    pub dead: Vec<JobId>,
    /// Jobs whose cancel was asked before the stop.
    pub cancelled: Vec<JobId>,
    pub paused: bool,
}

/// How many jobs are in each state (for `daemon status`, the systemd STATUS line and a
/// night run's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub queued: usize,
    pub leased: usize,
    pub done: usize,
    pub failed: usize,
    pub dead: usize,
    pub cancelled: usize,
}

impl Counts {
    /// The counts of `jobs`, by state.
    pub fn of<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Counts {
        let mut counts = Counts::default();
        for job in jobs {
            *match job.state {
                JobState::Queued => &mut counts.queued,
                JobState::Leased { .. } => &mut counts.leased,
                JobState::Done { .. } => &mut counts.done,
                JobState::Failed { .. } => &mut counts.failed,
                JobState::Dead { .. } => &mut counts.dead,
                JobState::Cancelled { .. } => &mut counts.cancelled,
            } += 1;
        }
        counts
    }
}

struct Inner {
    next_id: u64,
    finished: usize,
    log: JobLog,
    /// The last `jobs.log` write failure: the transition itself was committed, so it is not
    /// returned as the call's error; the daemon reports it from here.
    log_error: Option<String>,
}

/// The durable job queue. Share it between threads behind an `Arc`.
pub struct Queue {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    options: QueueOptions,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("path", &self.path).finish()
    }
}

fn job_key(id: JobId) -> [u8; 9] {
    let mut key = [b'j'; 9];
    key[1..].copy_from_slice(&id.0.to_be_bytes());
    key
}

fn queued_key(priority: Priority, id: JobId) -> [u8; 10] {
    let mut key = [b'q'; 10];
    key[1] = priority.rank();
    key[2..].copy_from_slice(&id.0.to_be_bytes());
    key
}

fn finished_key(finished_at_ms: u64, id: JobId) -> [u8; 17] {
    let mut key = [b'f'; 17];
    key[1..9].copy_from_slice(&finished_at_ms.to_be_bytes());
    key[9..].copy_from_slice(&id.0.to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl Queue {
    /// Opens (creating) the queue in `jobs_dir`: the database `queue.db` and `jobs.log`.
    /// A second open of the same folder, in this or another process, is refused.
    pub fn open(jobs_dir: &Path, options: QueueOptions) -> Result<Queue> {
        let path = jobs_dir.join("queue.db");
        let storage = |what: &str, source| QueueError::Storage {
            path: path.clone(),
            what: what.to_string(),
            source,
        };
        std::fs::create_dir_all(jobs_dir).map_err(|source| QueueError::Io {
            path: jobs_dir.to_path_buf(),
            source,
        })?;
        let db = sled::Config::new()
            .path(&path)
            .open()
            .map_err(|e| storage("open (is another daemon using this jobs folder?)", e))?;
        let tree = db.open_tree("jobs").map_err(|e| storage("open tree", e))?;
        let next_id = tree
            .get(NEXT_ID)
            .map_err(|e| storage("read next id", e))?
            .and_then(|v| be_u64(&v))
            .unwrap_or(1);
        let finished = tree.scan_prefix(b"f").count();
        let log = JobLog::open(&jobs_dir.join("jobs.log"))?;
        Ok(Queue {
            db,
            tree,
            path,
            options,
            inner: Mutex::new(Inner {
                next_id,
                finished,
                log,
                log_error: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    fn storage(&self, what: impl Into<String>, source: sled::Error) -> QueueError {
        QueueError::Storage {
            path: self.path.clone(),
            what: what.into(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the database consistent (batches
        // are atomic); the in-memory counters are at worst approximate, so carry on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `batch` and flushes: when this returns Ok the change survives `kill -9`.
    fn commit(&self, batch: Batch, what: &str) -> Result<()> {
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.storage(what, e))?;
        self.db.flush().map_err(|e| self.storage(what, e))?;
        Ok(())
    }

    /// Submits one job; when this returns, the job is on disk.
    pub fn enqueue(&self, job: NewJob) -> Result<Job> {
        let mut jobs = self.enqueue_batch(vec![job])?;
        jobs.pop()
            .ok_or_else(|| QueueError::InvalidSpec("empty submission".into()))
    }

    /// Submits several jobs atomically (all or none) with a single flush.
    pub fn enqueue_batch(&self, new_jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        for job in &new_jobs {
            job.spec
                .params
                .validate()
                .map_err(|e| QueueError::InvalidSpec(e.to_string()))?;
            if job.max_attempts == Some(0) {
                return Err(QueueError::InvalidSpec(
                    "max_attempts 0: expected at least 1".into(),
                ));
            }
        }
        let mut inner = self.lock();
        let now = now_ms();
        let mut batch = Batch::default();
        let mut jobs = Vec::with_capacity(new_jobs.len());
        let mut next_id = inner.next_id;
        for new in new_jobs {
            let job = Job {
                id: JobId(next_id),
                spec: new.spec,
                priority: new.priority,
                source: new.source,
                placement: new.placement,
                created_at_ms: now,
                attempts: 0,
                max_attempts: new
                    .max_attempts
                    .unwrap_or(self.options.default_max_attempts),
                state: JobState::Queued,
                interruptions: 0,
                cancel_requested: false,
                last_error: None,
                started_at_ms: None,
                last_worker: None,
                last_gpus: vec![],
                completion: None,
            };
            next_id += 1;
            self.stage(&mut batch, None, &job, &mut 0)?;
            jobs.push(job);
        }
        batch.insert(NEXT_ID, &next_id.to_be_bytes());
        self.commit(batch, "enqueue")?;
        inner.next_id = next_id;
        Ok(jobs)
    }

    /// Adds the writes that take `old` (None for a new job) to `new` to `batch`: the record
    /// and both indexes. `finished_delta` counts jobs entering (+) or leaving (−) history.
    fn stage(
        &self,
        batch: &mut Batch,
        old: Option<&Job>,
        new: &Job,
        finished_delta: &mut isize,
    ) -> Result<()> {
        let record =
            serde_json::to_vec(new).map_err(|source| QueueError::Corrupt { id: new.id, source })?;
        batch.insert(&job_key(new.id), record);
        if let Some(old) = old {
            if old.state == JobState::Queued {
                batch.remove(&queued_key(old.priority, old.id));
            }
            if let Some(at) = old.state.finished_at_ms() {
                batch.remove(&finished_key(at, old.id));
                *finished_delta -= 1;
            }
        }
        if new.state == JobState::Queued {
            let entry = IndexEntry {
                model: new.spec.params.model.clone(),
                placement: new.placement.clone(),
                night_run: new.spec.night_run.clone(),
            };
            let value = serde_json::to_vec(&entry)
                .map_err(|source| QueueError::Corrupt { id: new.id, source })?;
            batch.insert(&queued_key(new.priority, new.id), value);
        }
        if let Some(at) = new.state.finished_at_ms() {
            batch.insert(&finished_key(at, new.id), &[]);
            *finished_delta += 1;
        }
        Ok(())
    }

    /// The job with this id. Readers take the lock too: a change is visible only once it
    /// is flushed, so nothing a client saw can be undone by a crash.
    pub fn get(&self, id: JobId) -> Result<Job> {
        let _inner = self.lock();
        self.read_job(id)
    }

    /// Every job, oldest first (under the lock, like [`Queue::get`]).
    pub fn list(&self) -> Result<Vec<Job>> {
        let _inner = self.lock();
        self.read_all()
    }

    /// [`Queue::get`] for callers that hold the lock.
    pub(crate) fn read_job(&self, id: JobId) -> Result<Job> {
        let bytes = self
            .tree
            .get(job_key(id))
            .map_err(|e| self.storage(format!("read job {id}"), e))?
            .ok_or(QueueError::NotFound { id })?;
        serde_json::from_slice(&bytes).map_err(|source| QueueError::Corrupt { id, source })
    }

    /// [`Queue::list`] for callers that hold the lock.
    pub(crate) fn read_all(&self) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for item in self.tree.scan_prefix(b"j") {
            let (key, bytes) = item.map_err(|e| self.storage("list jobs", e))?;
            let id = JobId(key.get(1..).and_then(be_u64).unwrap_or(0));
            jobs.push(
                serde_json::from_slice(&bytes)
                    .map_err(|source| QueueError::Corrupt { id, source })?,
            );
        }
        Ok(jobs)
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Result<Counts> {
        Ok(Counts::of(&self.list()?))
    }

    /// Runs `event` on job `id` under the lock, commits, and logs a job that just finished.
    pub(crate) fn transition(&self, id: JobId, event: Event) -> Result<Job> {
        let mut inner = self.lock();
        self.transition_locked(&mut inner, id, event)
    }

    fn transition_locked(&self, inner: &mut Inner, id: JobId, event: Event) -> Result<Job> {
        let old = self.read_job(id)?;
        let new = apply(&old, event)?;
        let mut batch = Batch::default();
        let mut delta = 0;
        self.stage(&mut batch, Some(&old), &new, &mut delta)?;
        let trimmed = self.stage_trim(&mut batch, inner, delta)?;
        self.commit(batch, &format!("update job {id}"))?;
        inner.finished = inner
            .finished
            .saturating_add_signed(delta)
            .saturating_sub(trimmed);
        // Logged after the commit: a line never describes a change that did not happen; a
        // crash in between loses that one line (the job itself is safe in the store).
        if new.state.is_terminal() && !old.state.is_terminal() {
            if let Err(e) = inner.log.append(&LogRecord::from_job(&new)) {
                inner.log_error = Some(format!("job {id}: {e}"));
            }
        }
        Ok(new)
    }

    /// Adds removals of the oldest finished jobs beyond the history limit; returns how many.
    fn stage_trim(&self, batch: &mut Batch, inner: &Inner, delta: isize) -> Result<usize> {
        let Some(limit) = self.options.history_limit else {
            return Ok(0);
        };
        let after = inner.finished.saturating_add_signed(delta);
        let excess = after.saturating_sub(limit);
        let mut trimmed = 0;
        for item in self.tree.scan_prefix(b"f").take(excess) {
            let (key, _) = item.map_err(|e| self.storage("trim history", e))?;
            if let Some(id) = key.get(9..).and_then(be_u64) {
                batch.remove(&job_key(JobId(id)));
            }
            batch.remove(key);
            trimmed += 1;
        }
        Ok(trimmed)
    }

    /// The last failure to append to `jobs.log`, if any, cleared by reading it.
    pub fn take_log_error(&self) -> Option<String> {
        self.lock().log_error.take()
    }
}
