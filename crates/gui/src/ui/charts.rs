//! The analytics charts drawn with cairo: horizontal bars of favorite rate with their 95%
//! Wilson intervals as error bars, the model × profile heat map, and favorites per day.
//! Each chart also gets a text caption with its figures, for screen readers and the tests.

use crate::state::charts::{Bar, BarChart, HeatMap};
use gtk::cairo;
use gtk::prelude::*;

const ROW: f64 = 22.0;
const LABEL_WIDTH: f64 = 200.0;
const ACCENT: (f64, f64, f64) = (0.21, 0.52, 0.89);

fn text_colour(area: &gtk::DrawingArea) -> (f64, f64, f64) {
    #[allow(deprecated)] // GTK 4.10 adds `Widget::color`; Debian 12 has 4.8.
    let c = area.style_context().color();
    (c.red() as f64, c.green() as f64, c.blue() as f64)
}

fn label(cr: &cairo::Context, text: &str, x: f64, y: f64, max_chars: usize) {
    let mut shown: String = text.chars().take(max_chars).collect();
    if text.chars().count() > max_chars {
        shown.push('…');
    }
    cr.move_to(x, y);
    let _ = cr.show_text(&shown);
}

/// A bar and its caption line: "alpha: 40.0% of 30 (22.7–59.4%)".
pub fn bar_caption(bar: &Bar) -> String {
    format!(
        "{}: {:.1}% of {} ({:.1}–{:.1}%){}",
        bar.label,
        bar.rate * 100.0,
        bar.images,
        bar.low * 100.0,
        bar.high * 100.0,
        if bar.supported {
            ""
        } else {
            ", too few to rank"
        }
    )
}

/// A bar chart of one dimension, with its caption under it.
pub fn bar_chart(chart: &BarChart) -> gtk::Box {
    let area = gtk::DrawingArea::new();
    area.set_content_height((chart.bars.len().max(1) as f64 * ROW + 24.0) as i32);
    area.set_hexpand(true);
    let bars = chart.bars.clone();
    area.set_draw_func(move |area, cr, width, _| {
        let fg = text_colour(area);
        cr.select_font_face("Sans", cairo::FontSlant::Normal, cairo::FontWeight::Normal);
        cr.set_font_size(12.0);
        let plot = (width as f64 - LABEL_WIDTH - 60.0).max(40.0);
        for (i, bar) in bars.iter().enumerate() {
            let y = i as f64 * ROW + 4.0;
            cr.set_source_rgb(fg.0, fg.1, fg.2);
            label(cr, &bar.label, 4.0, y + 14.0, 28);
            let alpha = if bar.supported { 1.0 } else { 0.35 };
            cr.set_source_rgba(ACCENT.0, ACCENT.1, ACCENT.2, alpha);
            cr.rectangle(LABEL_WIDTH, y + 3.0, plot * bar.rate, ROW - 8.0);
            let _ = cr.fill();
            // The interval: a line from low to high with end ticks.
            cr.set_source_rgb(fg.0, fg.1, fg.2);
            cr.set_line_width(1.5);
            let (lo, hi, mid) = (
                LABEL_WIDTH + plot * bar.low,
                LABEL_WIDTH + plot * bar.high,
                y + ROW / 2.0 - 1.0,
            );
            cr.move_to(lo, mid);
            cr.line_to(hi, mid);
            for x in [lo, hi] {
                cr.move_to(x, mid - 4.0);
                cr.line_to(x, mid + 4.0);
            }
            let _ = cr.stroke();
            label(
                cr,
                &format!("{:.0}%", bar.rate * 100.0),
                LABEL_WIDTH + plot + 8.0,
                y + 14.0,
                6,
            );
        }
        axis(cr, fg, plot, bars.len() as f64 * ROW + 8.0);
    });
    let title = format!("Favorite rate by {}", chart.dimension);
    super::widgets::name(&area, &title);
    captioned(
        &title,
        &area,
        &chart.bars.iter().map(bar_caption).collect::<Vec<_>>(),
    )
}

/// 0%, 50% and 100% marks under the bars.
fn axis(cr: &cairo::Context, fg: (f64, f64, f64), plot: f64, y: f64) {
    cr.set_source_rgba(fg.0, fg.1, fg.2, 0.6);
    cr.set_font_size(10.0);
    for (share, text) in [(0.0, "0%"), (0.5, "50%"), (1.0, "100%")] {
        label(cr, text, LABEL_WIDTH + plot * share - 8.0, y + 10.0, 4);
    }
}

