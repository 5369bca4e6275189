//! `jobs/jobs.log`: one JSON line per finished, failed, dead or cancelled job, the record
//! analytics reads. Lines are appended whole (one `write_all` on an O_APPEND file, then
//! fsync) and the reader skips lines that do not parse, counting them, so a torn last line
//! after a crash or a hand-edited line never breaks a report.

use crate::error::{QueueError, Result};
use crate::job::{Job, JobId, JobSpec, JobState, Placement, Priority, Source, Timings};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One line of `jobs.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub id: JobId,
    /// `done`, `failed`, `dead` or `cancelled`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub spec: JobSpec,
    /// Seeds actually used, one per image (empty when the job never produced images).
    #[serde(default)]
    pub seeds: Vec<i64>,
    #[serde(default)]
    pub model_hash: Option<String>,
    pub priority: Priority,
    pub source: Source,
    pub placement: Placement,
    pub attempts: u32,
    /// Daemon stops or crashes the job lived through (they use no attempt).
    #[serde(default)]
    pub interruptions: u32,
    #[serde(default)]
    pub worker: Option<String>,
    /// The GPU UUIDs of the last lease.
    #[serde(default)]
    pub gpus: Vec<String>,
    pub timings: Timings,
    #[serde(default)]
    pub outputs: Vec<String>,
}

impl LogRecord {
    /// The record for a job in a terminal state (other states produce a record too, with
    /// no finish time, but the queue only logs terminal ones).
    pub fn from_job(job: &Job) -> Self {
        let completion = job.completion.clone().unwrap_or_default();
        let error = match &job.state {
            JobState::Failed { error, .. } | JobState::Dead { error, .. } => Some(error.clone()),
            _ => None,
        };
        LogRecord {
            id: job.id,
            state: job.state.name().to_string(),
            error,
            spec: job.spec.clone(),
            seeds: completion.seeds,
            model_hash: job.spec.model_hash.clone(),
            priority: job.priority,
            source: job.source,
            placement: job.placement.clone(),
            attempts: job.attempts,
            interruptions: job.interruptions,
            worker: job.last_worker.clone(),
            gpus: job.last_gpus.clone(),
            timings: Timings {
                queued_at_ms: job.created_at_ms,
                started_at_ms: job.started_at_ms,
                finished_at_ms: job.state.finished_at_ms(),
                step_time_ms: completion.step_time_ms,
            },
            outputs: completion.outputs,
        }
    }
}

/// The appending side of `jobs.log`.
#[derive(Debug)]
pub struct JobLog {
    path: PathBuf,
    file: File,
}

impl JobLog {
    /// Opens (creating) the log for appending. If a crash left a partial last line, a
    /// newline is added first so the next record starts on a line of its own instead of
    /// being glued to the torn one.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| QueueError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
                file.sync_data().map_err(io)?;
            }
        }
        Ok(JobLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line and waits until it is on disk.
    pub fn append(&mut self, record: &LogRecord) -> Result<()> {
        self.append_json(record)
    }

    /// Appends any JSON value (an event line such as a favorite) the same way.
    pub fn append_json<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        let io = |source| QueueError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(value).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        // One write on an O_APPEND file: the line lands whole at the end, never interleaved.
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

/// What a read of `jobs.log` found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRead {
    pub records: Vec<LogRecord>,
    /// Lines that were not a valid record (corrupt, partial, or from an unknown format).
    pub skipped: usize,
}

fn is_event_line(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .is_some_and(|v| v.get("event").is_some_and(|e| e.is_string()))
}

/// Reads every record of `jobs.log`, skipping (and counting) lines that do not parse.
/// A missing file reads as empty: no job has finished yet.
pub fn read_log(path: &Path) -> Result<LogRead> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LogRead::default()),
        Err(source) => {
            return Err(QueueError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut read = LogRead::default();
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LogRecord>(line) {
            Ok(record) => read.records.push(record),
            // Event lines (favorites) are valid lines of another kind, not damage.
            Err(_) if is_event_line(line) => {}
            Err(_) => read.skipped += 1,
        }
    }
    Ok(read)
}
