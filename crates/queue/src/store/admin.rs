//! Queue-wide operations: pause and resume, reprioritise, recovery after a restart,
//! clearing history, and an integrity check of the indexes against the job records.

use super::{be_u64, finished_key, job_key, queued_key, Queue, Recovery, RecoveryPolicy, PAUSED};
use crate::error::{QueueError, Result};
use crate::job::{now_ms, Job, JobId, JobState, Priority};
use crate::log::LogRecord;
use crate::state::{apply, Event};
use sled::Batch;
use std::collections::HashSet;

impl Queue {
    /// Whether dispatch is paused (persisted: a paused queue stays paused after a restart).
    pub fn is_paused(&self) -> Result<bool> {
        let value = self
            .tree
            .get(PAUSED)
            .map_err(|e| self.storage("read paused flag", e))?;
        Ok(value.is_some_and(|v| v.first() == Some(&1)))
    }

    /// Stops dispatch: running jobs finish, queued ones wait.
    pub fn pause(&self) -> Result<()> {
        self.set_paused(true)
    }

    pub fn resume(&self) -> Result<()> {
        self.set_paused(false)
    }

    fn set_paused(&self, paused: bool) -> Result<()> {
        let _inner = self.lock();
        let mut batch = Batch::default();
        batch.insert(PAUSED, &[u8::from(paused)]);
        self.commit(batch, if paused { "pause" } else { "resume" })
    }

    /// Moves a queued or running job to another priority (a running one keeps running; the
    /// priority matters if it is re-queued).
    pub fn reprioritise(&self, id: JobId, priority: Priority) -> Result<Job> {
        let _inner = self.lock();
        let old = self.read_job(id)?;
        if old.state.is_terminal() {
            return Err(QueueError::IllegalTransition {
                id,
                action: "reprioritise",
                state: old.state.name(),
            });
        }
        let new = Job {
            priority,
            ..old.clone()
        };
        let mut batch = Batch::default();
        self.stage(&mut batch, Some(&old), &new, &mut 0)?;
        self.commit(batch, &format!("reprioritise job {id}"))?;
        Ok(new)
    }

    /// After a restart: every job still leased was interrupted. It goes back to the queue
    /// without using an attempt, its interruption counted (dead at `max_interruptions`;
    /// cancelled if cancel was asked).
    /// With [`RecoveryPolicy::Pause`] dispatch is also paused, in the same atomic write.
    pub fn recover_after_restart(&self, policy: RecoveryPolicy) -> Result<Recovery> {
        self.recover_after_restart_keeping(policy, &|_| false)
    }

    /// [`Queue::recover_after_restart`], leaving the leased jobs `keep` picks as they are:
    /// jobs a Slurm cluster runs outlive the daemon that submitted them, and the next one
    /// follows them to their end.
    pub fn recover_after_restart_keeping(
        &self,
        policy: RecoveryPolicy,
        keep: &dyn Fn(&Job) -> bool,
    ) -> Result<Recovery> {
        let mut inner = self.lock();
        let now = now_ms();
        let mut batch = Batch::default();
        let mut delta = 0;
        let mut recovery = Recovery::default();
        let mut finished = Vec::new();
        for old in self.read_all()? {
            if !matches!(old.state, JobState::Leased { .. }) || keep(&old) {
                continue;
            }
            let event = Event::Recover {
                now_ms: now,
                max_interruptions: self.options.max_interruptions.max(1),
            };
            let new = apply(&old, event)?;
            self.stage(&mut batch, Some(&old), &new, &mut delta)?;
            match new.state {
                JobState::Queued => recovery.requeued.push(new.id),
                JobState::Dead { .. } => recovery.dead.push(new.id),
                _ => recovery.cancelled.push(new.id),
            }
            if new.state.is_terminal() {
                finished.push(new);
            }
        }
        if policy == RecoveryPolicy::Pause {
            batch.insert(PAUSED, &[1]);
            recovery.paused = true;
        }
        let trimmed = self.stage_trim(&mut batch, &inner, delta)?;
        self.commit(batch, "recover leased jobs")?;
        inner.finished = inner
            .finished
            .saturating_add_signed(delta)
            .saturating_sub(trimmed);
        for job in &finished {
            if let Err(e) = inner.log.append(&LogRecord::from_job(job)) {
                inner.log_error = Some(format!("job {}: {e}", job.id));
            }
        }
        Ok(recovery)
    }

    /// Removes every finished, failed, dead and cancelled job from the store (they stay in
    /// `jobs.log`); returns how many.
    pub fn clear_finished(&self) -> Result<usize> {
        let mut inner = self.lock();
        let mut batch = Batch::default();
        let mut removed = 0;
        for item in self.tree.scan_prefix(b"f") {
            let (key, _) = item.map_err(|e| self.storage("clear finished", e))?;
            if let Some(id) = key.get(9..).and_then(be_u64) {
                batch.remove(&job_key(JobId(id)));
            }
            batch.remove(key);
            removed += 1;
        }
        self.commit(batch, "clear finished")?;
        inner.finished = 0;
        Ok(removed)
    }

    /// Checks that the indexes agree with the job records; returns the problems found
    /// (empty when consistent). Used by the crash tests and by `daemon status --check`.
    pub fn verify(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut queued_keys = HashSet::new();
        let mut finished_keys = HashSet::new();
        for job in self.list()? {
            if job.state == JobState::Queued {
                queued_keys.insert(queued_key(job.priority, job.id).to_vec());
            }
            if let Some(at) = job.state.finished_at_ms() {
                finished_keys.insert(finished_key(at, job.id).to_vec());
            }
        }
        for (prefix, expected) in [(b"q", &queued_keys), (b"f", &finished_keys)] {
            let mut seen = HashSet::new();
            for item in self.tree.scan_prefix(prefix) {
                let (key, _) = item.map_err(|e| self.storage("verify", e))?;
                if !expected.contains(key.as_ref()) {
                    problems.push(format!("stray index entry {:?}", key.as_ref()));
                }
                seen.insert(key.to_vec());
            }
            for key in expected.difference(&seen) {
                problems.push(format!("missing index entry {key:?}"));
            }
        }
        Ok(problems)
    }
}
