//! Streaming `jobs/jobs.log` line by line with one reused buffer: job lines are read
//! through a lenient borrowed view of the queue's `LogRecord` (only the fields analytics
//! needs; unknown fields ignored, missing ones defaulted), so old, newer and partial
//! records never break a report. Lines that are neither a job nor an event are counted.

use crate::error::{AnalyticsError, Result};
use crate::favorites::FavoriteEvent;
use serde::Deserialize;
use std::borrow::Cow;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::Path;

/// A string borrowed from the line when it has no escapes (the common case), so the
/// streaming loop does not allocate. (serde borrows a `Cow` only when it is the field's
/// own type, not inside `Option` or `Vec`, hence the newtype.)
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The generation parameters of a job line, as far as analytics cares.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ParamsView<'a> {
    #[serde(borrow)]
    pub prompt: Cow<'a, str>,
    #[serde(borrow)]
    pub negative: Cow<'a, str>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub steps: Option<u32>,
    pub cfg: Option<f64>,
    #[serde(borrow)]
    pub sampler: Option<Text<'a>>,
    #[serde(borrow)]
    pub scheduler: Option<Text<'a>>,
    pub seed: Option<i64>,
    #[serde(borrow)]
    pub loras: Vec<LoraView<'a>>,
}

/// A LoRA of a job's `loras` list (its name is all analytics groups by).
#[derive(Debug, Default, Deserialize)]
pub struct LoraView<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
}

/// The job spec of a job line: parameters plus the style profile and theme.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecView<'a> {
    #[serde(borrow)]
    pub params: ParamsView<'a>,
    #[serde(borrow)]
    pub style: Option<Text<'a>>,
    #[serde(borrow)]
    pub theme: Option<Text<'a>>,
}

/// The timings of a job line (milliseconds since the Unix epoch).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TimingsView {
    pub queued_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
}

/// One job line. `id` and `state` are required: a line without them is not a job.
#[derive(Debug, Deserialize)]
pub struct JobView<'a> {
    pub id: u64,
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    #[serde(default, borrow)]
    pub spec: SpecView<'a>,
    #[serde(default)]
    pub seeds: Vec<i64>,
    #[serde(default, borrow)]
    pub model_hash: Option<Text<'a>>,
    #[serde(default)]
    pub timings: TimingsView,
    #[serde(default, borrow)]
    pub outputs: Vec<Text<'a>>,
    /// A theme recorded at the top level (the prompt generator may put it here).
    #[serde(default, borrow)]
    pub theme: Option<Text<'a>>,
}

impl JobView<'_> {
    /// When the job finished (or, failing that, was queued).
    pub fn time_ms(&self) -> Option<u64> {
        self.timings.finished_at_ms.or(self.timings.queued_at_ms)
    }

    pub fn theme(&self) -> Option<&str> {
        self.spec.theme.as_deref().or(self.theme.as_deref())
    }
}

/// One parsed line. (One lives at a time, on the stack; boxing the job view would cost an
/// allocation per line for nothing.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum LogLine<'a> {
    Job(JobView<'a>),
    Event(FavoriteEvent),
}

/// Line counts of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LineCounts {
    /// Non-blank lines.
    pub lines: u64,
    pub jobs: u64,
    pub events: u64,
    /// Corrupt, partial or unknown lines, skipped.
    pub skipped: u64,
}

/// Parses one line: an event when it has an `"event"` key, else a job.
pub fn parse_line(line: &[u8]) -> Option<LogLine<'_>> {
    if memchr::memmem::find(line, b"\"event\"").is_some() {
        if let Ok(event) = serde_json::from_slice::<FavoriteEvent>(line) {
            return Some(LogLine::Event(event));
        }
    }
    serde_json::from_slice::<JobView>(line)
        .ok()
        .map(LogLine::Job)
}

