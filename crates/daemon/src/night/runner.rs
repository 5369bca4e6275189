//! One overnight run's life over the queue: start (check, persist, first top-up), tick
//! (top up or end), stop, status, and resume after a restart. Synchronous and driven by
//! the caller's clock, so tests run a whole night on a fake clock; the actor calls it.
//!
//! Crash ordering of a top-up: the jobs are enqueued (one atomic, flushed batch) and only
//! then is `night.json` updated with the new count and the newest job id. A crash between
//! the two leaves jobs the file does not count; [`Runner::resume`] finds them by their
//! `night_run` above the recorded id and counts them, so the sequence neither repeats nor
//! skips a job. Ending a run persists the end first and then cancels its queued jobs, so a
//! crash in between can never resume a run that was stopped (leftovers are cancelled on
//! the next start).

use super::catalog::Catalog;
use super::plan::{self, Step};
use super::store::{EndCause, NightStore, RunRecord};
use super::{Clock, NightError, NightOptions, WorkersFn};
use imagelab_core::night::{NightRequest, NightStatus, MAX_RUN_SECS};
use imagelab_core::Folders;
use imagelab_queue::{JobId, Queue, QueueError};
use std::sync::Arc;

/// The run and what it draws from (`None` once it ended).
struct Current {
    record: RunRecord,
    catalog: Option<Catalog>,
}

/// Drives overnight runs: at most one running at a time, the last one remembered.
pub struct Runner {
    queue: Arc<Queue>,
    store: NightStore,
    clock: Arc<dyn Clock>,
    workers: WorkersFn,
    options: NightOptions,
    folders: Folders,
    current: Option<Current>,
}

impl Runner {
    pub fn new(
        queue: Arc<Queue>,
        folders: Folders,
        options: NightOptions,
        clock: Arc<dyn Clock>,
        workers: WorkersFn,
    ) -> Runner {
        Runner {
            store: NightStore::new(&folders.jobs),
            queue,
            clock,
            workers,
            options,
            folders,
            current: None,
        }
    }

    pub fn options(&self) -> &NightOptions {
        &self.options
    }

    /// Picks up `night.json` after a (re)start: a running run inside its window resumes
    /// with its counter repaired; one past its window is marked finished.
    pub fn resume(&mut self) -> Result<(), NightError> {
        let Some(mut record) = self.store.load()? else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        if !record.is_running() {
            self.withdraw_if_ended(&record)?;
            self.current = Some(Current {
                record,
                catalog: None,
            });
            return Ok(());
        }
        let uncounted = self
            .queue
            .run_jobs_after(&record.id, record.last_job_id.map(JobId))?;
        if let Some(newest) = uncounted.last() {
            tracing::warn!(
                "overnight run {}: {} job(s) queued before the last stop were not counted; counting them",
                record.id,
                uncounted.len()
            );
            record.submitted += uncounted.len() as u64;
            record.last_job_id = Some(newest.id.0);
        }
        let catalog = if now >= record.ends_at_ms {
            record.end(
                EndCause::Time,
                "its end time passed while the daemon was down",
                now,
            );
            None
        } else {
            match Catalog::load(&record.request, &self.options, &self.folders) {
                Ok(catalog) => Some(catalog),
                Err(e) => {
                    record.end(EndCause::Error, format!("cannot resume: {e}"), now);
                    None
                }
            }
        };
        self.store.save(&record)?;
        if catalog.is_some() {
            tracing::info!(
                "overnight run {} resumed at job {}",
                record.id,
                record.submitted
            );
        } else {
            self.withdraw_if_ended(&record)?;
        }
        self.current = Some(Current { record, catalog });
        Ok(())
    }

    /// Starts a run: checks the request, persists it, and tops the queue up once.
    pub fn start(&mut self, request: NightRequest) -> Result<NightStatus, NightError> {
        if let Some(current) = self.current.as_ref().filter(|c| c.record.is_running()) {
            return Err(NightError::Conflict(format!(
                "overnight run {} is already running; stop it first (imagelab night stop)",
                current.record.id
            )));
        }
        let now = self.clock.now_ms();
        let ends_at_ms = window_end(&request, now)?;
        if request.max_jobs == Some(0) {
            return Err(NightError::invalid(
                "max_jobs",
                "max_jobs 0: expected at least 1 (or leave it out for no limit)",
            ));
        }
        let catalog = Catalog::load(&request, &self.options, &self.folders)?;
        let seed = request.seed.unwrap_or_else(random_seed);
        let mut id = format!("night-{now}");
        if self.current.as_ref().is_some_and(|c| c.record.id == id) {
            // Two runs in the same millisecond (a script, a fake clock) still differ.
            id.push_str("-2");
        }
        let mut record = RunRecord::new(id, request, seed, now, ends_at_ms);
        record.models = catalog.model_names();
        // Job 0 is made here so a theme whose settings cannot make a job is a 400 now,
        // not a run that ends at its first tick.
        plan::job_at(&record, &catalog, 0).map_err(|e| NightError::invalid("themes", e))?;
        self.store.save(&record)?;
        tracing::info!(
            "overnight run {} started: themes {:?}, seed {seed}",
            record.id,
            record.request.themes
        );
        self.current = Some(Current {
            record,
            catalog: Some(catalog),
        });
        self.tick()?;
        self.status()
    }

