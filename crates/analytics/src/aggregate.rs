//! Aggregation: per group (model, profile, …, pairs, full configurations, days) the
//! images made, the favorites among them and ratings. State grows with the number of
//! distinct groups, never with the number of jobs, so a log of any length streams
//! through in constant memory.

use crate::record::ImageRecord;
use crate::wilson::{wilson_interval, Z95};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The single dimensions, in report order.
pub const DIMENSIONS: &[&str] = &[
    "model",
    "profile",
    "theme",
    "sampler",
    "scheduler",
    "cfg",
    "steps",
    "size",
];

/// The pairs of dimensions (indices into [`DIMENSIONS`]); the first is the heat map's.
pub const PAIRS: &[(usize, usize)] = &[(0, 1), (0, 3), (0, 5), (3, 4), (0, 7), (1, 2)];

/// Placeholder for a value the metadata did not carry.
pub const UNKNOWN: &str = "(unknown)";
/// Placeholder for "no profile / no theme", which is a real choice, not missing data.
pub const NONE: &str = "(none)";
/// Separates the parts of a composite group key (a control character no name contains).
pub const SEP: char = '\u{1f}';

/// One image as the aggregator sees it, borrowed so the streaming loop allocates only
/// when a group is new.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample<'a> {
    pub model: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub theme: Option<&'a str>,
    pub sampler: Option<&'a str>,
    pub scheduler: Option<&'a str>,
    pub cfg: Option<f64>,
    pub steps: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub created_ms: Option<u64>,
    pub favorite: bool,
    pub rating: Option<u8>,
}

impl<'a> Sample<'a> {
    pub fn of(r: &'a ImageRecord) -> Sample<'a> {
        Sample {
            model: r.model.as_deref(),
            profile: r.profile.as_deref(),
            theme: r.theme.as_deref(),
            sampler: r.sampler.as_deref(),
            scheduler: r.scheduler.as_deref(),
            cfg: r.cfg,
            steps: r.steps,
            width: r.width,
            height: r.height,
            created_ms: r.created_ms,
            favorite: r.favorite,
            rating: r.rating,
        }
    }
}

/// The CFG bucket of a value: coarse enough that each bucket gets support.
pub fn cfg_bucket(cfg: Option<f64>) -> &'static str {
    match cfg {
        None => UNKNOWN,
        Some(c) if !c.is_finite() => UNKNOWN,
        Some(c) if c < 2.0 => "<2",
        Some(c) if c < 4.0 => "2-4",
        Some(c) if c < 6.0 => "4-6",
        Some(c) if c < 8.0 => "6-8",
        Some(c) if c < 10.0 => "8-10",
        Some(_) => ">=10",
    }
}

/// Running counts of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub images: u64,
    pub favorites: u64,
    pub rated: u64,
    pub rating_sum: u64,
}

impl Counts {
    fn add(&mut self, s: &Sample) {
        self.images += 1;
        self.favorites += u64::from(s.favorite);
        if let Some(r) = s.rating {
            self.rated += 1;
            self.rating_sum += u64::from(r);
        }
    }
}

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

/// The streaming state.
#[derive(Debug)]
pub struct Aggregator {
    min_support: u64,
    total: Counts,
    dims: Vec<HashMap<String, Counts>>,
    pairs: Vec<HashMap<String, Counts>>,
    configs: HashMap<String, Counts>,
    days: BTreeMap<u64, Counts>,
    key: String,
}

const DAY_MS: u64 = 86_400_000;

impl Aggregator {
    pub fn new(min_support: u64) -> Self {
        Aggregator {
            min_support,
            total: Counts::default(),
            dims: vec![HashMap::new(); DIMENSIONS.len()],
            pairs: vec![HashMap::new(); PAIRS.len()],
            configs: HashMap::new(),
            days: BTreeMap::new(),
            key: String::with_capacity(256),
        }
    }

    /// Counts one image in every group it belongs to.
    pub fn add(&mut self, s: &Sample) {
        self.total.add(s);
        let steps = s.steps.map(|v| v.to_string());
        let size = s.width.zip(s.height).map(|(w, h)| format!("{w}x{h}"));
        let values: [&str; 8] = [
            s.model.unwrap_or(UNKNOWN),
            s.profile.unwrap_or(NONE),
            s.theme.unwrap_or(NONE),
            s.sampler.unwrap_or(UNKNOWN),
            s.scheduler.unwrap_or(UNKNOWN),
            cfg_bucket(s.cfg),
            steps.as_deref().unwrap_or(UNKNOWN),
            size.as_deref().unwrap_or(UNKNOWN),
        ];
        for (map, value) in self.dims.iter_mut().zip(values) {
            bump(map, value, s);
        }
        for (map, &(a, b)) in self.pairs.iter_mut().zip(PAIRS) {
            self.key.clear();
            self.key.push_str(values[a]);
            self.key.push(SEP);
            self.key.push_str(values[b]);
            bump(map, &self.key, s);
        }
        // A configuration keeps the exact CFG: it is what a preset reuses.
        self.key.clear();
        for (i, part) in [0usize, 1, 3, 4].iter().map(|&i| values[i]).enumerate() {
            if i > 0 {
                self.key.push(SEP);
            }
            self.key.push_str(part);
        }
        self.key.push(SEP);
        match s.cfg {
            Some(c) if c.is_finite() => {
                use std::fmt::Write;
                let _ = write!(self.key, "{c}");
            }
            _ => self.key.push_str(UNKNOWN),
        }
        for i in [6usize, 7] {
            self.key.push(SEP);
            self.key.push_str(values[i]);
        }
        bump(&mut self.configs, &self.key, s);
        if let Some(ms) = s.created_ms {
            self.days.entry(ms / DAY_MS).or_default().add(s);
        }
    }

    /// The figures, every table sorted: supported groups by Wilson lower bound (then
    /// rate, then size, then name), then the unsupported ones by rate and size.
    pub fn finish(self) -> Analysis {
        let min = self.min_support;
        let dimensions = DIMENSIONS
            .iter()
            .zip(self.dims)
            .map(|(name, map)| table(name.to_string(), vec![name.to_string()], map, min))
            .collect();
        let pairs = PAIRS
            .iter()
            .zip(self.pairs)
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
        let config_columns = ["model", "profile", "sampler", "scheduler", "cfg", "steps", "size"];
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

fn bump(map: &mut HashMap<String, Counts>, key: &str, s: &Sample) {
    match map.get_mut(key) {
        Some(c) => c.add(s),
        None => map.entry(key.to_string()).or_default().add(s),
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
