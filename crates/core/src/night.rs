//! The overnight runner's wire types (`POST /v1/night`, `GET /v1/night`,
//! `POST /v1/night/stop`) and the parsers the CLI and the settings file share for its
//! window: durations such as `8h`, `90m` or `1h30m`, and clock times such as `07:00`.

use serde::{Deserialize, Serialize};

/// Longest overnight run accepted: a window beyond this is almost always a typo (`800h`).
pub const MAX_RUN_SECS: u64 = 7 * 24 * 3600;

/// `POST /v1/night`: start an overnight run. Give exactly one of `ends_at_ms` and
/// `duration_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NightRequest {
    /// Theme names in the themes folder (file names without `.yaml`/`.json`), used in turn.
    /// `name:N` gives a theme N turns per round instead of one.
    pub themes: Vec<String>,
    /// Checkpoints in `models/checkpoints/` to rotate through; empty takes each theme's own
    /// `models:`, then the settings file's `night.models`.
    #[serde(default)]
    pub models: Vec<String>,
    /// When to stop, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub ends_at_ms: Option<u64>,
    /// How long to run, from now.
    #[serde(default)]
    pub duration_secs: Option<u64>,
    /// Stop after submitting this many jobs.
    #[serde(default)]
    pub max_jobs: Option<u64>,
    /// The run seed every prompt and image seed derives from; random when left out.
    #[serde(default)]
    pub seed: Option<u64>,
    /// A style profile (id or name) for every theme, in place of each theme's own.
    #[serde(default)]
    pub profile: Option<String>,
    /// Safe mode for this run (the safety negative on every prompt), whatever the settings
    /// file says.
    #[serde(default)]
    pub safe: bool,
    /// Mature profiles for this run: `true` is allowed only where the settings file turns
    /// mature mode on for overnight runs (`night.mature`), `false` turns it off; left out,
    /// the settings decide. A request can narrow the content, never widen it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mature: Option<bool>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NightState {
    /// Keeping the queue topped up.
    Running,
    /// Reached its end time or job limit (or could not go on); `reason` says which.
    Finished,
    /// Stopped by a person (`imagelab night stop`, the GUI).
    Stopped,
}

impl NightState {
    pub fn as_str(self) -> &'static str {
        match self {
            NightState::Running => "running",
            NightState::Finished => "finished",
            NightState::Stopped => "stopped",
        }
    }
}

/// `GET /v1/night`: the current or last run. (With no run ever started the daemon answers
/// 404 with an [`crate::api::ApiError`].)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NightStatus {
    pub run_id: String,
    pub state: NightState,
    /// Why the run finished or stopped.
    #[serde(default)]
    pub reason: Option<String>,
    /// The themes as requested (`name` or `name:N`).
    pub themes: Vec<String>,
    /// The checkpoints the run rotates through (file names in `models/checkpoints/`).
    pub models: Vec<String>,
    pub started_at_ms: u64,
    pub ends_at_ms: u64,
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    #[serde(default)]
    pub max_jobs: Option<u64>,
    /// Jobs the run has put in the queue so far.
    pub submitted: u64,
    /// Of those still in the store: queued, running, done, and failed (failed or dead).
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub seed: u64,
}

/// `8h`, `90m`, `1h30m`, `45s` or a plain number of seconds → seconds. Zero is refused.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("duration {text:?} is not like 8h, 90m or 1h30m (hours h, minutes m, seconds s)")
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = trimmed.parse::<u64>() {
        return nonzero(secs, text);
    }
    let (mut total, mut digits, mut last_unit) = (0u64, String::new(), 0u8);
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        // Units must come in order h, m, s, each at most once, each after a number.
        let (rank, scale) = match c.to_ascii_lowercase() {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(bad()),
        };
        if digits.is_empty() || rank <= last_unit {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
        last_unit = rank;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    nonzero(total, text)
}

fn nonzero(secs: u64, text: &str) -> Result<u64, String> {
    if secs == 0 {
        Err(format!(
            "duration {text:?} is zero; give a length such as 8h"
        ))
    } else {
        Ok(secs)
    }
}

/// `07:00` or `7:30` → (hour, minute), 24-hour clock.
pub fn parse_clock_time(text: &str) -> Result<(u8, u8), String> {
    let bad = || format!("time {text:?} is not HH:MM on a 24-hour clock (for example 07:00)");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let hour: u8 = h.parse().map_err(|_| bad())?;
    let minute: u8 = m.parse().map_err(|_| bad())?;
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    Ok((hour, minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_are_named() {
        assert_eq!(parse_duration_secs("8h"), Ok(8 * 3600));
        assert_eq!(parse_duration_secs("90m"), Ok(90 * 60));
        assert_eq!(parse_duration_secs("1h30m"), Ok(5400));
        assert_eq!(parse_duration_secs("1H5m10s"), Ok(3910));
        assert_eq!(parse_duration_secs("600"), Ok(600));
        for bad in ["", "h", "8x", "30m1h", "1h1h", "8h5", "-1h", "0m"] {
            let err = parse_duration_secs(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn clock_times_parse_and_bad_ones_are_named() {
        assert_eq!(parse_clock_time("07:00"), Ok((7, 0)));
        assert_eq!(parse_clock_time("7:30"), Ok((7, 30)));
        assert_eq!(parse_clock_time("23:59"), Ok((23, 59)));
        for bad in ["24:00", "7", "07:60", "7:5", "ab:cd", "007:00"] {
            let err = parse_clock_time(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn requests_refuse_unknown_fields_and_status_round_trips() {
        let err = serde_json::from_str::<NightRequest>(r#"{"themes":["a"],"max_job":3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_job"), "{err}");
        let req: NightRequest =
            serde_json::from_str(r#"{"themes":["a"],"duration_secs":60}"#).unwrap();
        assert_eq!((req.duration_secs, req.ends_at_ms), (Some(60), None));
        let status = NightStatus {
            run_id: "night-1".into(),
            state: NightState::Finished,
            reason: Some("reached max_jobs".into()),
            themes: vec!["a".into()],
            models: vec!["m.safetensors".into()],
            started_at_ms: 1,
            ends_at_ms: 2,
            finished_at_ms: Some(2),
            max_jobs: Some(3),
            submitted: 3,
            queued: 1,
            running: 0,
            done: 2,
            failed: 0,
            seed: 9,
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "finished");
        assert_eq!(serde_json::from_value::<NightStatus>(json).unwrap(), status);
    }
}
