//! The overnight runner: a [`PromptGenerator`] actor that keeps the queue topped up with
//! background jobs drawn from themes until a time or job limit, persisted in
//! `jobs/night.json` so a restarted daemon resumes the run inside its window.
//!
//! - [`plan`]: the pure feed logic (how many jobs, which theme and model, which seeds);
//! - [`catalog`]: loading and checking the themes, profiles and models a request names;
//! - [`store`]: `night.json`, written atomically;
//! - [`runner`]: one run's life (start, tick, stop, resume) over the queue, synchronous;
//! - [`actor`]: the actix actor around the runner, on a thread of its own;
//! - `routes`: `POST /v1/night`, `GET /v1/night`, `POST /v1/night/stop`.

pub mod actor;
pub mod catalog;
pub mod plan;
pub(crate) mod routes;
pub mod runner;
pub mod store;
#[cfg(test)]
mod testlab;

pub use actor::{NightService, PromptGenerator};
pub use runner::Runner;

use crate::error::ApiFailure;
use actix_web::http::StatusCode;
use imagelab_core::{Config, GenerationParams, NightDefaults};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many workers may take jobs now; the generator keeps about two jobs per worker.
/// The daemon passes the number of configured workers for now; the supervisor will plug
/// in the count of workers that are not blocked.
pub type WorkersFn = Arc<dyn Fn() -> usize + Send + Sync>;

/// What time it is, in milliseconds since the Unix epoch. A trait so tests drive the
/// runner through a night in microseconds.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn new(now_ms: u64) -> FakeClock {
        FakeClock(AtomicU64::new(now_ms))
    }

    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The settings overnight runs take from the settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct NightOptions {
    /// The generation defaults prompts start from (the settings file's `defaults:`).
    pub base: GenerationParams,
    /// The `night:` section: fallback models and the content mode.
    pub settings: NightDefaults,
    /// How often the generator tops the queue up.
    pub tick: Duration,
}

impl Default for NightOptions {
    fn default() -> Self {
        NightOptions::from_config(&Config::default())
    }
}

impl NightOptions {
    pub fn from_config(config: &Config) -> NightOptions {
        NightOptions {
            base: config.default_params(),
            settings: config.night.clone(),
            tick: Duration::from_secs(1),
        }
    }
}

/// Why a night request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NightError {
    /// Bad input: `field` names the request field (or settings key) at fault.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// A run is already going.
    #[error("{0}")]
    Conflict(String),
    /// No run was ever started (or `night.json` is gone).
    #[error(
        "no overnight run has been started (start one with `imagelab night --theme NAME --for 8h`)"
    )]
    NoRun,
    /// The queue or `night.json` failed.
    #[error("{0}")]
    Storage(String),
}

impl NightError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> NightError {
        NightError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<imagelab_queue::QueueError> for NightError {
    fn from(err: imagelab_queue::QueueError) -> Self {
        NightError::Storage(err.to_string())
    }
}

impl From<NightError> for ApiFailure {
    fn from(err: NightError) -> Self {
        let message = err.to_string();
        match err {
            NightError::Invalid { field, .. } => ApiFailure::bad_request(message).field(field),
            NightError::Conflict(_) => ApiFailure::new(StatusCode::CONFLICT, message),
            NightError::NoRun => ApiFailure::not_found(message),
            NightError::Storage(_) => ApiFailure::internal(message),
        }
    }
}

/// Starts the generator for a daemon: resumes `night.json` (a file that cannot be read is
/// logged and left for the next start to replace, never a reason not to serve).
pub(crate) fn start_service(
    config: &crate::DaemonConfig,
    queue: Arc<imagelab_queue::Queue>,
    supervisor: Option<crate::supervisor::SupervisorLink>,
) -> crate::Result<NightService> {
    let folders = imagelab_core::Folders {
        models: config.models_dir.clone(),
        output: config.output_dir.clone(),
        jobs: config.jobs_dir.clone(),
        themes: config.themes_dir.clone(),
    };
    // Workers that can take a job soon: not blocked by a stranger on their GPU, not down.
    // Without a supervisor (no workers), the queue is kept two deep for when one comes.
    let workers: Arc<dyn Fn() -> usize + Send + Sync> = match supervisor {
        Some(link) => Arc::new(move || link.available_workers().max(1)),
        None => Arc::new(|| 1),
    };
    let mut runner = Runner::new(
        queue,
        folders,
        config.night.clone(),
        Arc::new(SystemClock),
        workers,
    );
    if let Err(e) = runner.resume() {
        tracing::error!("overnight run not resumed: {e}");
    }
    NightService::start(runner, config.night.tick).map_err(|source| crate::DaemonError::Io {
        path: std::path::PathBuf::from("<overnight runner thread>"),
        source,
    })
}
