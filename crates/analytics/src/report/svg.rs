//! Hand-written inline SVG charts (bars with Wilson error bars, a heat map, a daily
//! series): a few dozen elements each, no fonts or scripts, so the HTML stays
//! self-contained and opens offline.

use super::pct;
use crate::aggregate::{Day, Table};
use std::fmt::Write;

/// Escapes text for HTML and SVG.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const BAR_LIMIT: usize = 20;

/// Horizontal bars of the favorite rate per group with the 95% interval as an error bar;
/// groups below the minimum support are drawn grey.
pub(super) fn rate_bars(t: &Table) -> String {
    let groups: Vec<_> = t.groups.iter().take(BAR_LIMIT).collect();
    if groups.is_empty() {
        return String::new();
    }
    let (label_w, plot_w, row_h) = (220.0, 420.0, 22.0);
    let height = row_h * groups.len() as f64 + 30.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img" aria-label="favorite rate by {name}">"#,
        w = label_w + plot_w + 80.0,
        name = esc(&t.name)
    );
    for (i, g) in groups.iter().enumerate() {
        let y = 10.0 + row_h * i as f64;
        let fill = if g.supported { "#4a7bd0" } else { "#b8b8b8" };
        let _ = write!(
            svg,
            r##"<text x="{tx}" y="{ty}" font-size="12" text-anchor="end" font-family="sans-serif">{label}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="{bh}" fill="{fill}"/><line x1="{lo:.1}" x2="{hi:.1}" y1="{my}" y2="{my}" stroke="#222"/><line x1="{lo:.1}" x2="{lo:.1}" y1="{y1}" y2="{y2}" stroke="#222"/><line x1="{hi:.1}" x2="{hi:.1}" y1="{y1}" y2="{y2}" stroke="#222"/><text x="{vx}" y="{ty}" font-size="11" font-family="sans-serif">{value}</text>"##,
            tx = label_w - 6.0,
            ty = y + 13.0,
            label = esc(&truncate(&g.key, 34)),
            bw = g.rate * plot_w,
            bh = row_h - 6.0,
            lo = label_w + g.wilson_low * plot_w,
            hi = label_w + g.wilson_high * plot_w,
            my = y + (row_h - 6.0) / 2.0,
            y1 = y + 2.0,
            y2 = y + row_h - 8.0,
            vx = label_w + plot_w + 6.0,
            value = pct(g.rate),
        );
    }
    let axis_y = 10.0 + row_h * groups.len() as f64;
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let x = label_w + tick * plot_w;
        let _ = write!(
            svg,
            r##"<line x1="{x}" x2="{x}" y1="6" y2="{axis_y}" stroke="#ddd"/><text x="{x}" y="{ty}" font-size="10" text-anchor="middle" font-family="sans-serif">{label}</text>"##,
            ty = axis_y + 12.0,
            label = pct(tick)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A heat map of a pair table: rows are the first dimension, columns the second, colour
/// the favorite rate; empty and unsupported cells are marked.
pub(super) fn heat_map(t: &Table) -> String {
    let mut rows: Vec<&str> = Vec::new();
    let mut cols: Vec<&str> = Vec::new();
    for g in &t.groups {
        if let [a, b] = g.parts.as_slice() {
            if !rows.contains(&a.as_str()) && rows.len() < 15 {
                rows.push(a);
            }
            if !cols.contains(&b.as_str()) && cols.len() < 15 {
                cols.push(b);
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    rows.sort_unstable();
    cols.sort_unstable();
    let (label_w, head_h, cell_w, cell_h) = (200.0, 110.0, 70.0, 24.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="heat map {}">"#,
        label_w + cell_w * cols.len() as f64 + 10.0,
        head_h + cell_h * rows.len() as f64 + 10.0,
        esc(&t.name)
    );
    for (j, c) in cols.iter().enumerate() {
        let x = label_w + cell_w * j as f64 + cell_w / 2.0;
        let _ = write!(
            svg,
            r#"<text transform="translate({x},{y}) rotate(-45)" font-size="11" font-family="sans-serif">{}</text>"#,
            esc(&truncate(c, 20)),
            y = head_h - 6.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = head_h + cell_h * i as f64;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="end" font-family="sans-serif">{}</text>"#,
            label_w - 6.0,
            y + 16.0,
            esc(&truncate(r, 30))
        );
        for (j, c) in cols.iter().enumerate() {
            let x = label_w + cell_w * j as f64;
            let cell = t.groups.iter().find(|g| {
                g.parts.first().map(String::as_str) == Some(*r)
                    && g.parts.get(1).map(String::as_str) == Some(*c)
            });
            let (fill, text) = match cell {
                None => ("#f4f4f4".to_string(), String::new()),
                Some(g) => {
                    // White (0%) to deep blue (the best rate seen is rarely above 50%).
                    let level = (g.rate * 2.0).clamp(0.0, 1.0);
                    let shade = (255.0 - level * 180.0) as u8;
                    let fill = if g.supported {
                        format!("rgb({shade},{shade},255)")
                    } else {
                        "#e0e0e0".to_string()
                    };
                    let mark = if g.supported { "" } else { "*" };
                    (fill, format!("{}{mark}", pct(g.rate)))
                }
            };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{fill}" stroke="#fff"/><text x="{tx}" y="{ty}" font-size="10" text-anchor="middle" font-family="sans-serif">{text}</text>"##,
                tx = x + cell_w / 2.0,
                ty = y + 16.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Images per day (light bars) and favorites per day (dark bars).
pub(super) fn over_time(days: &[Day]) -> String {
    if days.is_empty() {
        return String::new();
    }
    let shown = &days[days.len().saturating_sub(120)..];
    let max = shown.iter().map(|d| d.images).max().unwrap_or(1).max(1) as f64;
    let (plot_h, bar_w) = (160.0, (700.0 / shown.len() as f64).clamp(3.0, 40.0));
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="favorites over time">"#,
        bar_w * shown.len() as f64 + 60.0,
        plot_h + 40.0
    );
    for (i, d) in shown.iter().enumerate() {
        let x = 50.0 + bar_w * i as f64;
        let h_all = plot_h * d.images as f64 / max;
        let h_fav = plot_h * d.favorites as f64 / max;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h_all:.1}" fill="#c9d8f2"><title>{} : {} images</title></rect><rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h_fav:.1}" fill="#d0574a"><title>{} : {} favorites</title></rect>"##,
            10.0 + plot_h - h_all,
            bar_w - 1.0,
            d.day,
            d.images,
            10.0 + plot_h - h_fav,
            bar_w - 1.0,
            d.day,
            d.favorites
        );
    }
    let first = shown.first().map(|d| d.day.as_str()).unwrap_or_default();
    let last = shown.last().map(|d| d.day.as_str()).unwrap_or_default();
    let _ = write!(
        svg,
        r#"<text x="50" y="{y}" font-size="10" font-family="sans-serif">{first}</text><text x="{x}" y="{y}" font-size="10" text-anchor="end" font-family="sans-serif">{last}</text><text x="45" y="18" font-size="10" text-anchor="end" font-family="sans-serif">{max}</text></svg>"#,
        y = plot_h + 25.0,
        x = 50.0 + bar_w * shown.len() as f64,
        max = max as u64
    );
    svg
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
