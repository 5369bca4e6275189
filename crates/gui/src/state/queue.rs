//! The queue page as data: every job the daemon holds, newest first, kept current from the
//! event stream (a state change updates one row; a job the page has not seen yet is
//! fetched), with the state filter and each row's line of text.

use imagelab_core::api::{JobPriority, JobSource, JobView, SubmitRequest};
use std::collections::HashMap;

/// The filter's choices, as the dropdown shows them.
pub const FILTERS: [&str; 6] = ["All", "Queued", "Running", "Done", "Failed", "Cancelled"];

/// One job as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub view: JobView,
    /// `(done, total)` sampling steps while it runs.
    pub steps: Option<(usize, usize)>,
}

/// What an event did to the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowChange {
    /// This row changed: redraw it.
    Updated(u64),
    /// A job the page does not hold: fetch it, then [`JobRows::upsert`] it.
    Unknown(u64),
    /// This row changed and ended: redraw it, and fetch it for what the event does not
    /// carry (its images and times).
    Ended(u64),
}

/// Every job, by id; the page lists them newest (highest id) first.
#[derive(Debug, Default)]
pub struct JobRows {
    rows: HashMap<u64, JobRow>,
}

impl JobRows {
    pub fn from_views(views: Vec<JobView>) -> JobRows {
        let mut rows = JobRows::default();
        for view in views {
            rows.upsert(view);
        }
        rows
    }

    /// Adds or replaces a job (a fetch's answer); returns whether it was new.
    pub fn upsert(&mut self, view: JobView) -> bool {
        let running = view.state == "leased";
        let id = view.id;
        let old = self.rows.insert(id, JobRow { view, steps: None });
        if let (Some(old), true) = (&old, running) {
            if let Some(row) = self.rows.get_mut(&id) {
                row.steps = old.steps;
            }
        }
        old.is_none()
    }

