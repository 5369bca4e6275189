//! Which queued job a free worker should take: priority first, then model affinity (a job
//! whose model the worker already has loaded), then FIFO. Pure over the queued index so the
//! order is tested without a database.

use crate::job::{JobId, Placement};
use serde::{Deserialize, Serialize};

/// A worker as the supervisor sees it when it is free.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkerView {
    /// The worker's name, recorded in the lease.
    pub id: String,
    /// The GPU UUIDs it owns: one, or two (UNet GPU first) for a split pair.
    pub gpus: Vec<String>,
    /// Models its pipeline cache holds, spelled as job specs spell `params.model` (the
    /// daemon normalises both to the checkpoint's file name).
    pub models_loaded: Vec<String>,
}

impl WorkerView {
    pub fn new(id: impl Into<String>, gpu: impl Into<String>, models_loaded: &[String]) -> Self {
        WorkerView {
            id: id.into(),
            gpus: vec![gpu.into()],
            models_loaded: models_loaded.to_vec(),
        }
    }
}

/// What the queued index stores beside each key, so choosing a job needs no job records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IndexEntry {
    pub model: String,
    pub placement: Placement,
    /// The overnight run that submitted the job, so a run counts its queued jobs from the
    /// index alone (entries written before this field read as `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub night_run: Option<String>,
}

/// Picks from `entries`, which must come in index order (most urgent priority first, then
/// by id). Within the most urgent priority that has a job this worker may run, a job whose
/// model is loaded wins; otherwise the oldest one does.
pub(crate) fn choose(
    entries: impl IntoIterator<Item = (u8, JobId, IndexEntry)>,
    worker: &WorkerView,
) -> Option<JobId> {
    let mut best: Option<(u8, JobId)> = None;
    for (rank, id, entry) in entries {
        if let Some((best_rank, _)) = best {
            if rank > best_rank {
                // Lower priorities never beat an eligible job of a higher one.
                break;
            }
        }
        if !entry.placement.accepts(&worker.gpus) {
            continue;
        }
        if worker.models_loaded.contains(&entry.model) {
            return Some(id);
        }
        if best.is_none() {
            best = Some((rank, id));
        }
    }
    best.map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(rank: u8, id: u64, model: &str, placement: Placement) -> (u8, JobId, IndexEntry) {
        (
            rank,
            JobId(id),
            IndexEntry {
                model: model.into(),
                placement,
                night_run: None,
            },
        )
    }

    fn worker(gpu: &str, models: &[&str]) -> WorkerView {
        let models: Vec<String> = models.iter().map(|m| m.to_string()).collect();
        WorkerView::new("w", gpu, &models)
    }

    #[test]
    fn priority_beats_affinity_and_affinity_beats_fifo() {
        let entries = vec![
            e(0, 5, "a", Placement::Any),
            e(1, 1, "b", Placement::Any),
            e(1, 2, "c", Placement::Any),
        ];
        // The interactive job goes first even though the worker holds model c.
        assert_eq!(
            choose(entries.clone(), &worker("G", &["c"])),
            Some(JobId(5))
        );
        let normal = entries[1..].to_vec();
        assert_eq!(choose(normal.clone(), &worker("G", &["c"])), Some(JobId(2)));
        assert_eq!(choose(normal.clone(), &worker("G", &["x"])), Some(JobId(1)));
        assert_eq!(choose(normal, &worker("G", &[])), Some(JobId(1)));
    }

    #[test]
    fn placement_filters_and_lower_priorities_are_reached_when_needed() {
        let entries = vec![
            e(0, 1, "a", Placement::Gpu("OTHER".into())),
            e(1, 2, "a", Placement::Split("G".into(), "H".into())),
            e(2, 3, "a", Placement::Gpu("G".into())),
        ];
        assert_eq!(choose(entries.clone(), &worker("G", &[])), Some(JobId(3)));
        let pair = WorkerView {
            id: "pair".into(),
            gpus: vec!["G".into(), "H".into()],
            models_loaded: vec![],
        };
        assert_eq!(choose(entries.clone(), &pair), Some(JobId(2)));
        assert_eq!(choose(entries, &worker("Z", &[])), None);
        assert_eq!(choose(Vec::new(), &worker("G", &[])), None);
    }
}
