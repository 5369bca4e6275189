//! The analytics page as data, taken from the analytics crate's [`Report`] (the numbers
//! `imagelab analyze` prints; nothing is computed twice): one bar chart per dimension with
//! 95% Wilson intervals, the model × profile heat map, favorites per day and the best
//! configurations table.

use imagelab_analytics::aggregate::UNKNOWN;
use imagelab_analytics::{GroupStats, Report};

/// The dimensions drawn as bar charts, as the report names its tables.
pub const CHARTED: [&str; 5] = ["model", "profile", "sampler", "cfg", "steps"];

/// Bars per chart: the best-supported groups first, the rest are in the HTML report.
pub const MAX_BARS: usize = 12;

/// One group as a bar: its favorite rate and interval, and whether it has enough images
/// to rank (unsupported bars are drawn pale).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
    pub images: u64,
    pub favorites: u64,
    pub supported: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// The report's table name ("model", "cfg", …).
    pub dimension: String,
    pub bars: Vec<Bar>,
}

/// The model × profile favorite rates; `None` where no image had that pair.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub cells: Vec<Vec<Option<Bar>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Charts {
    /// "120 images, 14 favorites (11.7%)".
    pub summary: String,
    pub bars: Vec<BarChart>,
    pub heat: Option<HeatMap>,
    /// (day, images, favorites), oldest first.
    pub days: Vec<(String, u64, u64)>,
    pub best_columns: Vec<String>,
    /// Each best configuration's cells, then its images, favorites, rate and interval.
    pub best: Vec<Vec<String>>,
}

fn bar(group: &GroupStats, label: String) -> Bar {
    Bar {
        label,
        rate: group.rate,
        low: group.wilson_low,
        high: group.wilson_high,
        images: group.images,
        favorites: group.favorites,
        supported: group.supported,
    }
}

/// "1 image", "14 images".
fn counted(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The page's charts from one report.
pub fn charts(report: &Report) -> Charts {
    let a = &report.analysis;
    let bars = CHARTED
        .iter()
        .filter_map(|name| a.dimensions.iter().find(|t| t.name == *name))
        .map(|table| BarChart {
            dimension: table.name.clone(),
            bars: table
                .groups
                .iter()
                .take(MAX_BARS)
                .map(|g| bar(g, g.key.clone()))
                .collect(),
        })
        .collect();
    Charts {
        summary: format!(
            "{}, {} ({:.1}%)",
            counted(a.images, "image"),
            counted(a.favorites, "favorite"),
            a.rate * 100.0
        ),
        bars,
        heat: heat_map(report),
        days: a
            .over_time
            .iter()
            .map(|d| (d.day.clone(), d.images, d.favorites))
            .collect(),
        best_columns: a
            .best_configs
            .columns
            .iter()
            .cloned()
            .chain(["images", "favorites", "rate", "95% interval"].map(String::from))
            .collect(),
        best: a
            .best_configs
            .groups
            .iter()
            .filter(|g| g.supported)
            .take(10)
            .map(|g| {
                let mut row = g.parts.clone();
                row.push(g.images.to_string());
                row.push(g.favorites.to_string());
                row.push(format!("{:.1}%", g.rate * 100.0));
                row.push(format!(
                    "{:.1}–{:.1}%",
                    g.wilson_low * 100.0,
                    g.wilson_high * 100.0
                ));
                row
            })
            .collect(),
    }
}

/// The first pair table (model × profile) laid out as a grid.
fn heat_map(report: &Report) -> Option<HeatMap> {
    let table = report.analysis.pairs.first()?;
    let mut rows: Vec<String> = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for g in &table.groups {
        let (Some(r), Some(c)) = (g.parts.first(), g.parts.get(1)) else {
            continue;
        };
        if !rows.contains(r) {
            rows.push(r.clone());
        }
        if !columns.contains(c) {
            columns.push(c.clone());
        }
    }
    // Known values in order, the unknown one last.
    for list in [&mut rows, &mut columns] {
        list.sort_by_key(|v| (v == UNKNOWN, v.clone()));
    }
    let mut cells = vec![vec![None; columns.len()]; rows.len()];
    for g in &table.groups {
        let (Some(r), Some(c)) = (g.parts.first(), g.parts.get(1)) else {
            continue;
        };
        let (Some(i), Some(j)) = (
            rows.iter().position(|x| x == r),
            columns.iter().position(|x| x == c),
        ) else {
            continue;
        };
        cells[i][j] = Some(bar(g, g.key.clone()));
    }
    Some(HeatMap {
        rows,
        columns,
        cells,
    })
}

#[cfg(test)]
#[path = "charts_tests.rs"]
mod tests;
