//! Reads for overnight runs: a run's queued jobs (from the queued index alone, cheap enough
//! for a once-a-second top-up), its jobs newer than a given id (for repairing the run's
//! counter after a crash), and per-state counts of all its jobs (for status).

use super::{be_u64, job_key, Counts, Queue};
use crate::dispatch::IndexEntry;
use crate::error::{QueueError, Result};
use crate::job::{Job, JobId};

impl Queue {
    /// The ids of run `run`'s queued jobs, in dispatch order. Reads only the queued index
    /// (one small JSON value per queued job of any run, no job records), so its cost grows
    /// with the number of queued jobs, not with the history.
    pub fn queued_in_run(&self, run: &str) -> Result<Vec<JobId>> {
        let mut ids = Vec::new();
        for item in self.tree.scan_prefix(b"q") {
            let (key, value) = item.map_err(|e| self.storage("scan queued jobs", e))?;
            let Some(id) = key.get(2..).and_then(be_u64) else {
                continue;
            };
            let entry: IndexEntry = match serde_json::from_slice(&value) {
                Ok(entry) => entry,
                // The dispatcher skips an unreadable entry too; it is not this run's job.
                Err(_) => continue,
            };
            if entry.night_run.as_deref() == Some(run) {
                ids.push(JobId(id));
            }
        }
        Ok(ids)
    }

    /// Run `run`'s jobs with an id above `after` (all of them for `None`), oldest first.
    /// Ids only grow, so this reads just the newest records: after a crash it finds the
    /// jobs a run submitted but had not yet counted.
    pub fn run_jobs_after(&self, run: &str, after: Option<JobId>) -> Result<Vec<Job>> {
        let start = after.map_or(0, |id| id.0.saturating_add(1));
        let mut jobs = Vec::new();
        for item in self
            .tree
            .range(job_key(JobId(start))..=job_key(JobId(u64::MAX)))
        {
            let (key, bytes) = item.map_err(|e| self.storage("scan a run's jobs", e))?;
            let id = JobId(key.get(1..).and_then(be_u64).unwrap_or(0));
            let job: Job = serde_json::from_slice(&bytes)
                .map_err(|source| QueueError::Corrupt { id, source })?;
            if job.spec.night_run.as_deref() == Some(run) {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// How many of run `run`'s jobs the store holds in each state (jobs trimmed by the
    /// history limit are not counted; they remain in `jobs.log`). Reads every job record:
    /// meant for a status request, not for a loop.
    pub fn run_counts(&self, run: &str) -> Result<Counts> {
        Ok(Counts::of(&self.run_jobs_after(run, None)?))
    }
}
