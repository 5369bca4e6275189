//! The last ten minutes of GPU samples, for `GET /v1/gpus/history`: each sample's figures,
//! the idle policy's verdict and our jobs on the GPU, so the app can show when a GPU sat
//! idle and why. Kept in memory only; a daemon restart starts a new history.

use imagelab_core::events::{GpuHistory, GpuHistoryPoint, GpuHistoryView};
use imagelab_gpu::{GpuSample, GpuVerdict};
use std::collections::BTreeMap;

/// How far back the history reaches.
pub const HISTORY_WINDOW_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Default)]
pub struct GpuHistoryStore {
    gpus: Vec<GpuHistory>,
    nvml_error: Option<String>,
}

impl GpuHistoryStore {
    /// Adds one sample of every GPU at `at_ms` and forgets what is older than the window.
    pub fn record(
        &mut self,
        at_ms: u64,
        samples: &[GpuSample],
        verdicts: &BTreeMap<String, GpuVerdict>,
        jobs_on: &BTreeMap<String, Vec<u64>>,
    ) {
        self.nvml_error = None;
        for sample in samples {
            let at = match self.gpus.iter().position(|g| g.uuid == sample.uuid) {
                Some(at) => at,
                None => {
                    self.gpus.push(GpuHistory {
                        index: sample.index,
                        uuid: sample.uuid.clone(),
                        name: sample.name.clone(),
                        memory_total_mib: sample.memory_total_mib,
                        points: Vec::new(),
                    });
                    self.gpus.len() - 1
                }
            };
            let verdict = verdicts.get(&sample.uuid);
            let reasons: Vec<String> = verdict
                .map(|v| v.reasons.iter().map(|r| r.to_string()).collect())
                .unwrap_or_default();
            self.gpus[at].points.push(GpuHistoryPoint {
                at_ms,
                utilization_pct: sample.utilization_pct,
                memory_used_mib: sample.memory_used_mib,
                temperature_c: sample.temperature_c,
                idle: verdict.is_some_and(|v| v.idle),
                reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
                our_jobs: jobs_on.get(&sample.uuid).cloned().unwrap_or_default(),
            });
        }
        let oldest = at_ms.saturating_sub(HISTORY_WINDOW_MS);
        for gpu in &mut self.gpus {
            gpu.points.retain(|p| p.at_ms >= oldest);
        }
        self.gpus.sort_by_key(|g| g.index);
    }

    /// A failed sample: the history keeps what it has and says why nothing new came.
    pub fn failed(&mut self, error: String) {
        self.nvml_error = Some(error);
    }

    pub fn view(&self) -> GpuHistoryView {
        GpuHistoryView {
            window_secs: HISTORY_WINDOW_MS / 1000,
            nvml_error: self.nvml_error.clone(),
            gpus: self.gpus.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_gpu::{Clock, FakeClock, GpuProbe, IdlePolicy, ScriptedProbe};

    #[test]
    fn samples_are_kept_for_ten_minutes_with_the_verdict_and_our_jobs() {
        let clock = FakeClock::new();
        let mut probe = ScriptedProbe::new(clock.clone()).gpu(0, "GPU-a", "Fake GPU", 24_576);
        let mut policy = IdlePolicy::new(Default::default()).unwrap();
        let mut store = GpuHistoryStore::default();
        let jobs = BTreeMap::from([("GPU-a".to_string(), vec![7])]);
        for second in 0..=700u64 {
            let samples = probe.snapshot().unwrap();
            let verdicts = policy
                .observe(clock.now(), &samples, &Default::default())
                .into_iter()
                .map(|v| (v.uuid.clone(), v))
                .collect();
            let ours = if second >= 600 {
                &jobs
            } else {
                &BTreeMap::new()
            };
            store.record(1_000_000 + second * 1000, &samples, &verdicts, ours);
            clock.advance(std::time::Duration::from_secs(1));
        }
        let view = store.view();
        assert_eq!(view.window_secs, 600);
        let points = &view.gpus[0].points;
        assert_eq!(
            points.first().unwrap().at_ms,
            1_000_000 + 100_000,
            "older than 10 min kept"
        );
        assert_eq!(points.len(), 601);
        assert!(points.last().unwrap().idle, "a quiet GPU is idle");
        assert_eq!(points.last().unwrap().our_jobs, [7]);
        assert!(points.first().unwrap().our_jobs.is_empty());
        store.failed("NVML went away".into());
        assert_eq!(store.view().nvml_error.as_deref(), Some("NVML went away"));
        assert_eq!(
            store.view().gpus[0].points.len(),
            601,
            "a failed sample keeps the history"
        );
    }
}
