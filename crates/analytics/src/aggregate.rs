//! Aggregation: per group (model, profile, …, pairs, full configurations, days) the
//! images made, the favorites among them and ratings. State grows with the number of
//! distinct groups, never with the number of jobs, so a log of any length streams
//! through in constant memory.

use crate::intern::{FxMap, Interner};
use crate::record::ImageRecord;
pub use crate::tables::{day_label, Analysis, Day, GroupStats, Grouped, Table};
use serde::Serialize;
use std::collections::BTreeMap;

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
    "lora",
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
    pub lora: Option<&'a str>,
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
            lora: r.lora.as_deref(),
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
    pub(crate) fn merge(&mut self, o: &Counts) {
        self.images += o.images;
        self.favorites += o.favorites;
        self.rated += o.rated;
        self.rating_sum += o.rating_sum;
    }

    pub(crate) fn add(&mut self, s: &Sample) {
        self.images += 1;
        self.favorites += u64::from(s.favorite);
        if let Some(r) = s.rating {
            self.rated += 1;
            self.rating_sum += u64::from(r);
        }
    }
}

/// The streaming state: every dimension's values interned to ids, counts kept per id,
/// per id pair and per configuration (ids of model, profile, sampler, scheduler, exact
/// CFG, steps, size; a configuration is what a preset reuses, so LoRAs are a dimension of
/// their own, not part of it).
#[derive(Debug)]
pub struct Aggregator {
    min_support: u64,
    total: Counts,
    /// One interner per dimension, plus one for exact CFG values (index `CFG_EXACT`).
    names: Vec<Interner>,
    dims: Vec<Vec<Counts>>,
    pairs: Vec<FxMap<(u32, u32), Counts>>,
    configs: FxMap<[u32; 7], Counts>,
    days: BTreeMap<u64, Counts>,
}

const DAY_MS: u64 = 86_400_000;
const CFG_EXACT: usize = 9;
const NO_NUMBER: u64 = u64::MAX;

impl Aggregator {
    pub fn new(min_support: u64) -> Self {
        Aggregator {
            min_support,
            total: Counts::default(),
            names: (0..=CFG_EXACT).map(|_| Interner::default()).collect(),
            dims: vec![Vec::new(); DIMENSIONS.len()],
            pairs: (0..PAIRS.len()).map(|_| FxMap::default()).collect(),
            configs: FxMap::default(),
            days: BTreeMap::new(),
        }
    }

    pub fn min_support(&self) -> u64 {
        self.min_support
    }

    /// Counts one image in every group it belongs to.
    pub fn add(&mut self, s: &Sample) {
        self.total.add(s);
        let n = &mut self.names;
        let cfg_bits = s
            .cfg
            .filter(|c| c.is_finite())
            .map_or(NO_NUMBER, f64::to_bits);
        let size_key = s
            .width
            .zip(s.height)
            .map_or(NO_NUMBER, |(w, h)| (u64::from(w) << 32) | u64::from(h));
        let ids: [u32; 9] = [
            n[0].text(s.model.unwrap_or(UNKNOWN)),
            n[1].text(s.profile.unwrap_or(NONE)),
            n[2].text(s.theme.unwrap_or(NONE)),
            n[3].text(s.sampler.unwrap_or(UNKNOWN)),
            n[4].text(s.scheduler.unwrap_or(UNKNOWN)),
            n[5].number(cfg_bits, || cfg_bucket(s.cfg).to_string()),
            n[6].number(s.steps.map_or(NO_NUMBER, u64::from), || {
                s.steps.map_or(UNKNOWN.to_string(), |v| v.to_string())
            }),
            n[7].number(size_key, || {
                s.width
                    .zip(s.height)
                    .map_or(UNKNOWN.to_string(), |(w, h)| format!("{w}x{h}"))
            }),
            n[8].text(s.lora.unwrap_or(NONE)),
        ];
        // A configuration keeps the exact CFG: it is what a preset reuses.
        let cfg_exact = n[CFG_EXACT].number(cfg_bits, || {
            s.cfg
                .filter(|c| c.is_finite())
                .map_or(UNKNOWN.to_string(), |c| c.to_string())
        });
        for (counts, &id) in self.dims.iter_mut().zip(&ids) {
            let id = id as usize;
            if counts.len() <= id {
                counts.resize(id + 1, Counts::default());
            }
            counts[id].add(s);
        }
        for (map, &(a, b)) in self.pairs.iter_mut().zip(PAIRS) {
            map.entry((ids[a], ids[b])).or_default().add(s);
        }
        let config = [ids[0], ids[1], ids[3], ids[4], cfg_exact, ids[6], ids[7]];
        self.configs.entry(config).or_default().add(s);
        if let Some(ms) = s.created_ms {
            self.days.entry(ms / DAY_MS).or_default().add(s);
        }
    }

    /// The counts under their text keys.
    pub fn into_grouped(self) -> Grouped {
        let names = &self.names;
        let join = |parts: &[(usize, u32)]| {
            let mut key = String::new();
            for (i, &(dim, id)) in parts.iter().enumerate() {
                if i > 0 {
                    key.push(SEP);
                }
                key.push_str(names[dim].label(id));
            }
            key
        };
        let dims = self
            .dims
            .iter()
            .enumerate()
            .map(|(dim, counts)| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.images > 0)
                    .map(|(id, c)| (join(&[(dim, id as u32)]), *c))
                    .collect()
            })
            .collect();
        let pairs = self
            .pairs
            .iter()
            .zip(PAIRS)
            .map(|(map, &(a, b))| {
                map.iter()
                    .map(|(&(x, y), c)| (join(&[(a, x), (b, y)]), *c))
                    .collect()
            })
            .collect();
        let config_dims = [0, 1, 3, 4, CFG_EXACT, 6, 7];
        let configs = self
            .configs
            .iter()
            .map(|(ids, c)| {
                let parts: Vec<(usize, u32)> = config_dims.iter().copied().zip(*ids).collect();
                (join(&parts), *c)
            })
            .collect();
        Grouped {
            total: self.total,
            dims,
            pairs,
            configs,
            days: self.days,
        }
    }

    /// The figures, every table sorted: supported groups by Wilson lower bound (then
    /// rate, then size, then name), then the unsupported ones by rate and size.
    pub fn finish(self) -> Analysis {
        let min = self.min_support;
        self.into_grouped().finish(min)
    }
}
