//! Favorites as event lines in `jobs.log`: `{"event":"favorite","job":12,"rating":5,"at":…}`,
//! `{"event":"unfavorite","image":"job0000000012_000.png",…}` and `{"event":"rating",…}`.
//! The current set is the events folded in file order, so the log alone is the history and
//! the daemon's store can always be rebuilt from it.

use crate::error::{AnalyticsError, Result};
use crate::record::file_name;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Stars the image (and sets the rating when one is given).
    Favorite,
    /// Removes the star and the rating.
    Unfavorite,
    /// Sets (or, without a rating, clears) the rating; the star is unchanged.
    Rating,
}

/// One favorite event line. An event names a job (all its images), an image (by path;
/// matched on the file name), or both (the image wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FavoriteEvent {
    pub event: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub at: u64,
}

impl FavoriteEvent {
    /// A new event stamped with the current time; checks the target and the rating.
    pub fn new(
        event: EventKind,
        job: Option<u64>,
        image: Option<String>,
        rating: Option<u8>,
    ) -> Result<Self> {
        let e = FavoriteEvent {
            event,
            job,
            image,
            rating,
            at: now_ms(),
        };
        e.validate()?;
        Ok(e)
    }

    pub fn validate(&self) -> Result<()> {
        if self.job.is_none() && self.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err(AnalyticsError::Invalid {
                field: "target",
                value: String::new(),
                expected: "a job id or an image path".into(),
            });
        }
        if let Some(r) = self.rating {
            if !(1..=5).contains(&r) {
                return Err(AnalyticsError::Invalid {
                    field: "rating",
                    value: r.to_string(),
                    expected: "1 to 5".into(),
                });
            }
        }
        Ok(())
    }
}

/// The star and rating of one job or image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FavoriteState {
    pub favorite: bool,
    pub rating: Option<u8>,
}

/// The folded favorites: per job and per image file name. Memory grows with the number
/// of starred or rated items, never with the number of jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FavoriteSet {
    pub jobs: HashMap<u64, FavoriteState>,
    pub images: HashMap<String, FavoriteState>,
    /// Event lines folded (valid ones).
    pub events: u64,
}

impl FavoriteSet {
    /// Applies one event.
    pub fn apply(&mut self, e: &FavoriteEvent) {
        if e.validate().is_err() {
            return;
        }
        self.events += 1;
        let state = match e.image.as_deref() {
            Some(image) if !image.trim().is_empty() => {
                self.images.entry(file_name(image).to_string()).or_default()
            }
            _ => match e.job {
                Some(job) => self.jobs.entry(job).or_default(),
                None => return,
            },
        };
        match e.event {
            EventKind::Favorite => {
                state.favorite = true;
                if e.rating.is_some() {
                    state.rating = e.rating;
                }
            }
            EventKind::Unfavorite => *state = FavoriteState::default(),
            EventKind::Rating => state.rating = e.rating,
        }
    }

    /// The state of an image of `job` (when known) stored as `path`: an event naming the
    /// image beats one naming its job.
    pub fn lookup(&self, job: Option<u64>, path: &str) -> FavoriteState {
        if !self.images.is_empty() {
            if let Some(state) = self.images.get(file_name(path)) {
                return *state;
            }
        }
        job.and_then(|j| self.jobs.get(&j).copied())
            .unwrap_or_default()
    }

    /// The starred jobs and images, sorted (jobs first), for `imagelab favs`.
    pub fn starred(&self) -> Vec<(String, FavoriteState)> {
        let mut jobs: Vec<_> = self.jobs.iter().filter(|(_, s)| s.favorite).collect();
        jobs.sort_by_key(|(j, _)| **j);
        let mut images: Vec<_> = self.images.iter().filter(|(_, s)| s.favorite).collect();
        images.sort_by(|a, b| a.0.cmp(b.0));
        jobs.into_iter()
            .map(|(j, s)| (format!("job {j}"), *s))
            .chain(images.into_iter().map(|(i, s)| (i.clone(), *s)))
            .collect()
    }
}

/// Appends `event` to the log as one line, fsynced (the same discipline as the queue's
/// job lines: one write on an O_APPEND file, after healing a torn last line).
pub fn append_event(log: &Path, event: &FavoriteEvent) -> Result<()> {
    event.validate()?;
    let io = AnalyticsError::io(log);
    if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(AnalyticsError::io(dir))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(log)
        .map_err(AnalyticsError::io(log))?;
    let mut line = serde_json::to_vec(event).map_err(|e| AnalyticsError::Format {
        path: log.to_path_buf(),
        message: e.to_string(),
    })?;
    line.push(b'\n');
    let len = file.metadata().map_err(AnalyticsError::io(log))?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(AnalyticsError::io(log))?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(io)
}

/// Folds every favorite event of the log, in order. The file is read in large blocks and
/// only the lines around a `"event"` match are parsed (a vectorized byte search), so this
/// pass costs little more than reading the file. A missing log has no favorites.
pub fn fold_favorites(log: &Path) -> Result<FavoriteSet> {
    fold_in_blocks(log, BLOCK)
}

fn fold_in_blocks(log: &Path, block: usize) -> Result<FavoriteSet> {
    let mut set = FavoriteSet::default();
    let mut file = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(set),
        Err(e) => return Err(AnalyticsError::io(log)(e)),
    };
    let finder = memchr::memmem::Finder::new(b"\"event\"");
    let mut buf = vec![0u8; block.max(1)];
    // Bytes of an unfinished line carried from the previous block.
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // One line longer than the block: grow rather than split it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = file
            .read(&mut buf[filled..])
            .map_err(AnalyticsError::io(log))?;
        let end = filled + n;
        let complete = if n == 0 {
            end
        } else {
            match memchr::memrchr(b'\n', &buf[..end]) {
                Some(i) => i + 1,
                None => {
                    filled = end;
                    continue;
                }
            }
        };
        let block = &buf[..complete];
        let mut from = 0;
        while let Some(hit) = finder.find(&block[from..]).map(|i| i + from) {
            let start = memchr::memrchr(b'\n', &block[..hit]).map_or(0, |i| i + 1);
            let stop = memchr::memchr(b'\n', &block[hit..]).map_or(block.len(), |i| hit + i);
            if let Ok(event) = serde_json::from_slice::<FavoriteEvent>(&block[start..stop]) {
                set.apply(&event);
            }
            from = stop;
        }
        if n == 0 {
            break;
        }
        buf.copy_within(complete..end, 0);
        filled = end - complete;
    }
    Ok(set)
}

/// Bytes read at a time by [`fold_favorites`].
const BLOCK: usize = 8 << 20;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_split_across_blocks_are_all_folded() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("jobs.log");
        let mut text = String::new();
        for job in 1..=40u64 {
            text.push_str(&format!("{{\"id\":{job},\"state\":\"done\"}}\n"));
            text.push_str(&format!(
                "{{\"event\":\"favorite\",\"job\":{job},\"rating\":{}}}\n",
                job % 5 + 1
            ));
        }
        text.push_str("{\"event\":\"unfavorite\",\"job\":40}"); // no final newline
        std::fs::write(&log, text).unwrap();
        let whole = fold_in_blocks(&log, 1 << 20).unwrap();
        assert_eq!(whole.events, 41);
        assert_eq!(whole.starred().len(), 39);
        for block in [1, 7, 30, 64, 100] {
            assert_eq!(fold_in_blocks(&log, block).unwrap(), whole, "block {block}");
        }
    }
}
