//! `imagelab analyze`: which models, profiles and settings make the images the user keeps.
//! A thin front over `imagelab-analytics`: reads `jobs.log` (and PNG folders), writes the
//! report (HTML, Markdown or JSON) atomically, and optionally exports the winners as a theme.

use anyhow::{bail, Context, Result};
use clap::Args;
use imagelab_analytics::theme_export::{export_theme, to_yaml};
use imagelab_analytics::{analyze, render, write_atomic, AnalyzeOptions, Format};
use imagelab_core::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// The job log to read (default: jobs.log in the jobs folder).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Only images made on or after this day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Only images of this theme (repeatable).
    #[arg(long = "theme")]
    pub themes: Vec<String>,
    /// Also read the PNGs in this folder, from any tool (repeatable).
    #[arg(long = "images")]
    pub images: Vec<PathBuf>,
    /// Write the report here (atomically) instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// html, md or json (default: from --out's extension, else md).
    #[arg(long)]
    pub format: Option<String>,
    /// Groups with fewer images are marked and not ranked.
    #[arg(long, default_value_t = 10)]
    pub min_support: u64,
    /// How many favorites the contact sheet (and an exported theme's prompts) take.
    #[arg(long, default_value_t = 24)]
    pub top: usize,
    /// Also write the winning configurations as a theme file (YAML).
    #[arg(long)]
    pub export_theme: Option<PathBuf>,
    /// The exported theme's name (default: the file's stem).
    #[arg(long, requires = "export_theme")]
    pub theme_name: Option<String>,
}

pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let folders = Config::load()?.folders();
    let format = match (&args.format, &args.out) {
        (Some(f), _) => f.parse::<Format>()?,
        (None, Some(out)) => Format::from_path(out).unwrap_or(Format::Html),
        (None, None) => Format::Markdown,
    };
    let mut opts = AnalyzeOptions::new(
        args.log
            .clone()
            .unwrap_or_else(|| folders.jobs.join("jobs.log")),
    );
    opts.image_dirs = args.images.clone();
    opts.output_dir = Some(folders.output.clone());
    opts.since_ms = args.since.as_deref().map(parse_day).transpose()?;
    opts.themes = args.themes.clone();
    opts.min_support = args.min_support;
    opts.top = args.top;
    let report = analyze(&opts)?;
    let text = render(&report, format)?;
    match &args.out {
        Some(out) => {
            write_atomic(out, &text)?;
            let s = &report.summary;
            eprintln!(
                "{}: {} images, {} favorites; {} log lines skipped, {} PNGs without metadata, {} missing images",
                out.display(),
                report.analysis.images,
                report.analysis.favorites,
                s.log_lines.skipped,
                s.pngs_without_metadata.len(),
                s.missing_images.len()
            );
        }
        None => print!("{text}"),
    }
    if let Some(path) = &args.export_theme {
        let name = args.theme_name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "best".into())
        });
        let theme = export_theme(&report, &name)
            .with_context(|| format!("cannot export a theme to {}", path.display()))?;
        write_atomic(path, &to_yaml(&theme)?)?;
        eprintln!(
            "{}: theme {name:?} with {} prompts and {} models",
            path.display(),
            theme.templates.len(),
            theme.models.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DD` as milliseconds since the epoch at 00:00 UTC.
fn parse_day(text: &str) -> Result<u64> {
    let bad = || format!("invalid --since {text:?}: expected a day as YYYY-MM-DD");
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        bail!(bad())
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) else {
        bail!(bad())
    };
    let month = time::Month::try_from(m).map_err(|_| anyhow::anyhow!(bad()))?;
    let date = time::Date::from_calendar_date(y, month, d).map_err(|_| anyhow::anyhow!(bad()))?;
    let secs = date.midnight().assume_utc().unix_timestamp();
    u64::try_from(secs)
        .map(|s| s * 1000)
        .map_err(|_| anyhow::anyhow!(bad()))
}
