//! The report's tables: grouped counts turned into rates, Wilson intervals and ranks,
//! with groups below the minimum support marked and left unranked.

use crate::aggregate::{Counts, DIMENSIONS, PAIRS, SEP};
use crate::wilson::{wilson_interval, Z95};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A group's figures as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// The group's value; for pairs and configurations the parts joined by " × ".
    pub key: String,
    /// The parts of a composite key (one part for a single dimension).
    pub parts: Vec<String>,
    pub images: u64,
    pub favorites: u64,
    pub rate: f64,
    pub wilson_low: f64,
    pub wilson_high: f64,
    /// At least the minimum support: ranked. Below it the group is listed, marked, unranked.
    pub supported: bool,
    /// 1 = best lower bound among the supported groups.
    pub rank: Option<usize>,
    pub mean_rating: Option<f64>,
}

/// One table: a dimension, a pair, or the configurations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub groups: Vec<GroupStats>,
}

/// Images and favorites made on one day (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub day: String,
    pub images: u64,
    pub favorites: u64,
}

/// The aggregation's result (the report's numbers; `analyze` adds the summary).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub images: u64,
    pub favorites: u64,
    pub rate: f64,
    pub min_support: u64,
    pub dimensions: Vec<Table>,
    pub pairs: Vec<Table>,
    /// Full configurations (model, profile, sampler, scheduler, CFG, steps, size),
    /// supported ones ranked by the Wilson lower bound.
    pub best_configs: Table,
    pub over_time: Vec<Day>,
}

/// Grouped counts under their text keys (parts joined by [`SEP`]): what [`Aggregator`]
/// turns into before the tables are built.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Grouped {
    pub total: Counts,
    pub dims: Vec<HashMap<String, Counts>>,
    pub pairs: Vec<HashMap<String, Counts>>,
    pub configs: HashMap<String, Counts>,
    pub days: BTreeMap<u64, Counts>,
}

impl Grouped {
    /// Adds the counts of another part of the log (read by another thread).
    pub fn merge(&mut self, other: Grouped) {
        fn add_map(into: &mut HashMap<String, Counts>, from: HashMap<String, Counts>) {
            for (k, c) in from {
                into.entry(k).or_default().merge(&c);
            }
        }
        self.total.merge(&other.total);
        let (d, p) = (
            self.dims.len().max(other.dims.len()),
            self.pairs.len().max(other.pairs.len()),
        );
        self.dims.resize(d, HashMap::new());
        self.pairs.resize(p, HashMap::new());
        for (into, from) in self.dims.iter_mut().zip(other.dims) {
            add_map(into, from);
        }
        for (into, from) in self.pairs.iter_mut().zip(other.pairs) {
            add_map(into, from);
        }
        add_map(&mut self.configs, other.configs);
        for (day, c) in other.days {
            self.days.entry(day).or_default().merge(&c);
        }
    }

    /// The report's figures, with groups below `min` images marked and unranked.
    pub fn finish(self, min: u64) -> Analysis {
        let mut dims = self.dims;
        dims.resize(DIMENSIONS.len(), HashMap::new());
        let mut pair_maps = self.pairs;
        pair_maps.resize(PAIRS.len(), HashMap::new());
        let dimensions = DIMENSIONS
            .iter()
            .zip(dims)
            .map(|(name, map)| table(name.to_string(), vec![name.to_string()], map, min))
            .collect();
        let pairs = PAIRS
            .iter()
            .zip(pair_maps)
            .map(|(&(a, b), map)| {
                let (a, b) = (DIMENSIONS[a], DIMENSIONS[b]);
                table(
                    format!("{a} × {b}"),
                    vec![a.to_string(), b.to_string()],
                    map,
                    min,
                )
            })
            .collect();
        let config_columns = [
            "model",
            "profile",
            "sampler",
            "scheduler",
            "cfg",
            "steps",
            "size",
        ];
        let best_configs = table(
            "configuration".into(),
            config_columns.iter().map(|c| c.to_string()).collect(),
            self.configs,
            min,
        );
        let over_time = self
            .days
            .into_iter()
            .map(|(day, c)| Day {
                day: day_label(day),
                images: c.images,
                favorites: c.favorites,
            })
            .collect();
        Analysis {
            images: self.total.images,
            favorites: self.total.favorites,
            rate: rate(&self.total),
            min_support: min,
            dimensions,
            pairs,
            best_configs,
            over_time,
        }
    }
}

fn rate(c: &Counts) -> f64 {
    if c.images == 0 {
        0.0
    } else {
        c.favorites as f64 / c.images as f64
    }
}

fn table(name: String, columns: Vec<String>, map: HashMap<String, Counts>, min: u64) -> Table {
    let mut groups: Vec<GroupStats> = map
        .into_iter()
        .map(|(key, c)| {
            let interval = wilson_interval(c.favorites, c.images, Z95);
            let parts: Vec<String> = key.split(SEP).map(str::to_string).collect();
            GroupStats {
                key: parts.join(" × "),
                parts,
                images: c.images,
                favorites: c.favorites,
                rate: rate(&c),
                wilson_low: interval.low,
                wilson_high: interval.high,
                supported: c.images >= min,
                rank: None,
                mean_rating: (c.rated > 0).then(|| c.rating_sum as f64 / c.rated as f64),
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        b.supported
            .cmp(&a.supported)
            .then_with(|| {
                if a.supported {
                    b.wilson_low.total_cmp(&a.wilson_low)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| b.rate.total_cmp(&a.rate))
            .then_with(|| b.images.cmp(&a.images))
            .then_with(|| a.key.cmp(&b.key))
    });
    for (i, g) in groups.iter_mut().filter(|g| g.supported).enumerate() {
        g.rank = Some(i + 1);
    }
    Table {
        name,
        columns,
        groups,
    }
}

/// `YYYY-MM-DD` of a day number since the epoch (UTC).
pub fn day_label(day: u64) -> String {
    let secs = i64::try_from(day.saturating_mul(86_400)).unwrap_or(0);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let d = t.date();
            format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
        }
        Err(_) => format!("day {day}"),
    }
}
