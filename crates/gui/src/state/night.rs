//! The overnight-run page as data: each theme with its description and sample prompts
//! drawn with a shown seed, the form turned into a `NightRequest` (an end at the next
//! HH:MM local time, or after N jobs), and a run's status in words (done, queued, images
//! per hour, time left).

use imagelab_core::night::{parse_clock_time, NightRequest, NightState, NightStatus};
use imagelab_prompts::{list_themes, Theme, Wildcards};
use std::path::Path;

/// How many sample prompts each theme shows.
pub const SAMPLES: u64 = 3;
/// A run that ends after N jobs still has a window: at most a day.
pub const JOBS_WINDOW_SECS: u64 = 24 * 3600;

/// One theme as the page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThemeInfo {
    pub name: String,
    pub description: String,
    /// Prompts drawn with the page's sample seed, or the theme's problem.
    pub samples: Result<Vec<String>, String>,
}

/// Every theme in `dir`, with [`SAMPLES`] prompts drawn from `seed`.
pub fn theme_infos(dir: &Path, wildcards: &Wildcards, seed: u64) -> Vec<ThemeInfo> {
    list_themes(dir)
        .into_iter()
        .map(|name| {
            let loaded = imagelab_prompts::find_theme(dir, &name)
                .and_then(|path| Theme::load(&path, wildcards).map_err(|e| e.to_string()));
            match loaded {
                Ok(theme) => ThemeInfo {
                    name,
                    description: theme.spec.description.clone(),
                    samples: (0..SAMPLES)
                        .map(|i| theme.generate(seed, i).map(|g| g.prompt))
                        .collect::<Result<_, _>>()
                        .map_err(|e| e.to_string()),
                },
                Err(e) => ThemeInfo {
                    name,
                    description: String::new(),
                    samples: Err(e),
                },
            }
        })
        .collect()
}

/// How the run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// At the next `HH:MM` local time.
    Until(String),
    /// After this many jobs.
    Jobs(String),
}

/// The page's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightForm {
    pub themes: Vec<String>,
    /// Empty: each theme's own models, then the settings file's.
    pub models: Vec<String>,
    /// None: each theme's own profile.
    pub profile: Option<String>,
    pub safe: bool,
    pub mature: bool,
    pub end: RunEnd,
}

/// A form problem: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormProblem {
    pub field: &'static str,
    pub message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> FormProblem {
    FormProblem {
        field,
        message: message.into(),
    }
}

impl NightForm {
    /// The request, at `now_ms` in a zone `offset_secs` east of UTC. `settings_mature` is
    /// whether the settings file allows mature runs (the request sends mature only then).
    pub fn request(
        &self,
        now_ms: u64,
        offset_secs: i64,
        settings_mature: bool,
    ) -> Result<NightRequest, FormProblem> {
        if self.themes.is_empty() {
            return Err(problem("themes", "choose at least one theme"));
        }
        if self.safe && self.mature {
            return Err(problem("mature", "safe and mature are exclusive"));
        }
        let mut request = NightRequest {
            themes: self.themes.clone(),
            models: self.models.clone(),
            profile: self.profile.clone(),
            safe: self.safe,
            // Off narrows a settings file that allows mature runs; on is only sent where allowed.
            mature: settings_mature.then_some(self.mature),
            ..NightRequest::default()
        };
        match &self.end {
            RunEnd::Until(text) => {
                let (hour, minute) = parse_clock_time(text).map_err(|e| problem("until", e))?;
                request.ends_at_ms = Some(next_local_time_ms(now_ms, offset_secs, hour, minute));
            }
            RunEnd::Jobs(text) => {
                let n = text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        problem(
                            "max_jobs",
                            format!("{text:?} is not a number of jobs (1 or more)"),
                        )
                    })?;
                request.max_jobs = Some(n);
                request.duration_secs = Some(JOBS_WINDOW_SECS);
            }
        }
        Ok(request)
    }
}

/// The next `hour:minute` after `now_ms` on the local clock (`offset_secs` east of UTC).
pub fn next_local_time_ms(now_ms: u64, offset_secs: i64, hour: u8, minute: u8) -> u64 {
    const DAY_MS: i64 = 86_400_000;
    let local = now_ms as i64 + offset_secs * 1000;
    let midnight = local.div_euclid(DAY_MS) * DAY_MS;
    let mut at = midnight + (hour as i64 * 3600 + minute as i64 * 60) * 1000;
    if at <= local {
        at += DAY_MS;
    }
    (at - offset_secs * 1000).max(0) as u64
}

/// "2 h 05 min", "12 min", "under a minute".
pub fn human_duration(ms: u64) -> String {
    let minutes = ms / 60_000;
    match (minutes / 60, minutes % 60) {
        (0, 0) => "under a minute".to_string(),
        (0, m) => format!("{m} min"),
        (h, m) => format!("{h} h {m:02} min"),
    }
}

/// A run's status in words, for the status card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    /// "Running since 22:00 · themes knights, castles".
    pub title: String,
    /// "12 done · 2 queued · 1 running · 0 failed of 15 submitted".
    pub counts: String,
    /// "30.0 images per hour · 6 h 10 min left", or why it ended.
    pub pace: String,
    pub running: bool,
}

/// `last_done_ms`: when the run's newest done job finished, as the queue knows it (a run
/// that stops at its job limit finishes submitting long before its jobs are made).
pub fn run_view(status: &NightStatus, now_ms: u64, last_done_ms: Option<u64>) -> RunView {
    let running = status.state == NightState::Running;
    let settled = status.queued + status.running == 0;
    let end = if running || !settled {
        now_ms
    } else {
        status
            .finished_at_ms
            .unwrap_or(now_ms)
            .max(last_done_ms.unwrap_or(0))
    }
    .max(status.started_at_ms);
    let hours = (end - status.started_at_ms) as f64 / 3_600_000.0;
    let per_hour = if hours > 0.0 {
        status.done as f64 / hours
    } else {
        0.0
    };
    let left = if running {
        let mut left = human_duration(status.ends_at_ms.saturating_sub(now_ms));
        if let Some(max) = status.max_jobs {
            left = format!(
                "{left} or {} more jobs",
                max.saturating_sub(status.submitted)
            );
        }
        format!("{left} left")
    } else {
        format!(
            "{}{}",
            status.state.as_str(),
            status
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
    };
    RunView {
        title: format!(
            "Overnight run {} · {} · themes {}",
            status.run_id,
            status.state.as_str(),
            status.themes.join(", ")
        ),
        counts: format!(
            "{} done · {} queued · {} running · {} failed of {} submitted",
            status.done, status.queued, status.running, status.failed, status.submitted
        ),
        pace: format!("{per_hour:.1} images per hour · {left}"),
        running,
    }
}

#[cfg(test)]
#[path = "night_tests.rs"]
mod tests;
