//! Rendering a [`Report`] as JSON (for scripts), Markdown or a self-contained HTML page,
//! and writing it atomically. The text formats print every figure through the helpers
//! here, so the numbers in HTML and Markdown are the JSON's, formatted one way.

mod html;
mod markdown;
mod svg;

use crate::analyze::Report;
use crate::error::{AnalyticsError, Result};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Json,
}

impl FromStr for Format {
    type Err = AnalyticsError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "html" | "htm" => Ok(Format::Html),
            "md" | "markdown" => Ok(Format::Markdown),
            "json" => Ok(Format::Json),
            other => Err(AnalyticsError::Invalid {
                field: "format",
                value: other.to_string(),
                expected: "html, md or json".into(),
            }),
        }
    }
}

impl Format {
    /// The format a file name asks for by its extension, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        path.extension()?.to_str()?.parse().ok()
    }
}

/// Renders the report.
pub fn render(report: &Report, format: Format) -> Result<String> {
    match format {
        Format::Json => serde_json::to_string_pretty(report).map_err(|e| AnalyticsError::Format {
            path: "<report>".into(),
            message: e.to_string(),
        }),
        Format::Markdown => Ok(markdown::render(report)),
        Format::Html => Ok(html::render(report)),
    }
}

/// Writes `text` to `path` without a half-written file ever being visible: a temporary
/// file in the same folder, fsync, then rename over the target.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(AnalyticsError::io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(AnalyticsError::io(path))
}

/// A rate as the reports print it.
pub fn pct(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// A Wilson interval as the reports print it.
pub fn interval(low: f64, high: f64) -> String {
    format!("{}–{}", pct(low), pct(high))
}

/// A mean rating as the reports print it.
pub fn mean(rating: Option<f64>) -> String {
    rating.map(|r| format!("{r:.2}")).unwrap_or_default()
}

/// The settings of an image as one line of text (under a thumbnail, in Markdown).
pub fn settings_line(r: &crate::record::ImageRecord) -> String {
    let mut parts = Vec::new();
    let mut add = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(format!("{label} {v}"));
        }
    };
    add("model", r.model.clone());
    add("profile", r.profile.clone());
    add("sampler", r.sampler.clone());
    add("scheduler", r.scheduler.clone());
    add("cfg", r.cfg.map(|c| c.to_string()));
    add("steps", r.steps.map(|s| s.to_string()));
    add("size", r.size());
    add("lora", r.lora.clone());
    add("seed", r.seed.map(|s| s.to_string()));
    add("rating", r.rating.map(|s| format!("{s}/5")));
    parts.join(", ")
}

/// A time in ms since the epoch as `YYYY-MM-DD`.
pub fn date(ms: u64) -> String {
    crate::aggregate::day_label(ms / 86_400_000)
}