/// The heat map: a cell per model × profile, darker for a higher favorite rate.
pub fn heat_map(map: &HeatMap) -> gtk::Box {
    let area = gtk::DrawingArea::new();
    area.set_content_height(((map.rows.len() + 1) as f64 * ROW * 1.4 + 8.0) as i32);
    area.set_hexpand(true);
    let m = map.clone();
    area.set_draw_func(move |area, cr, width, _| {
        let fg = text_colour(area);
        cr.select_font_face("Sans", cairo::FontSlant::Normal, cairo::FontWeight::Normal);
        cr.set_font_size(12.0);
        let h = ROW * 1.4;
        let w = ((width as f64 - LABEL_WIDTH) / m.columns.len().max(1) as f64).min(140.0);
        cr.set_source_rgb(fg.0, fg.1, fg.2);
        for (j, column) in m.columns.iter().enumerate() {
            label(
                cr,
                column,
                LABEL_WIDTH + j as f64 * w + 4.0,
                16.0,
                (w / 7.0) as usize,
            );
        }
        for (i, row) in m.rows.iter().enumerate() {
            let y = (i + 1) as f64 * h;
            cr.set_source_rgb(fg.0, fg.1, fg.2);
            label(cr, row, 4.0, y + h / 2.0 + 4.0, 28);
            for (j, cell) in m.cells[i].iter().enumerate() {
                let x = LABEL_WIDTH + j as f64 * w;
                let Some(cell) = cell else { continue };
                cr.set_source_rgba(ACCENT.0, ACCENT.1, ACCENT.2, 0.15 + 0.85 * cell.rate);
                cr.rectangle(x + 1.0, y + 1.0, w - 2.0, h - 2.0);
                let _ = cr.fill();
                cr.set_source_rgb(fg.0, fg.1, fg.2);
                label(
                    cr,
                    &format!("{:.0}% · {}", cell.rate * 100.0, cell.images),
                    x + 6.0,
                    y + h / 2.0 + 4.0,
                    12,
                );
            }
        }
    });
    let title = "Favorite rate by model and profile";
    super::widgets::name(&area, title);
    let lines: Vec<String> = m_lines(map);
    captioned(title, &area, &lines)
}

fn m_lines(map: &HeatMap) -> Vec<String> {
    map.cells
        .iter()
        .flatten()
        .flatten()
        .map(bar_caption)
        .collect()
}

/// Images (pale) and favorites (accent) per day, as columns.
pub fn days_chart(days: &[(String, u64, u64)]) -> gtk::Box {
    let area = gtk::DrawingArea::new();
    area.set_content_height(160);
    area.set_hexpand(true);
    let d = days.to_vec();
    area.set_draw_func(move |area, cr, width, height| {
        let fg = text_colour(area);
        cr.select_font_face("Sans", cairo::FontSlant::Normal, cairo::FontWeight::Normal);
        cr.set_font_size(10.0);
        let most = d.iter().map(|x| x.1).max().unwrap_or(1).max(1) as f64;
        let column = ((width as f64 - 8.0) / d.len().max(1) as f64).min(40.0);
        let plot = height as f64 - 24.0;
        for (i, (day, images, favorites)) in d.iter().enumerate() {
            let x = 4.0 + i as f64 * column;
            for (count, alpha) in [(*images, 0.25), (*favorites, 1.0)] {
                let h = plot * count as f64 / most;
                cr.set_source_rgba(ACCENT.0, ACCENT.1, ACCENT.2, alpha);
                cr.rectangle(x + 2.0, plot - h + 4.0, column - 4.0, h);
                let _ = cr.fill();
            }
            if i == 0 || i + 1 == d.len() {
                cr.set_source_rgb(fg.0, fg.1, fg.2);
                label(
                    cr,
                    &day.get(5..).unwrap_or(day).replace('-', "/"),
                    x,
                    height as f64 - 6.0,
                    5,
                );
            }
        }
    });
    let title = "Favorites per day";
    super::widgets::name(&area, title);
    let lines: Vec<String> = days
        .iter()
        .map(|(day, images, favorites)| format!("{day}: {favorites} of {images}"))
        .collect();
    captioned(title, &area, &lines)
}

/// A heading, the chart and its figures in a dim caption.
fn captioned(title: &str, area: &gtk::DrawingArea, lines: &[String]) -> gtk::Box {
    let heading = super::widgets::heading(title);
    let caption = gtk::Label::new(Some(&lines.join(" · ")));
    caption.set_wrap(true);
    caption.set_xalign(0.0);
    caption.add_css_class("dim-label");
    caption.add_css_class("caption");
    super::widgets::name(&caption, &format!("{title}: {}", lines.join(", ")));
    let section = gtk::Box::new(gtk::Orientation::Vertical, 4);
    section.set_margin_bottom(18);
    section.append(&heading);
    section.append(area);
    section.append(&caption);
    section
}
