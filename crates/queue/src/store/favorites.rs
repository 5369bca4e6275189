//! Favorites: the user's stars (and optional 1–5 ratings) on jobs or on image files, kept
//! in the queue's database and logged as event lines in `jobs.log`, which analytics folds
//! (`{"event":"favorite"|"unfavorite", "job"|"image", "rating", "at"}`).

use super::{job_key, Queue};
use crate::error::{QueueError, Result};
use crate::job::{now_ms, JobId};
use serde::{Deserialize, Serialize};
use sled::Batch;

/// What a star is on: a job (all its images), or one image file in `output/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FavoriteTarget {
    Job(JobId),
    Image(String),
}

/// A stored favorite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Favorite {
    pub job: Option<u64>,
    pub image: Option<String>,
    pub rating: Option<u8>,
    pub at: u64,
}

#[derive(Serialize)]
struct FavoriteEventLine<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<u8>,
    at: u64,
}

fn favorite_key(target: &FavoriteTarget) -> Vec<u8> {
    match target {
        FavoriteTarget::Job(id) => format!("v0{:020}", id.0).into_bytes(),
        FavoriteTarget::Image(name) => format!("v1{name}").into_bytes(),
    }
}

impl Queue {
    /// Stars `target` (with an optional rating 1–5), durably, and logs the event.
    pub fn set_favorite(&self, target: &FavoriteTarget, rating: Option<u8>) -> Result<Favorite> {
        if let Some(r) = rating {
            if !(1..=5).contains(&r) {
                return Err(QueueError::InvalidSpec(format!(
                    "rating {r}: expected 1 to 5"
                )));
            }
        }
        let mut inner = self.lock();
        if let FavoriteTarget::Job(id) = target {
            let known = self
                .tree
                .contains_key(job_key(*id))
                .map_err(|e| self.storage("read job", e))?;
            if !known {
                return Err(QueueError::NotFound { id: *id });
            }
        }
        let (job, image) = match target {
            FavoriteTarget::Job(id) => (Some(id.0), None),
            FavoriteTarget::Image(name) => (None, Some(name.clone())),
        };
        let favorite = Favorite {
            job,
            image,
            rating,
            at: now_ms(),
        };
        let value =
            serde_json::to_vec(&favorite).map_err(|e| QueueError::InvalidSpec(e.to_string()))?;
        let mut batch = Batch::default();
        batch.insert(favorite_key(target), value);
        self.commit(batch, "write favorite")?;
        let line = FavoriteEventLine {
            event: "favorite",
            job,
            image: favorite.image.as_deref(),
            rating,
            at: favorite.at,
        };
        if let Err(e) = inner.log.append_json(&line) {
            inner.log_error = Some(e.to_string());
        }
        Ok(favorite)
    }

    /// Removes the star on `target`; returns whether there was one.
    pub fn clear_favorite(&self, target: &FavoriteTarget) -> Result<bool> {
        let mut inner = self.lock();
        let key = favorite_key(target);
        let existed = self
            .tree
            .contains_key(&key)
            .map_err(|e| self.storage("read favorite", e))?;
        let mut batch = Batch::default();
        batch.remove(key);
        self.commit(batch, "remove favorite")?;
        let removed = existed.then_some(());
        if removed.is_some() {
            let (job, image) = match target {
                FavoriteTarget::Job(id) => (Some(id.0), None),
                FavoriteTarget::Image(name) => (None, Some(name.as_str())),
            };
            let line = FavoriteEventLine {
                event: "unfavorite",
                job,
                image,
                rating: None,
                at: now_ms(),
            };
            if let Err(e) = inner.log.append_json(&line) {
                inner.log_error = Some(e.to_string());
            }
        }
        Ok(removed.is_some())
    }

    /// Every favorite, jobs first (by id), then images (by name).
    pub fn favorites(&self) -> Result<Vec<Favorite>> {
        self.tree
            .scan_prefix(b"v")
            .map(|entry| {
                let (_, value) = entry.map_err(|e| self.storage("read favorites", e))?;
                serde_json::from_slice(&value).map_err(|e| QueueError::InvalidSpec(e.to_string()))
            })
            .collect()
    }
}
