//! The Markdown report: the same tables as the HTML page, without charts.

use super::{date, interval, mean, pct, settings_line};
use crate::aggregate::{GroupStats, Table};
use crate::analyze::Report;
use std::fmt::Write;

pub(super) fn render(r: &Report) -> String {
    let mut out = String::new();
    let a = &r.analysis;
    let s = &r.summary;
    let _ = writeln!(out, "# imagelab favorites report\n");
    let _ = writeln!(
        out,
        "{} images, {} favorites ({}). Minimum support: {} images.\n",
        a.images,
        a.favorites,
        pct(a.rate),
        a.min_support
    );
    let _ = writeln!(
        out,
        "Log `{}`: {} lines, {} jobs, {} events, {} skipped (corrupt or partial); {} jobs without images.",
        s.log, s.log_lines.lines, s.log_lines.jobs, s.log_lines.events, s.log_lines.skipped, s.jobs_without_images
    );
    let _ = writeln!(
        out,
        "PNGs: {} read ({} already in the log), {} without metadata, {} unreadable; {} missing images.",
        s.pngs_read,
        s.pngs_in_log,
        s.pngs_without_metadata.len(),
        s.pngs_unreadable.len(),
        s.missing_images.len()
    );
    if let Some(since) = s.since_ms {
        let _ = writeln!(out, "Since {}.", date(since));
    }
    if !s.themes.is_empty() {
        let _ = writeln!(out, "Themes: {}.", s.themes.join(", "));
    }
    out.push('\n');
    write_table(&mut out, "Best configurations", &a.best_configs, 20);
    for t in a.dimensions.iter().chain(&a.pairs) {
        write_table(&mut out, &format!("By {}", t.name), t, usize::MAX);
    }
    let _ = writeln!(
        out,
        "## Favorites over time\n\n| day | images | favorites |\n|---|---|---|"
    );
    for d in &a.over_time {
        let _ = writeln!(out, "| {} | {} | {} |", d.day, d.images, d.favorites);
    }
    let _ = writeln!(out, "\n## Top favorites\n");
    for f in &r.top_favorites {
        let shown = f.file.as_deref().unwrap_or("(missing)");
        let _ = writeln!(
            out,
            "- `{}`: {} — {}",
            shown,
            f.record.prompt.replace('\n', " "),
            settings_line(&f.record)
        );
    }
    for m in &s.missing_images {
        let _ = writeln!(out, "- missing image: `{m}`");
    }
    out
}

/// One row per group; `limit` keeps the configuration table short.
fn write_table(out: &mut String, title: &str, t: &Table, limit: usize) {
    let _ = writeln!(out, "## {title}\n");
    let _ = writeln!(
        out,
        "| rank | {} | images | favorites | rate | 95% interval | mean rating |",
        t.columns.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---|{}---|---|---|---|---|",
        "---|".repeat(t.columns.len())
    );
    for g in t.groups.iter().take(limit) {
        let _ = writeln!(out, "{}", row(g));
    }
    out.push('\n');
}

/// A Markdown table row.
pub(super) fn row(g: &GroupStats) -> String {
    let rank = g
        .rank
        .map(|r| r.to_string())
        .unwrap_or_else(|| "low support".into());
    let parts: Vec<String> = g.parts.iter().map(|p| p.replace('|', "\\|")).collect();
    format!(
        "| {rank} | {} | {} | {} | {} | {} | {} |",
        parts.join(" | "),
        g.images,
        g.favorites,
        pct(g.rate),
        interval(g.wilson_low, g.wilson_high),
        mean(g.mean_rating)
    )
}
