//! The self-contained HTML report: inline CSS and SVG charts, thumbnails embedded as
//! base64 PNGs, no scripts and no external resources.

use super::svg::{esc, heat_map, over_time, rate_bars};
use super::{date, interval, mean, pct, settings_line};
use crate::aggregate::{GroupStats, Table};
use crate::analyze::{Report, TopFavorite};
use base64::Engine;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}\
th{background:#f0f0f0}tr.low td{color:#888}td.n{text-align:right}\
.sheet{display:flex;flex-wrap:wrap;gap:12px}.card{width:260px;font-size:12px}\
.card img{max-width:256px;max-height:256px;display:block}.missing{color:#b00}";

/// Thumbnails are at most this many pixels on a side.
const THUMB: u32 = 256;

pub(super) fn render(r: &Report) -> String {
    let a = &r.analysis;
    let s = &r.summary;
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>imagelab favorites report</title><style>{STYLE}</style></head><body><h1>imagelab favorites report</h1>"
    );
    let _ = write!(
        h,
        "<p id=\"totals\"><b>{}</b> images, <b>{}</b> favorites (<b>{}</b>). Groups with fewer than {} images are marked “low support” and not ranked.</p>",
        a.images,
        a.favorites,
        pct(a.rate),
        a.min_support
    );
    let _ = write!(
        h,
        "<p id=\"input\">Log <code>{}</code>: {} lines, {} jobs, {} events, <b>{} skipped</b> (corrupt or partial), {} jobs without images. PNGs: {} read ({} already in the log), <b>{} without metadata</b>, {} unreadable; <b>{} missing images</b>.",
        esc(&s.log),
        s.log_lines.lines,
        s.log_lines.jobs,
        s.log_lines.events,
        s.log_lines.skipped,
        s.jobs_without_images,
        s.pngs_read,
        s.pngs_in_log,
        s.pngs_without_metadata.len(),
        s.pngs_unreadable.len(),
        s.missing_images.len()
    );
    if let Some(since) = s.since_ms {
        let _ = write!(h, " Since {}.", date(since));
    }
    if !s.themes.is_empty() {
        let _ = write!(h, " Themes: {}.", esc(&s.themes.join(", ")));
    }
    h.push_str("</p>");
    h.push_str("<h2>Best configurations</h2>");
    table(&mut h, &a.best_configs, 20);
    h.push_str("<h2>Favorites over time</h2>");
    h.push_str(&over_time(&a.over_time));
    for t in &a.dimensions {
        let _ = write!(h, "<h2>By {}</h2>", esc(&t.name));
        h.push_str(&rate_bars(t));
        table(&mut h, t, usize::MAX);
    }
    for (i, t) in a.pairs.iter().enumerate() {
        let _ = write!(h, "<h2>By {}</h2>", esc(&t.name));
        if i == 0 {
            h.push_str(&heat_map(t));
        }
        table(&mut h, t, usize::MAX);
    }
    h.push_str("<h2>Top favorites</h2><div class=\"sheet\">");
    for f in &r.top_favorites {
        card(&mut h, f);
    }
    h.push_str("</div>");
    if !s.missing_images.is_empty() {
        h.push_str("<h3>Missing images</h3><ul class=\"missing\">");
        for m in &s.missing_images {
            let _ = write!(h, "<li>{}</li>", esc(m));
        }
        h.push_str("</ul>");
    }
    if !s.pngs_without_metadata.is_empty() {
        h.push_str("<h3>PNGs without metadata</h3><ul>");
        for m in &s.pngs_without_metadata {
            let _ = write!(h, "<li>{}</li>", esc(m));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

fn table(h: &mut String, t: &Table, limit: usize) {
    let _ = write!(
        h,
        "<table data-table=\"{}\"><tr><th>rank</th>",
        esc(&t.name)
    );
    for c in &t.columns {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("<th>images</th><th>favorites</th><th>rate</th><th>95% interval</th><th>mean rating</th></tr>");
    for g in t.groups.iter().take(limit) {
        row(h, &t.name, g);
    }
    h.push_str("</table>");
}

fn row(h: &mut String, table: &str, g: &GroupStats) {
    let class = if g.supported { "" } else { " class=\"low\"" };
    let rank = g
        .rank
        .map(|r| r.to_string())
        .unwrap_or_else(|| "low support".into());
    let _ = write!(
        h,
        "<tr{class} data-table=\"{}\" data-key=\"{}\"><td>{rank}</td>",
        esc(table),
        esc(&g.key)
    );
    for p in &g.parts {
        let _ = write!(h, "<td>{}</td>", esc(p));
    }
    let _ = write!(
        h,
        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        g.images,
        g.favorites,
        pct(g.rate),
        interval(g.wilson_low, g.wilson_high),
        mean(g.mean_rating)
    );
}

fn card(h: &mut String, f: &TopFavorite) {
    h.push_str("<div class=\"card\">");
    match f.file.as_deref().and_then(thumbnail) {
        Some(data) => {
            let _ = write!(
                h,
                "<img alt=\"favorite\" src=\"data:image/png;base64,{data}\">"
            );
        }
        None => {
            let _ = write!(
                h,
                "<p class=\"missing\">image missing: {}</p>",
                esc(&f.record.path)
            );
        }
    }
    let _ = write!(
        h,
        "<div><b>{}</b></div><div>{}</div></div>",
        esc(&f.record.prompt),
        esc(&settings_line(&f.record))
    );
}

/// A PNG thumbnail of the image as base64, or `None` when it cannot be decoded.
fn thumbnail(path: &str) -> Option<String> {
    let image = image::open(path).ok()?;
    let small = image.thumbnail(THUMB, THUMB);
    let mut bytes = std::io::Cursor::new(Vec::new());
    small.write_to(&mut bytes, image::ImageFormat::Png).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes.into_inner()))
}