/// Calls `visit` for every job and event line of `log`, in order, with constant memory.
/// A missing log reads as empty.
pub fn stream_log(log: &Path, visit: impl FnMut(LogLine<'_>)) -> Result<LineCounts> {
    stream_range(log, 0, u64::MAX, visit)
}

/// `parts` byte ranges covering a file of `len` bytes, for reading it on several threads.
pub fn split_ranges(len: u64, parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u64;
    let step = len.div_ceil(parts).max(1);
    (0..parts)
        .map(|i| {
            (
                i * step,
                if i + 1 == parts {
                    u64::MAX
                } else {
                    (i + 1) * step
                },
            )
        })
        .collect()
}

/// Like [`stream_log`] for the lines that start at a byte offset in `[start, end)`, so
/// adjacent ranges read every line exactly once.
pub fn stream_range(
    log: &Path,
    start: u64,
    end: u64,
    mut visit: impl FnMut(LogLine<'_>),
) -> Result<LineCounts> {
    let mut counts = LineCounts::default();
    let mut file = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(counts),
        Err(e) => return Err(AnalyticsError::io(log)(e)),
    };
    let io = AnalyticsError::io;
    let mut pos = start.saturating_sub(1);
    file.seek(SeekFrom::Start(pos)).map_err(io(log))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    if start > 0 {
        // The line running into `start` belongs to the range before (unless the byte
        // before `start` ends a line, in which case this only consumes that newline).
        pos += reader.read_until(b'\n', &mut line).map_err(io(log))? as u64;
    }
    while pos < end {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io(log))?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        counts.lines += 1;
        match parse_line(&line) {
            Some(parsed) => {
                match parsed {
                    LogLine::Job(_) => counts.jobs += 1,
                    LogLine::Event(_) => counts.events += 1,
                }
                visit(parsed);
            }
            None => counts.skipped += 1,
        }
    }
    Ok(counts)
}

impl LineCounts {
    /// Adds the counts of another range.
    pub fn merge(&mut self, o: &LineCounts) {
        self.lines += o.lines;
        self.jobs += o.jobs;
        self.events += o.events;
        self.skipped += o.skipped;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_strings_are_borrowed_and_escaped_ones_decoded() {
        let line = br#"{"id":1,"state":"done","spec":{"style":"noir","params":{"sampler":"eu\u006cer"}},"outputs":["a.png"]}"#;
        let Some(LogLine::Job(job)) = parse_line(line) else {
            panic!("not a job")
        };
        assert!(matches!(job.state, Cow::Borrowed("done")));
        assert!(matches!(
            job.spec.style.as_ref().unwrap().0,
            Cow::Borrowed("noir")
        ));
        assert!(matches!(job.outputs[0].0, Cow::Borrowed("a.png")));
        assert_eq!(job.spec.params.sampler.as_deref(), Some("euler"));
        assert!(
            parse_line(br#"{"state":"done"}"#).is_none(),
            "no id: not a job"
        );
    }

    #[test]
    fn ranges_read_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("jobs.log");
        let mut text = String::new();
        for id in 0..50 {
            text.push_str(&format!("{{\"id\":{id},\"state\":\"done\"}}\n"));
            if id % 7 == 0 {
                text.push_str("torn {\n\n");
            }
        }
        std::fs::write(&log, &text).unwrap();
        let whole = stream_log(&log, |_| {}).unwrap();
        assert_eq!((whole.jobs, whole.skipped), (50, 8));
        for parts in [2, 3, 7, 40, 2000] {
            let mut ids = Vec::new();
            let mut total = LineCounts::default();
            for (start, end) in split_ranges(text.len() as u64, parts) {
                let counts = stream_range(&log, start, end, |l| {
                    if let LogLine::Job(j) = l {
                        ids.push(j.id);
                    }
                })
                .unwrap();
                total.merge(&counts);
            }
            assert_eq!(total, whole, "{parts} parts");
            assert_eq!(ids, (0..50).collect::<Vec<u64>>(), "{parts} parts");
        }
    }
}
