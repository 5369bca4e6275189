//! What workers and the supervisor do to single jobs: pick the next job for a free worker
//! (with or without leasing it), lease, report success, failure or release, and cancel.

use super::{be_u64, Queue};
use crate::dispatch::{choose, IndexEntry, WorkerView};
use crate::error::Result;
use crate::job::{now_ms, Completion, Job, JobId};
use crate::state::Event;

impl Queue {
    /// The queued job that [`Queue::next_for_worker`] would lease to `worker` now, without
    /// leasing it. `None` when nothing fits or dispatch is paused.
    pub fn peek_for_worker(&self, worker: &WorkerView) -> Result<Option<Job>> {
        if self.is_paused()? {
            return Ok(None);
        }
        match self.choose_for(worker)? {
            Some(id) => self.get(id).map(Some),
            None => Ok(None),
        }
    }

    /// Leases the job `worker` should run next (priority, then model affinity, then FIFO)
    /// and returns it, leased. Two callers never get the same job.
    pub fn next_for_worker(&self, worker: &WorkerView) -> Result<Option<Job>> {
        let mut inner = self.lock();
        if self.is_paused()? {
            return Ok(None);
        }
        let Some(id) = self.choose_for(worker)? else {
            return Ok(None);
        };
        let event = Event::Lease {
            worker: worker.id.clone(),
            gpu_uuids: worker.gpus.clone(),
            now_ms: now_ms(),
        };
        self.transition_locked(&mut inner, id, event).map(Some)
    }

    /// Walks the queued index lazily, so a worker that finds an affinity match (or the only
    /// eligible job of the top priority) early stops reading there.
    fn choose_for(&self, worker: &WorkerView) -> Result<Option<JobId>> {
        let mut scan_error = None;
        let entries = self
            .tree
            .scan_prefix(b"q")
            .map_while(|item| item.map_err(|e| scan_error = Some(e)).ok())
            .filter_map(|(key, value)| {
                let id = be_u64(key.get(2..)?)?;
                let entry = serde_json::from_slice::<IndexEntry>(&value).ok()?;
                Some((key[1], JobId(id), entry))
            });
        let chosen = choose(entries, worker);
        match scan_error {
            Some(e) => Err(self.storage("scan queued jobs", e)),
            None => Ok(chosen),
        }
    }

    /// Leases one given job (the supervisor chose it, e.g. from [`Queue::peek_for_worker`]).
    /// Fails if it is no longer queued.
    pub fn lease(&self, id: JobId, worker: &str, gpu_uuids: &[String]) -> Result<Job> {
        self.transition(
            id,
            Event::Lease {
                worker: worker.to_string(),
                gpu_uuids: gpu_uuids.to_vec(),
                now_ms: now_ms(),
            },
        )
    }

    /// The worker finished `attempt` of job `id`.
    pub fn complete(&self, id: JobId, attempt: u32, completion: Completion) -> Result<Job> {
        let now_ms = now_ms();
        self.transition(
            id,
            Event::Complete {
                attempt,
                completion,
                now_ms,
            },
        )
    }

    /// The worker's `attempt` failed; a retryable error re-queues the job while it has
    /// attempts left, and makes it dead after the last one.
    pub fn fail(&self, id: JobId, attempt: u32, error: &str, retryable: bool) -> Result<Job> {
        let now_ms = now_ms();
        let error = error.to_string();
        self.transition(
            id,
            Event::Fail {
                attempt,
                error,
                retryable,
                now_ms,
            },
        )
    }

    /// The worker gives the job back unrun; no attempt is used.
    pub fn release(&self, id: JobId, attempt: u32) -> Result<Job> {
        self.transition(
            id,
            Event::Release {
                attempt,
                now_ms: now_ms(),
            },
        )
    }

    /// Cancels a queued job at once; a leased one is marked `cancel_requested` (the caller
    /// tells its worker, whose report then ends it as cancelled).
    pub fn cancel(&self, id: JobId) -> Result<Job> {
        self.transition(id, Event::Cancel { now_ms: now_ms() })
    }
}