    pub fn get(&self, id: u64) -> Option<&JobRow> {
        self.rows.get(&id)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// A job event from the stream.
    pub fn state_changed(
        &mut self,
        id: u64,
        state: &str,
        worker: Option<String>,
        error: Option<String>,
    ) -> RowChange {
        let Some(row) = self.rows.get_mut(&id) else {
            return RowChange::Unknown(id);
        };
        row.view.state = state.to_string();
        if worker.is_some() {
            row.view.worker = worker;
        }
        if error.is_some() {
            row.view.error = error;
        }
        if state != "leased" {
            row.steps = None;
        }
        if matches!(state, "done" | "failed" | "dead") {
            RowChange::Ended(id)
        } else {
            RowChange::Updated(id)
        }
    }

    /// A progress event: the steps a running job has done.
    pub fn progressed(&mut self, id: u64, done: usize, total: usize) -> Option<RowChange> {
        let row = self.rows.get_mut(&id)?;
        row.steps = Some((done, total));
        Some(RowChange::Updated(id))
    }

    /// (id, first image, finished at) of each done job overnight run `run` submitted.
    pub fn done_of_run(&self, run: &str) -> Vec<(u64, String, Option<u64>)> {
        self.rows
            .values()
            .filter(|r| r.view.state == "done" && r.view.night_run.as_deref() == Some(run))
            .filter_map(|r| {
                let image = r.view.outputs.first()?.clone();
                Some((r.view.id, image, r.view.timings.finished_at_ms))
            })
            .collect()
    }

    /// The ids the filter shows, newest first.
    pub fn visible(&self, filter: usize) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .rows
            .values()
            .filter(|r| shown_by(filter, &r.view.state))
            .map(|r| r.view.id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }
}

/// Where job `id` is (`Ok`) or would go (`Err`) in a list of `len` ids sorted newest
/// (highest) first, `at(i)` reading the id at `i`: a binary search, so a progress event for
/// the oldest of 10,000 rows costs 14 reads, not 10,000.
pub fn slot_for(len: u32, id: u64, at: impl Fn(u32) -> Option<u64>) -> Result<u32, u32> {
    let (mut low, mut high) = (0u32, len);
    while low < high {
        let mid = low + (high - low) / 2;
        match at(mid) {
            Some(here) if here == id => return Ok(mid),
            Some(here) if here > id => low = mid + 1,
            _ => high = mid,
        }
    }
    Err(low)
}

/// Whether a job in `state` passes filter number `filter` (an index into [`FILTERS`]).
pub fn shown_by(filter: usize, state: &str) -> bool {
    match filter {
        1 => state == "queued",
        2 => state == "leased",
        3 => state == "done",
        4 => state == "failed" || state == "dead",
        5 => state == "cancelled",
        _ => true,
    }
}

/// The row's text: "#12 · running 5/20 · normal · sdxl · a lighthouse at dusk · on cpu".
pub fn row_text(row: &JobRow) -> String {
    let v = &row.view;
    let state = match (v.state.as_str(), row.steps) {
        ("leased", Some((done, total))) => format!("running {done}/{total}"),
        ("leased", None) => "running".to_string(),
        (other, _) => other.to_string(),
    };
    let mut prompt: String = v.spec.prompt.chars().take(60).collect();
    if v.spec.prompt.chars().count() > 60 {
        prompt.push('…');
    }
    let priority = format!("{:?}", v.priority).to_lowercase();
    let mut text = format!(
        "#{} · {state} · {priority} · {} · {prompt}",
        v.id, v.spec.model
    );
    if let Some(worker) = &v.worker {
        text.push_str(&format!(" · on {worker}"));
    }
    if let (Some(start), Some(end)) = (v.timings.started_at_ms, v.timings.finished_at_ms) {
        text.push_str(&format!(
            " · {:.1} s",
            end.saturating_sub(start) as f64 / 1000.0
        ));
    }
    if let Some(error) = v.error.as_deref().filter(|_| v.state != "done") {
        text.push_str(&format!(" · {error}"));
    }
    text
}

/// Whether cancel makes sense for a job in `state`.
pub fn cancellable(state: &str) -> bool {
    state == "queued" || state == "leased"
}

/// Whether a job's priority can still change: while it waits, and while it runs (a
/// running background job yields to interactive ones).
pub fn reprioritisable(state: &str) -> bool {
    state == "queued" || state == "leased"
}

/// Whether Retry makes sense: the job ended without its images.
pub fn retryable(state: &str) -> bool {
    matches!(state, "failed" | "dead" | "cancelled")
}

/// The image Open shows: a done job's first output.
pub fn first_output(row: &JobRow) -> Option<&str> {
    (row.view.state == "done")
        .then(|| row.view.outputs.first().map(String::as_str))
        .flatten()
}

/// The priority menu's choices, as the menu names them.
pub const PRIORITIES: [(JobPriority, &str); 3] = [
    (JobPriority::Interactive, "Interactive"),
    (JobPriority::Normal, "Normal"),
    (JobPriority::Background, "Background"),
];

/// The same job again: its spec, style, priority and GPU, one image, from the app.
pub fn retry_request(view: &JobView) -> SubmitRequest {
    SubmitRequest {
        spec: view.spec.clone(),
        style: view.style.clone(),
        priority: view.priority,
        count: 1,
        gpu: view.gpu.clone(),
        source: JobSource::Gui,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, state: &str) -> JobView {
        let json = serde_json::json!({
            "id": id, "state": state, "priority": "normal", "source": "cli", "gpu": null,
            "spec": {"model": "tiny", "prompt": "a lighthouse at dusk"}, "style": null,
            "attempts": 0, "max_attempts": 3,
            "timings": {"queued_at_ms": 1}, "worker": null, "gpus": [], "outputs": [],
            "seeds": [1], "error": null, "cancel_requested": false
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn events_update_rows_and_unknown_jobs_are_fetched() {
        let mut rows = JobRows::from_views(vec![view(1, "done"), view(2, "queued")]);
        assert_eq!(rows.visible(0), [2, 1]);
        assert_eq!(
            rows.state_changed(2, "leased", Some("cpu".into()), None),
            RowChange::Updated(2)
        );
        assert_eq!(rows.progressed(2, 5, 20), Some(RowChange::Updated(2)));
        let text = row_text(rows.get(2).unwrap());
        assert_eq!(
            text,
            "#2 · running 5/20 · normal · tiny · a lighthouse at dusk · on cpu"
        );
        assert_eq!(
            rows.state_changed(3, "queued", None, None),
            RowChange::Unknown(3)
        );
        assert!(rows.upsert(view(3, "queued")));
        assert!(!rows.upsert(view(3, "queued")));
        assert_eq!(rows.visible(1), [3]);
        assert_eq!(
            rows.state_changed(2, "failed", None, Some("out of memory".into())),
            RowChange::Ended(2)
        );
        assert_eq!(rows.visible(4), [2]);
        assert!(row_text(rows.get(2).unwrap())
            .ends_with("failed · normal · tiny · a lighthouse at dusk · on cpu · out of memory"));
        assert_eq!(rows.progressed(99, 1, 2), None);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn rows_are_found_and_placed_by_binary_search_newest_first() {
        let ids: Vec<u64> = (1..=10_000).rev().collect();
        let reads = std::cell::Cell::new(0);
        let at = |i: u32| {
            reads.set(reads.get() + 1);
            ids.get(i as usize).copied()
        };
        assert_eq!(slot_for(10_000, 1, at), Ok(9_999));
        assert!(reads.get() <= 15, "{} reads", reads.get());
        assert_eq!(slot_for(10_000, 10_000, at), Ok(0));
        assert_eq!(
            slot_for(10_000, 10_001, at),
            Err(0),
            "a new job goes on top"
        );
        let gappy = [9u64, 7, 4, 2];
        let at = |i: u32| gappy.get(i as usize).copied();
        assert_eq!(slot_for(4, 5, at), Err(2));
        assert_eq!(slot_for(4, 1, at), Err(4));
        assert_eq!(slot_for(4, 4, at), Ok(2));
        assert_eq!(slot_for(0, 4, |_| None), Err(0));
    }

    #[test]
    fn filters_and_actions_follow_the_state() {
        assert!(shown_by(0, "dead") && shown_by(4, "dead") && !shown_by(1, "dead"));
        assert!(shown_by(2, "leased") && shown_by(5, "cancelled") && !shown_by(3, "failed"));
        assert!(cancellable("queued") && cancellable("leased") && !cancellable("done"));
        assert!(reprioritisable("queued") && reprioritisable("leased") && !reprioritisable("done"));
        for state in ["failed", "dead", "cancelled"] {
            assert!(retryable(state), "{state}");
        }
        assert!(!retryable("done") && !retryable("queued") && !retryable("leased"));
    }

    #[test]
    fn a_done_job_opens_its_first_image_and_shows_its_run_time() {
        let mut done = view(4, "done");
        done.outputs = vec!["00004-1.png".into(), "00004-2.png".into()];
        done.timings.started_at_ms = Some(1_000);
        done.timings.finished_at_ms = Some(5_250);
        let row = JobRow {
            view: done,
            steps: None,
        };
        assert_eq!(first_output(&row), Some("00004-1.png"));
        assert!(
            row_text(&row).ends_with("a lighthouse at dusk · 4.2 s"),
            "{}",
            row_text(&row)
        );
        let failed = JobRow {
            view: view(5, "failed"),
            steps: None,
        };
        assert_eq!(first_output(&failed), None);
    }

    #[test]
    fn retry_submits_the_same_spec_style_priority_and_gpu_from_the_app() {
        let mut old = view(6, "dead");
        old.priority = JobPriority::Background;
        old.style = Some("film".into());
        old.gpu = Some("GPU-a".into());
        old.spec.seed = 42;
        let again = retry_request(&old);
        assert_eq!(again.spec, old.spec);
        assert_eq!(again.style.as_deref(), Some("film"));
        assert_eq!(again.priority, JobPriority::Background);
        assert_eq!(again.gpu.as_deref(), Some("GPU-a"));
        assert_eq!((again.count, again.source), (1, JobSource::Gui));
    }
}
