//! One attempt's folder on the shared filesystem (`<jobs>/slurm/<job>-<attempt>/`): the
//! request the worker reads, the batch script, the record of the Slurm job id (written
//! before `sbatch` is run and again after, so a restarted daemon finds its jobs), the
//! worker's event lines and Slurm's log of the job.

use imagelab_core::worker::{WorkRequest, WorkerEvent};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What the daemon knows about an attempt's submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub job: u64,
    pub attempt: u32,
    /// `None` between writing the record and `sbatch` answering.
    pub slurm_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFolder {
    pub dir: PathBuf,
}

/// The Slurm job name of an attempt, which also finds it again after a crash. `queue` is
/// the queue's own token, so two queues (two users' labs, or tests) never share names.
pub fn job_name(queue: &str, job: u64, attempt: u32) -> String {
    format!("imagelab-{queue}-{job}-{attempt}")
}

/// The token naming this queue's Slurm jobs, made once and kept in `root/queue-token`.
pub fn queue_token(root: &Path) -> std::io::Result<String> {
    let path = root.join("queue-token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim();
        if !token.is_empty() {
            return Ok(token.to_string());
        }
    }
    std::fs::create_dir_all(root)?;
    let token = format!("{:08x}", rand::random::<u32>());
    write_durably(&path, token.as_bytes())?;
    Ok(token)
}

/// Writes `bytes` to `path` through a synced temporary file, so a reader sees all or none.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Quotes a path for the shell script.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

impl JobFolder {
    pub fn new(root: &Path, job: u64, attempt: u32) -> JobFolder {
        JobFolder {
            dir: root.join(format!("{job}-{attempt}")),
        }
    }

    pub fn request(&self) -> PathBuf {
        self.dir.join("request.json")
    }
    pub fn script(&self) -> PathBuf {
        self.dir.join("job.sh")
    }
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("slurm.log")
    }
    fn record_path(&self) -> PathBuf {
        self.dir.join("record.json")
    }

    /// Writes the request, the batch script and a record without a Slurm id.
    pub fn prepare(
        &self,
        request: &WorkRequest,
        program: &Path,
        device: &str,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_durably(&self.request(), &serde_json::to_vec(request)?)?;
        let script = format!(
            "#!/bin/sh\n# imagelab job {} attempt {}: the worker runs the one job and writes its events.\n\
             exec {} worker --device {} --one-job {} > {}\n",
            request.job,
            request.attempt,
            quoted(program),
            device,
            quoted(&self.request()),
            quoted(&self.events()),
        );
        write_durably(&self.script(), script.as_bytes())?;
        self.write_record(&Record {
            job: request.job,
            attempt: request.attempt,
            slurm_id: None,
        })
    }

    pub fn write_record(&self, record: &Record) -> std::io::Result<()> {
        write_durably(&self.record_path(), &serde_json::to_vec(record)?)
    }

    pub fn read_record(&self) -> Option<Record> {
        let bytes = std::fs::read(self.record_path()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The complete event lines after byte `offset`, and the offset after the last one (a
    /// line still being written waits for the next read).
    pub fn read_events(&self, offset: u64) -> (Vec<WorkerEvent>, u64) {
        let Ok(mut file) = std::fs::File::open(self.events()) else {
            return (Vec::new(), offset);
        };
        let mut text = String::new();
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_string(&mut text).is_err() {
            return (Vec::new(), offset);
        }
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        let events = text[..complete]
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        (events, offset + complete as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_and_events_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let folder = JobFolder::new(root.path(), 7, 2);
        let request: WorkRequest = serde_json::from_str(
            r#"{"job":7,"attempt":2,"params":{"model":"m"},"output_dir":"/o","stems":["s"]}"#,
        )
        .unwrap();
        folder
            .prepare(&request, Path::new("/bin/ima'gelab"), "cpu")
            .unwrap();
        assert_eq!(folder.read_record().unwrap().slurm_id, None);
        let script = std::fs::read_to_string(folder.script()).unwrap();
        assert!(
            script.contains(r"'/bin/ima'\''gelab' worker --device cpu --one-job"),
            "{script}"
        );
        std::fs::write(
            folder.events(),
            "{\"event\":\"ready\",\"pid\":1}\n{\"event\":\"progress\",\"job\":7,\"done\":1,\"total\":4}\n{\"event\":\"pro",
        )
        .unwrap();
        let (events, offset) = folder.read_events(0);
        assert_eq!(events.len(), 2);
        let (more, same) = folder.read_events(offset);
        assert!(more.is_empty());
        assert_eq!(same, offset);
    }
}
