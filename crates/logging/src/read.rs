//! One job's lines read back from the log files: the daemon's (`daemon-*.log`) and its
//! workers' (`worker-*.log`), text or JSON, merged in time order. A line belongs to job N
//! when it was written inside a `job` span whose `id` is N.

use crate::JOB_SPAN;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Which process wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Daemon,
    Worker,
}

impl Source {
    /// The source of a log file by its name; other files are not read.
    fn of(file_name: &str) -> Option<Source> {
        if !file_name.ends_with(".log") {
            return None;
        }
        if file_name.starts_with("daemon-") {
            Some(Source::Daemon)
        } else if file_name.starts_with("worker-") {
            Some(Source::Worker)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Daemon => "daemon",
            Source::Worker => "worker",
        }
    }
}

/// One line of a job's story.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLine {
    pub time: OffsetDateTime,
    pub source: Source,
    /// The file it came from (a name inside the logs folder).
    pub file: String,
    pub text: String,
}

/// Every line of job `id` in `dir`'s daemon and worker files changed since `since` (files
/// older than the job cannot hold it), oldest first; lines with the same time keep their
/// file's order.
pub fn job_lines(dir: &Path, id: u64, since: SystemTime) -> std::io::Result<Vec<JobLine>> {
    let mut lines = Vec::new();
    for (path, source) in log_files(dir, since)? {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reader = match std::fs::File::open(&path) {
            Ok(file) => std::io::BufReader::new(file),
            // Rotated or removed since the listing: nothing of it to show.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in reader.lines() {
            let line = line?;
            if let Some(time) = job_line_time(&line, id) {
                lines.push(JobLine {
                    time,
                    source,
                    file: file_name.clone(),
                    text: line,
                });
            }
        }
    }
    lines.sort_by_key(|l| l.time);
    Ok(lines)
}

fn log_files(dir: &Path, since: SystemTime) -> std::io::Result<Vec<(PathBuf, Source)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(source) = Source::of(&name) else {
            continue;
        };
        let fresh = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|modified| modified >= since)
            .unwrap_or(true);
        if fresh {
            files.push((entry.path(), source));
        }
    }
    files.sort();
    Ok(files)
}

/// The time of `line` when it is one of job `id`'s lines.
pub fn job_line_time(line: &str, id: u64) -> Option<OffsetDateTime> {
    if line.starts_with('{') {
        json_line_time(line, id)
    } else {
        text_line_time(line, id)
    }
}

/// `2026-12-03T09:40:01.123Z  INFO job{id=3 attempt=1}:step{n=2}: target: message`.
fn text_line_time(line: &str, id: u64) -> Option<OffsetDateTime> {
    let (stamp, rest) = line.split_once(' ')?;
    let open = format!("{JOB_SPAN}{{id={id}");
    // The span list ends at the first ": " after the level; look only there, not in the
    // message, which may quote anything.
    let spans = rest.trim_start().split_once(' ')?.1;
    let spans = spans.split(": ").next()?;
    let found = spans.split(':').any(|span| {
        span.strip_prefix(open.as_str())
            .is_some_and(|after| after.starts_with('}') || after.starts_with(' '))
    });
    if !found {
        return None;
    }
    OffsetDateTime::parse(stamp, &Rfc3339).ok()
}

/// `{"timestamp":"…","level":"INFO","fields":{…},"span":{…},"spans":[{"name":"job","id":3,…}]}`.
fn json_line_time(line: &str, id: u64) -> Option<OffsetDateTime> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    // `spans` lists the spans a line is in; a span's own `close` line has it only as `span`.
    let listed = value.get("spans").and_then(|s| s.as_array());
    let current = value.get("span");
    let found = listed.into_iter().flatten().chain(current).any(|span| {
        span.get("name").and_then(|n| n.as_str()) == Some(JOB_SPAN)
            && span.get("id").and_then(|i| i.as_u64()) == Some(id)
    });
    if !found {
        return None;
    }
    OffsetDateTime::parse(value.get("timestamp")?.as_str()?, &Rfc3339).ok()
}

#[cfg(test)]
mod tests;
