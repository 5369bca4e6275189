//! Translation between the wire types of `imagelab_core::api` and the queue's stored
//! types, so neither has to follow the other's changes.

use imagelab_core::api::{JobPriority, JobSource, JobTimings, JobView, QueueStatus};
use imagelab_queue::{Counts, Job, JobState, Placement, Priority, Source};

pub fn priority_to_queue(p: JobPriority) -> Priority {
    match p {
        JobPriority::Interactive => Priority::Interactive,
        JobPriority::Normal => Priority::Normal,
        JobPriority::Background => Priority::Background,
    }
}

fn priority_from_queue(p: Priority) -> JobPriority {
    match p {
        Priority::Interactive => JobPriority::Interactive,
        Priority::Normal => JobPriority::Normal,
        Priority::Background => JobPriority::Background,
    }
}

pub fn source_to_queue(s: JobSource) -> Source {
    match s {
        JobSource::Cli => Source::Cli,
        JobSource::Api => Source::Api,
        JobSource::Gui => Source::Gui,
        JobSource::NightRun => Source::NightRun,
        JobSource::OneShot => Source::OneShot,
    }
}

fn source_from_queue(s: Source) -> JobSource {
    match s {
        Source::Cli => JobSource::Cli,
        Source::Api => JobSource::Api,
        Source::Gui => JobSource::Gui,
        Source::NightRun => JobSource::NightRun,
        Source::OneShot => JobSource::OneShot,
    }
}

/// A job as the API shows it.
pub fn job_view(job: Job) -> JobView {
    let gpu = match &job.placement {
        Placement::Any => None,
        Placement::Gpu(uuid) => Some(uuid.clone()),
        Placement::Split(unet, rest) => Some(format!("{unet}+{rest}")),
    };
    let (outputs, error, finished_at_ms) = match &job.state {
        JobState::Done {
            outputs,
            finished_at_ms,
            ..
        } => (outputs.clone(), None, Some(*finished_at_ms)),
        JobState::Failed {
            error,
            finished_at_ms,
        }
        | JobState::Dead {
            error,
            finished_at_ms,
        } => (vec![], Some(error.clone()), Some(*finished_at_ms)),
        JobState::Cancelled { finished_at_ms } => (vec![], None, Some(*finished_at_ms)),
        JobState::Queued | JobState::Leased { .. } => (vec![], None, None),
    };
    let completion = job.completion.clone().unwrap_or_default();
    JobView {
        id: job.id.0,
        state: job.state.name().to_string(),
        priority: priority_from_queue(job.priority),
        source: source_from_queue(job.source),
        gpu,
        // The seed the daemon resolved at submit time is in the spec; a worker's report of
        // the seeds it used takes precedence once there is one.
        seeds: if completion.seeds.is_empty() {
            vec![job.spec.params.seed]
        } else {
            completion.seeds
        },
        spec: job.spec.params,
        style: job.spec.style,
        theme: job.spec.theme,
        theme_hash: job.spec.theme_hash,
        template: job.spec.template,
        prompt_seed: job.spec.prompt_seed,
        night_run: job.spec.night_run,
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        interruptions: job.interruptions,
        timings: JobTimings {
            queued_at_ms: job.created_at_ms,
            started_at_ms: job.started_at_ms,
            finished_at_ms,
            step_time_ms: completion.step_time_ms,
        },
        worker: job.last_worker,
        gpus: job.last_gpus,
        outputs,
        error: error.or(job.last_error),
        cancel_requested: job.cancel_requested,
        slurm: None,
    }
}

/// The queue's pause flag and per-state counts as the API shows them.
pub fn queue_status(paused: bool, counts: Counts) -> QueueStatus {
    let counts = [
        ("queued", counts.queued),
        ("leased", counts.leased),
        ("done", counts.done),
        ("failed", counts.failed),
        ("dead", counts.dead),
        ("cancelled", counts.cancelled),
    ]
    .into_iter()
    .map(|(name, n)| (name.to_string(), n))
    .collect();
    QueueStatus { paused, counts }
}
