//! The feed logic, pure: given a run, the time, how many of its jobs wait in the queue and
//! how many workers could take one, which jobs to add — or that the run is over.
//!
//! - Depth: about two waiting jobs per available worker ([`target_depth`]), so a worker
//!   never idles between top-ups and the queue never floods: interactive jobs, which the
//!   queue dispatches first anyway, never wait behind a night's worth of background work.
//! - Rotation: jobs come in stretches of [`STRETCH`] that share one theme and one model.
//!   Themes take turns (a theme with weight N takes N turns per round); a run-wide model
//!   list advances once per round, a theme's own list once per visit of that theme. So a
//!   worker's cached model serves whole stretches instead of one job.
//! - Seeds: job `i` reads ChaCha8 (seeded with the run seed) on stream `i`: the prompt seed,
//!   then the image seed. The same run seed gives the same jobs, and a resumed run, which
//!   knows only how many jobs it submitted, continues the exact sequence.

use super::catalog::Catalog;
use super::store::{EndCause, RunRecord};
use imagelab_queue::{JobSpec, NewJob, Priority, Source};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Jobs in a row that share a theme and a model.
pub const STRETCH: u64 = 8;

/// Waiting jobs the run keeps per available worker.
pub const JOBS_PER_WORKER: u64 = 2;

/// What one tick should do.
#[derive(Debug)]
pub enum Step {
    /// Add these jobs (possibly none: the queue is deep enough).
    Submit(Vec<NewJob>),
    /// The run is over.
    Finish(EndCause, String),
}

/// How many of the run's jobs should wait in the queue with `workers` workers available.
pub fn target_depth(workers: usize) -> u64 {
    JOBS_PER_WORKER * (workers.max(1) as u64)
}

/// The next step of `run` at `now_ms` with `queued` of its jobs waiting.
pub fn step(run: &RunRecord, catalog: &Catalog, now_ms: u64, queued: u64, workers: usize) -> Step {
    if let Some((cause, reason)) = over(run, now_ms) {
        return Step::Finish(cause, reason);
    }
    let left = run
        .request
        .max_jobs
        .map_or(u64::MAX, |max| max.saturating_sub(run.submitted));
    let count = target_depth(workers).saturating_sub(queued).min(left);
    let mut jobs = Vec::new();
    for index in run.submitted..run.submitted + count {
        match job_at(run, catalog, index) {
            Ok(job) => jobs.push(job),
            Err(e) => {
                return Step::Finish(EndCause::Error, format!("cannot make job {index}: {e}"))
            }
        }
    }
    Step::Submit(jobs)
}

/// Whether `run` is over at `now_ms`, and why: its window closed or it submitted
/// `max_jobs`.
pub fn over(run: &RunRecord, now_ms: u64) -> Option<(EndCause, String)> {
    if now_ms >= run.ends_at_ms {
        return Some((EndCause::Time, "reached its end time".to_string()));
    }
    match run.request.max_jobs {
        Some(max) if run.submitted >= max => Some((
            EndCause::MaxJobs,
            format!("submitted its {max} jobs (max_jobs)"),
        )),
        _ => None,
    }
}

/// Job `index`'s prompt seed and image seed. Both keep 53 bits so JSON readers that use
/// doubles see them exactly; the image seed is never −1 (random), so it is recorded.
pub fn seeds_at(run_seed: u64, index: u64) -> (u64, i64) {
    let mut rng = ChaCha8Rng::seed_from_u64(run_seed);
    rng.set_stream(index);
    let prompt_seed = rng.next_u64() >> 11;
    let image_seed = (rng.next_u64() >> 11) as i64;
    (prompt_seed, image_seed)
}

/// The theme (index into `catalog.themes`) and model of job `index`.
pub fn slot(catalog: &Catalog, stretch: u64, index: u64) -> (usize, &str) {
    let cycle = &catalog.theme_cycle;
    let len = cycle.len().max(1) as u64;
    let block = index / stretch.max(1);
    let (round, pos) = (block / len, (block % len) as usize);
    let theme = cycle.get(pos).copied().unwrap_or(0);
    let slot = &catalog.themes[theme];
    let turn = if slot.own_models {
        // Visits of this theme before this block: whole rounds, then earlier in this one.
        let per_round = cycle.iter().filter(|&&t| t == theme).count() as u64;
        let earlier = cycle[..pos].iter().filter(|&&t| t == theme).count() as u64;
        round * per_round + earlier
    } else {
        round
    };
    let model = &slot.models[(turn % slot.models.len().max(1) as u64) as usize];
    (theme, model)
}

/// Job number `index` of `run`: always the same job for the same run seed and catalog.
pub fn job_at(run: &RunRecord, catalog: &Catalog, index: u64) -> Result<NewJob, String> {
    let (theme_index, model) = slot(catalog, run.stretch, index);
    let slot = &catalog.themes[theme_index];
    let (prompt_seed, image_seed) = seeds_at(run.seed, index);
    let generated = slot
        .theme
        .generate_from_prompt_seed(prompt_seed)
        .map_err(|e| e.to_string())?;
    let mut params = generated
        // The slot's profile: the request's when it names one, else the theme's own.
        .resolve(
            catalog.base_for(model),
            &catalog.profiles,
            catalog.mode,
            slot.profile.as_deref(),
        )
        .map_err(|e| format!("theme file {}: {e}", slot.theme.path.display()))?;
    // The rotation picks the model (a theme's random pick would defeat model affinity).
    params.model = model.to_string();
    params.seed = image_seed;
    params.batch = 1;
    params
        .validate()
        .map_err(|e| format!("theme file {}: {e}", slot.theme.path.display()))?;
    Ok(NewJob {
        spec: JobSpec {
            params,
            // The prompt is already styled; this records which profile did it.
            style: slot.profile.clone(),
            model_hash: None,
            theme: Some(generated.theme),
            theme_hash: Some(generated.theme_hash),
            template: Some(generated.template),
            prompt_seed: Some(prompt_seed),
            night_run: Some(run.id.clone()),
        },
        priority: Priority::Background,
        source: Source::NightRun,
        ..NewJob::default()
    })
}

/// Indices `0..weights.len()`, each appearing as often as its weight, spread out by smooth
/// weighted round-robin (weights 2, 1 give 0, 1, 0 rather than 0, 0, 1).
pub fn weighted_cycle(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total.max(0) as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let mut best = 0;
        for (i, &c) in current.iter().enumerate() {
            if c > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
