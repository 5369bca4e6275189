//! `imagelab night [start] | status | stop`: overnight themed runs on the daemon. Start
//! turns `--until 07:00` into the next local 07:00 (epoch ms) and `--for 8h` into seconds;
//! whatever the command leaves out comes from the settings file's `night:` section, which
//! is what a systemd timer running plain `imagelab night start` relies on.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use imagelab_client::Client;
use imagelab_core::config::{settings_dir, Config};
use imagelab_core::night::{parse_clock_time, parse_duration_secs, NightRequest, NightStatus};
use std::process::ExitCode;
use time::{Duration, OffsetDateTime, Time, UtcOffset};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NightArgs {
    #[command(subcommand)]
    pub action: Option<NightAction>,
    /// `imagelab night --theme …` is `imagelab night start --theme …`.
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Subcommand, Debug)]
pub enum NightAction {
    /// Start a run (what `imagelab night` with flags does).
    Start(StartArgs),
    /// The current or last run: state, window, jobs submitted, queued, done, failed.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop the running run: its queued jobs are cancelled, running ones finish.
    Stop {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Default)]
pub struct StartArgs {
    /// A theme in the themes folder; repeat for several (`name:N` takes N turns per round).
    /// Default: `night.themes` in config.yaml.
    #[arg(long = "theme", value_name = "NAME")]
    pub themes: Vec<String>,
    /// Stop at this local time (HH:MM, the next one to come).
    #[arg(long, value_name = "HH:MM", conflicts_with = "duration")]
    pub until: Option<String>,
    /// Or run this long: 8h, 90m, 1h30m.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Stop after submitting this many jobs.
    #[arg(long)]
    pub max_jobs: Option<u64>,
    /// Checkpoints to rotate through (comma-separated). Default: each theme's own
    /// `models:`, then `night.models` in config.yaml.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub models: Vec<String>,
    /// The run seed (the same seed and themes make the same jobs); random when left out.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A style profile for every theme, in place of each theme's own.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Safe mode for this run: the safety negative on every prompt.
    #[arg(long, conflicts_with = "mature")]
    pub safe: bool,
    /// Mature profiles for this run (only where night.mature in config.yaml allows them).
    #[arg(long)]
    pub mature: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: NightArgs) -> Result<ExitCode> {
    // Read while the process has one thread: the local offset is refused after that.
    let offset = local_offset();
    match args.action {
        None => start(args.start, offset),
        Some(NightAction::Start(start_args)) => start(start_args, offset),
        Some(NightAction::Status { json }) => print(&client()?.night_status()?, json, offset),
        Some(NightAction::Stop { json }) => print(&client()?.night_stop()?, json, offset),
    }
}

fn client() -> Result<Client> {
    Ok(Client::from_daemon_json(&settings_dir())?)
}

/// The local UTC offset, or UTC with a warning when the system will not say.
fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or_else(|_| {
        eprintln!("warning: cannot determine the local time zone; times are UTC");
        UtcOffset::UTC
    })
}

fn start(args: StartArgs, offset: UtcOffset) -> Result<ExitCode> {
    let config = Config::load()?;
    let request = request(&args, &config, OffsetDateTime::now_utc().to_offset(offset))?;
    let status = client()?.night_start(&request)?;
    print(&status, args.json, offset)
}

/// The request from the flags, anything left out taken from the settings file.
fn request(args: &StartArgs, config: &Config, now: OffsetDateTime) -> Result<NightRequest> {
    let defaults = &config.night;
    let path = Config::path();
    let themes = if args.themes.is_empty() {
        defaults.themes.clone()
    } else {
        args.themes.clone()
    };
    if themes.is_empty() {
        bail!(
            "no theme: give --theme NAME, or set night.themes in {}",
            path.display()
        );
    }
    let from_flags = args.until.is_some() || args.duration.is_some();
    let (until, duration, origin) = if from_flags {
        (args.until.as_deref(), args.duration.as_deref(), "")
    } else {
        (
            defaults.until.as_deref(),
            defaults.duration.as_deref(),
            " (night: section of the settings file)",
        )
    };
    let (ends_at_ms, duration_secs) = match (until, duration) {
        (Some(_), Some(_)) if from_flags => bail!("give --until or --for, not both"),
        (Some(_), Some(_)) => bail!(
            "{} sets both night.until and night.duration; keep one",
            path.display()
        ),
        (Some(time), None) => {
            let (hour, minute) =
                parse_clock_time(time).map_err(|e| anyhow::anyhow!("{e}{origin}"))?;
            (Some(next_at(now, hour, minute)?), None)
        }
        (None, Some(length)) => (
            None,
            Some(parse_duration_secs(length).map_err(|e| anyhow::anyhow!("{e}{origin}"))?),
        ),
        (None, None) => bail!(
            "no window: give --until HH:MM or --for DURATION, or set night.until or \
             night.duration in {}",
            path.display()
        ),
    };
    Ok(NightRequest {
        themes,
        // Left empty, the daemon picks each theme's models, then night.models.
        models: args.models.clone(),
        ends_at_ms,
        duration_secs,
        max_jobs: args.max_jobs.or(defaults.max_jobs),
        seed: args.seed,
        profile: args.profile.clone(),
        safe: args.safe,
        mature: args.mature.then_some(true),
    })
}