    /// Tops the queue up, or ends the run when its time or job limit is reached.
    pub fn tick(&mut self) -> Result<(), NightError> {
        let Some(Current {
            record,
            catalog: Some(catalog),
        }) = self.current.as_mut()
        else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let queued = self.queue.queued_in_run(&record.id)?.len() as u64;
        match plan::step(record, catalog, now, queued, (self.workers)()) {
            Step::Submit(jobs) if jobs.is_empty() => Ok(()),
            Step::Submit(jobs) => {
                let created = self.queue.enqueue_batch(jobs)?;
                created.iter().for_each(crate::routes::log_submitted);
                record.submitted += created.len() as u64;
                record.last_job_id = created.last().map(|j| j.id.0).or(record.last_job_id);
                self.store.save(record)?;
                // The last allowed job is in: say so now rather than at the next tick.
                match plan::over(record, now) {
                    Some((cause, reason)) => self.end(cause, reason),
                    None => Ok(()),
                }
            }
            Step::Finish(cause, reason) => self.end(cause, reason),
        }
    }

    /// Stops the running run (its queued jobs are cancelled; running ones finish). A run
    /// that already ended is left as it is.
    pub fn stop(&mut self) -> Result<NightStatus, NightError> {
        match &self.current {
            None => return Err(NightError::NoRun),
            Some(current) if current.record.is_running() => {
                self.end(EndCause::Stopped, "stopped by request".to_string())?;
            }
            Some(_) => {}
        }
        self.status()
    }

    /// The current or last run with its jobs counted from the queue.
    pub fn status(&self) -> Result<NightStatus, NightError> {
        let record = &self.current.as_ref().ok_or(NightError::NoRun)?.record;
        let counts = self.queue.run_counts(&record.id)?;
        Ok(NightStatus {
            run_id: record.id.clone(),
            state: record.state(),
            reason: record.reason.clone(),
            themes: record.request.themes.clone(),
            models: record.models.clone(),
            started_at_ms: record.started_at_ms,
            ends_at_ms: record.ends_at_ms,
            finished_at_ms: record.finished_at_ms,
            max_jobs: record.request.max_jobs,
            submitted: record.submitted,
            queued: counts.queued as u64,
            running: counts.leased as u64,
            done: counts.done as u64,
            failed: (counts.failed + counts.dead) as u64,
            seed: record.seed,
        })
    }

    /// Ends the current run: persisted first, then its queued jobs withdrawn if the cause
    /// asks for it.
    fn end(&mut self, cause: EndCause, reason: String) -> Result<(), NightError> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        current.record.end(cause, reason, self.clock.now_ms());
        current.catalog = None;
        self.store.save(&current.record)?;
        tracing::info!(
            "overnight run {} {}: {}",
            current.record.id,
            current.record.state().as_str(),
            current.record.reason.as_deref().unwrap_or("")
        );
        let record = current.record.clone();
        self.withdraw_if_ended(&record)
    }

    /// Cancels the queued jobs of a run that ended by time or by request.
    fn withdraw_if_ended(&self, record: &RunRecord) -> Result<(), NightError> {
        if !record.ended.is_some_and(EndCause::withdraws_queued) {
            return Ok(());
        }
        for id in self.queue.queued_in_run(&record.id)? {
            match self.queue.cancel(id) {
                // A worker leased it in the meantime: it runs to the end.
                Ok(_) | Err(QueueError::IllegalTransition { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The run's end from exactly one of `ends_at_ms` and `duration_secs`.
fn window_end(request: &NightRequest, now: u64) -> Result<u64, NightError> {
    let max_ms = MAX_RUN_SECS * 1000;
    match (request.ends_at_ms, request.duration_secs) {
        (Some(_), Some(_)) | (None, None) => Err(NightError::invalid(
            "ends_at_ms",
            "give exactly one of ends_at_ms (an end time) and duration_secs (a length)",
        )),
        (None, Some(0)) => Err(NightError::invalid(
            "duration_secs",
            "duration_secs 0: the run needs a length",
        )),
        (None, Some(secs)) if secs > MAX_RUN_SECS => Err(NightError::invalid(
            "duration_secs",
            format!("duration_secs {secs}: at most {MAX_RUN_SECS} (7 days)"),
        )),
        (None, Some(secs)) => Ok(now + secs * 1000),
        (Some(end), None) if end <= now => Err(NightError::invalid(
            "ends_at_ms",
            format!("ends_at_ms {end} is in the past (now is {now})"),
        )),
        (Some(end), None) if end - now > max_ms => Err(NightError::invalid(
            "ends_at_ms",
            format!("ends_at_ms {end} is more than 7 days away"),
        )),
        (Some(end), None) => Ok(end),
    }
}

/// A fresh run seed: 53 bits, exact in JSON readers that use doubles.
fn random_seed() -> u64 {
    use rand::Rng;
    rand::rng().random_range(0..(1u64 << 53))
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
