//! `jobs/night.json`: the current or last overnight run (its request, seed, window,
//! counters and state), written atomically — temporary file, fsync, rename, fsync of the
//! folder — so a crash leaves either the old record or the new one, never a torn file.

use super::NightError;
use imagelab_core::night::{NightRequest, NightState};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name inside the jobs folder.
pub const NIGHT_FILE: &str = "night.json";

/// Bumped if the record changes incompatibly.
const FORMAT: u32 = 1;

/// Why a run ended; decides its shown state and whether its queued jobs are withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    /// The window closed: queued jobs are cancelled, so the GPUs are free in the morning.
    Time,
    /// `max_jobs` were submitted: they are the run's jobs, so they stay queued.
    MaxJobs,
    /// A person stopped it: queued jobs are cancelled.
    Stopped,
    /// It could not go on (a theme that no longer loads, a job that cannot be made).
    Error,
}

impl EndCause {
    pub fn state(self) -> NightState {
        match self {
            EndCause::Stopped => NightState::Stopped,
            _ => NightState::Finished,
        }
    }

    /// Whether the run's still-queued jobs are cancelled when it ends this way.
    pub fn withdraws_queued(self) -> bool {
        matches!(self, EndCause::Time | EndCause::Stopped)
    }
}

/// One run as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub id: String,
    /// The request as given (themes with their weights, models, limits).
    pub request: NightRequest,
    pub seed: u64,
    pub started_at_ms: u64,
    pub ends_at_ms: u64,
    /// Jobs in a row that keep one theme and model (so workers keep a model loaded).
    pub stretch: u64,
    /// Jobs submitted and counted; also the next job's index, which is where its seeds'
    /// random stream starts, so this is the run's whole RNG position.
    pub submitted: u64,
    /// The newest queue id counted in `submitted`: jobs of this run above it were queued
    /// by a top-up whose count never reached this file (a crash in between).
    pub last_job_id: Option<u64>,
    /// The checkpoints the run rotates through, for status.
    pub models: Vec<String>,
    /// `None` while running.
    pub ended: Option<EndCause>,
    pub reason: Option<String>,
    pub finished_at_ms: Option<u64>,
}

impl RunRecord {
    pub fn new(id: String, request: NightRequest, seed: u64, started: u64, ends: u64) -> Self {
        RunRecord {
            format: FORMAT,
            id,
            request,
            seed,
            started_at_ms: started,
            ends_at_ms: ends,
            stretch: super::plan::STRETCH,
            submitted: 0,
            last_job_id: None,
            models: Vec::new(),
            ended: None,
            reason: None,
            finished_at_ms: None,
        }
    }

    pub fn state(&self) -> NightState {
        self.ended.map_or(NightState::Running, EndCause::state)
    }

    pub fn is_running(&self) -> bool {
        self.ended.is_none()
    }

    pub fn end(&mut self, cause: EndCause, reason: impl Into<String>, now_ms: u64) {
        self.ended = Some(cause);
        self.reason = Some(reason.into());
        self.finished_at_ms = Some(now_ms);
    }
}

/// Reads and writes `night.json` in one folder.
#[derive(Debug, Clone)]
pub struct NightStore {
    path: PathBuf,
}

impl NightStore {
    pub fn new(jobs_dir: &Path) -> NightStore {
        NightStore {
            path: jobs_dir.join(NIGHT_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored run; `None` when no run was ever started.
    pub fn load(&self) -> Result<Option<RunRecord>, NightError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(NightError::Storage(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )))
            }
        };
        let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| {
            NightError::Storage(format!("{} is not a valid run: {e}", self.path.display()))
        })?;
        if record.format != FORMAT {
            return Err(NightError::Storage(format!(
                "{} has format {}, this daemon reads {FORMAT}",
                self.path.display(),
                record.format
            )));
        }
        Ok(Some(record))
    }

    /// Replaces the stored run; when this returns Ok the new record survives a power cut.
    pub fn save(&self, record: &RunRecord) -> Result<(), NightError> {
        let fail = |e: std::io::Error| {
            NightError::Storage(format!("cannot write {}: {e}", self.path.display()))
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| fail(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut file = std::fs::File::create(&tmp).map_err(fail)?;
            file.write_all(&bytes).map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        // The rename is durable only once the folder's entry is on disk too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = NightStore::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        let request = NightRequest {
            themes: vec!["a".into()],
            duration_secs: Some(60),
            ..NightRequest::default()
        };
        let mut record = RunRecord::new("night-1".into(), request, 7, 1_000, 61_000);
        record.submitted = 4;
        record.last_job_id = Some(9);
        store.save(&record).unwrap();
        assert_eq!(store.load().unwrap(), Some(record.clone()));
        record.end(EndCause::Stopped, "stopped by request", 2_000);
        store.save(&record).unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.state(), NightState::Stopped);
        assert!(!dir.path().join("night.json.tmp").exists());

        std::fs::write(store.path(), b"{\"format\":1,").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("night.json"), "{err}");
    }
}