/// The next `hour:minute` after `now`, in `now`'s offset, as epoch milliseconds.
fn next_at(now: OffsetDateTime, hour: u8, minute: u8) -> Result<u64> {
    let at = Time::from_hms(hour, minute, 0).context("clock time out of range")?;
    let mut end = now.replace_time(at);
    if end <= now {
        end += Duration::days(1);
    }
    u64::try_from(end.unix_timestamp_nanos() / 1_000_000).context("end time before 1970")
}

fn print(status: &NightStatus, json: bool, offset: UtcOffset) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("overnight run {}: {}", status.run_id, status.state.as_str());
    if let Some(reason) = &status.reason {
        println!("  why:     {reason}");
    }
    println!("  themes:  {}", status.themes.join(", "));
    println!("  models:  {}", status.models.join(", "));
    println!(
        "  window:  {} to {}",
        local(status.started_at_ms, offset),
        local(status.ends_at_ms, offset)
    );
    let limit = status
        .max_jobs
        .map(|m| format!(" of at most {m}"))
        .unwrap_or_default();
    println!("  jobs:    {} submitted{limit}", status.submitted);
    println!(
        "           {} queued, {} running, {} done, {} failed",
        status.queued, status.running, status.done, status.failed
    );
    println!("  seed:    {}", status.seed);
    Ok(ExitCode::SUCCESS)
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM` in `offset`.
fn local(ms: u64, offset: UtcOffset) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|t| t.to_offset(offset))
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    fn ms(t: OffsetDateTime) -> u64 {
        u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }

    #[test]
    fn until_is_the_next_such_local_time() {
        let evening = datetime!(2030-03-01 22:15 +02:00);
        assert_eq!(
            next_at(evening, 7, 0).ok(),
            Some(ms(datetime!(2030-03-02 07:00 +02:00)))
        );
        let early = datetime!(2030-03-01 05:00 +02:00);
        assert_eq!(
            next_at(early, 7, 0).ok(),
            Some(ms(datetime!(2030-03-01 07:00 +02:00)))
        );
        // Exactly 07:00 means tomorrow's: a run never ends the moment it starts.
        let now = datetime!(2030-03-01 07:00 UTC);
        assert_eq!(
            next_at(now, 7, 0).ok(),
            Some(ms(datetime!(2030-03-02 07:00 UTC)))
        );
    }

    #[test]
    fn flags_win_and_the_settings_file_fills_the_rest() {
        let now = datetime!(2030-03-01 22:00 UTC).to_offset(offset!(+01:00));
        let mut config = Config::default();
        config.night.themes = vec!["archviz".into()];
        config.night.duration = Some("6h".into());
        config.night.max_jobs = Some(50);
        let from_config = request(&StartArgs::default(), &config, now).unwrap();
        assert_eq!(from_config.themes, vec!["archviz"]);
        assert_eq!(
            (from_config.duration_secs, from_config.ends_at_ms),
            (Some(6 * 3600), None)
        );
        assert_eq!(from_config.max_jobs, Some(50));
        let args = StartArgs {
            themes: vec!["dark_fantasy".into()],
            until: Some("07:00".into()),
            max_jobs: Some(3),
            ..StartArgs::default()
        };
        let from_flags = request(&args, &config, now).unwrap();
        assert_eq!(from_flags.themes, vec!["dark_fantasy"]);
        assert_eq!(from_flags.duration_secs, None);
        assert_eq!(
            from_flags.ends_at_ms,
            Some(ms(datetime!(2030-03-02 07:00 +01:00)))
        );
        assert_eq!(from_flags.max_jobs, Some(3));

        let bad = StartArgs {
            until: None,
            duration: Some("8 hours".into()),
            ..args
        };
        let err = request(&bad, &config, now).unwrap_err().to_string();
        assert!(err.contains("\"8 hours\""), "{err}");
        let err = request(&StartArgs::default(), &Config::default(), now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--theme"), "{err}");
        config.night.until = Some("7:00".into());
        let err = request(&StartArgs::default(), &config, now)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("night.until") && err.contains("night.duration"),
            "{err}"
        );
    }
}
