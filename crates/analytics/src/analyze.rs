//! One analysis run: scan the PNG folders, fold the favorite events, stream the job lines,
//! add the scanned images the log did not already cover, and collect the top favorites.

use crate::aggregate::{Aggregator, Analysis, Grouped, Sample};
use crate::error::AnalyticsError;
use crate::error::Result;
use crate::favorites::FavoriteSet;
use crate::joblog::{split_ranges, stream_range, JobView, LineCounts, LogLine};
use crate::pngmeta::scan_dirs;
use crate::record::{file_name, sampler_name, ImageRecord, SourceTool};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What to analyze.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub log: PathBuf,
    /// Folders of PNGs to read (any tool's).
    pub image_dirs: Vec<PathBuf>,
    /// Where relative output paths of the log live (the configured output folder).
    pub output_dir: Option<PathBuf>,
    /// Only images made at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only images of these themes (all when empty).
    pub themes: Vec<String>,
    /// Groups with fewer images are marked and not ranked.
    pub min_support: u64,
    /// How many favorites the contact sheet and the theme export take.
    pub top: usize,
    /// Threads reading the log (0: one per core, up to 4, for logs of 64 MB or more).
    pub threads: usize,
}

impl AnalyzeOptions {
    pub fn new(log: PathBuf) -> Self {
        AnalyzeOptions {
            log,
            image_dirs: Vec::new(),
            output_dir: None,
            since_ms: None,
            themes: Vec::new(),
            min_support: 10,
            top: 24,
            threads: 0,
        }
    }
}

/// Counts of what was read and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub log: String,
    pub log_lines: LineCounts,
    /// Job lines in a state other than `done` (failed, dead, cancelled): no images.
    pub jobs_without_images: u64,
    pub pngs_read: u64,
    /// Scanned PNGs that were already counted through the log.
    pub pngs_in_log: u64,
    pub pngs_without_metadata: Vec<String>,
    pub pngs_unreadable: Vec<String>,
    /// Top favorites whose image file was not found.
    pub missing_images: Vec<String>,
    pub since_ms: Option<u64>,
    pub themes: Vec<String>,
}

/// One favorite on the contact sheet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopFavorite {
    #[serde(flatten)]
    pub record: ImageRecord,
    /// The image file found on disk, when it was.
    pub file: Option<String>,
}

/// The whole report's data: what JSON prints and the HTML and Markdown render.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub summary: Summary,
    #[serde(flatten)]
    pub analysis: Analysis,
    pub top_favorites: Vec<TopFavorite>,
}

/// Runs the analysis.
pub fn analyze(opts: &AnalyzeOptions) -> Result<Report> {
    let scan = scan_dirs(&opts.image_dirs)?;
    let favorites = crate::favorites::fold_favorites(&opts.log)?;
    let by_name: HashMap<&str, usize> = scan
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.file_name(), i))
        .collect();
    let len = std::fs::metadata(&opts.log).map(|m| m.len()).unwrap_or(0);
    let threads = match opts.threads {
        0 if len >= PARALLEL_FROM => {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
        }
        0 => 1,
        n => n,
    };
    let ctx = Context {
        opts,
        favorites: &favorites,
        by_name: &by_name,
        pngs: scan.records.len(),
    };
    let results: Vec<Result<Part>> = std::thread::scope(|scope| {
        let handles: Vec<_> = split_ranges(len, threads)
            .into_iter()
            .map(|(start, end)| {
                let ctx = &ctx;
                scope.spawn(move || ctx.read_part(start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(AnalyticsError::Format {
                        path: opts.log.clone(),
                        message: "an analysis thread failed".into(),
                    })
                })
            })
            .collect()
    });
    let mut grouped = Grouped::default();
    let mut top = TopList::new(opts.top);
    let mut covered = vec![false; scan.records.len()];
    let mut not_done = 0;
    let mut counts = LineCounts::default();
    for part in results {
        let part = part?;
        grouped.merge(part.agg.into_grouped());
        top.absorb(part.top);
        for (c, p) in covered.iter_mut().zip(part.covered) {
            *c |= p;
        }
        not_done += part.not_done;
        counts.merge(&part.counts);
    }
    // Scanned PNGs the log did not cover (other tools' images, or ours from elsewhere).
    let mut agg = Aggregator::new(opts.min_support);
    let mut pngs_in_log = 0;
    for (record, covered) in scan.records.iter().zip(&covered) {
        if *covered {
            pngs_in_log += 1;
            continue;
        }
        if !keeps(opts, record.created_ms, record.theme.as_deref()) {
            continue;
        }
        let state = favorites.lookup(None, &record.path);
        let mut record = record.clone();
        record.favorite = state.favorite;
        record.rating = state.rating;
        agg.add(&Sample::of(&record));
        if record.favorite && top.wants(record.rating, record.created_ms) {
            top.push(record);
        }
    }
    grouped.merge(agg.into_grouped());
    let mut missing = Vec::new();
    let top_favorites = top
        .finish()
        .into_iter()
        .map(|record| {
            let file = locate(
                &record.path,
                opts.output_dir.as_deref(),
                &scan.records,
                &by_name,
            );
            if file.is_none() {
                missing.push(if record.path.is_empty() {
                    format!(
                        "job {} (no output recorded)",
                        record.job.unwrap_or_default()
                    )
                } else {
                    record.path.clone()
                });
            }
            TopFavorite { record, file }
        })
        .collect();
    // Every starred image named in the log is checked too, not only the ones shown: stars
    // are few, so this costs a handful of stat calls.
    let mut starred_images: Vec<&String> = favorites
        .images
        .iter()
        .filter(|(_, s)| s.favorite)
        .map(|(name, _)| name)
        .collect();
    starred_images.sort();
    for name in starred_images {
        if locate(name, opts.output_dir.as_deref(), &scan.records, &by_name).is_none()
            && !missing.contains(name)
        {
            missing.push(name.clone());
        }
    }
    let shown = |v: Vec<PathBuf>| v.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    Ok(Report {
        summary: Summary {
            log: opts.log.to_string_lossy().into_owned(),
            log_lines: counts,
            jobs_without_images: not_done,
            pngs_read: scan.records.len() as u64,
            pngs_in_log,
            pngs_without_metadata: shown(scan.without_metadata),
            pngs_unreadable: shown(scan.unreadable),
            missing_images: missing,
            since_ms: opts.since_ms,
            themes: opts.themes.clone(),
        },
        analysis: grouped.finish(opts.min_support),
        top_favorites,
    })
}

/// Logs at least this large are read on several threads.
const PARALLEL_FROM: u64 = 64 << 20;

/// Whether an image made at `time` with `theme` passes the filters.
fn keeps(opts: &AnalyzeOptions, time: Option<u64>, theme: Option<&str>) -> bool {
    opts.since_ms
        .is_none_or(|since| time.is_some_and(|t| t >= since))
        && (opts.themes.is_empty() || theme.is_some_and(|t| opts.themes.iter().any(|w| w == t)))
}

/// What every thread reads with.
struct Context<'a> {
    opts: &'a AnalyzeOptions,
    favorites: &'a FavoriteSet,
    by_name: &'a HashMap<&'a str, usize>,
    pngs: usize,
}

/// What one thread found in its byte range of the log.
struct Part {
    agg: Aggregator,
    top: TopList,
    /// Which scanned PNGs the log's outputs named.
    covered: Vec<bool>,
    not_done: u64,
    counts: LineCounts,
}

impl Context<'_> {
    fn read_part(&self, start: u64, end: u64) -> Result<Part> {
        let mut part = Part {
            agg: Aggregator::new(self.opts.min_support),
            top: TopList::new(self.opts.top),
            covered: vec![false; self.pngs],
            not_done: 0,
            counts: LineCounts::default(),
        };
        part.counts = stream_range(&self.opts.log, start, end, |line| {
            if let LogLine::Job(job) = line {
                self.add_job(&mut part, &job);
            }
        })?;
        Ok(part)
    }

    fn add_job(&self, part: &mut Part, job: &JobView) {
        if job.state != "done" {
            part.not_done += 1;
            return;
        }
        if !keeps(self.opts, job.time_ms(), job.theme()) {
            return;
        }
        let params = &job.spec.params;
        let sampler = params.sampler.as_deref().map(sampler_name);
        let model = Some(params.model.as_ref()).filter(|m| !m.is_empty());
        let lora = imagelab_core::lora::group_key(
            &params.prompt,
            params.loras.iter().map(|l| l.name.as_ref()),
        );
        let base = Sample {
            model,
            profile: job.spec.style.as_deref(),
            theme: job.theme(),
            lora: lora.as_deref(),
            sampler: sampler.as_deref(),
            scheduler: params.scheduler.as_deref(),
            cfg: params.cfg,
            steps: params.steps,
            width: params.width,
            height: params.height,
            created_ms: job.time_ms(),
            favorite: false,
            rating: None,
        };
        // A done job without recorded outputs still made (at least) one image.
        let outputs: Vec<&str> = if job.outputs.is_empty() {
            vec![""]
        } else {
            job.outputs.iter().map(|o| o.as_ref()).collect()
        };
        for (i, output) in outputs.iter().enumerate() {
            if let Some(&idx) = self
                .by_name
                .get(file_name(output))
                .filter(|_| !output.is_empty())
            {
                part.covered[idx] = true;
            }
            let state = self.favorites.lookup(Some(job.id), output);
            let sample = Sample {
                favorite: state.favorite,
                rating: state.rating,
                ..base
            };
            part.agg.add(&sample);
            if state.favorite && part.top.wants(state.rating, sample.created_ms) {
                part.top.push(ImageRecord {
                    path: output.to_string(),
                    job: Some(job.id),
                    prompt: params.prompt.to_string(),
                    negative: params.negative.to_string(),
                    model: model.map(str::to_string),
                    model_hash: job.model_hash.as_deref().map(str::to_string),
                    profile: base.profile.map(str::to_string),
                    theme: base.theme.map(str::to_string),
                    lora: lora.clone(),
                    sampler: sampler.as_deref().map(str::to_string),
                    scheduler: base.scheduler.map(str::to_string),
                    cfg: base.cfg,
                    steps: base.steps,
                    width: base.width,
                    height: base.height,
                    seed: job.seeds.get(i).copied().or(params.seed),
                    created_ms: base.created_ms,
                    favorite: true,
                    rating: state.rating,
                    source: SourceTool::JobLog,
                });
            }
        }
    }
}

/// Finds an image on disk: as recorded, relative to the output folder, or by file name
/// among the scanned PNGs.
fn locate(
    path: &str,
    output_dir: Option<&Path>,
    scanned: &[ImageRecord],
    by_name: &HashMap<&str, usize>,
) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let direct = Path::new(path);
    if direct.is_absolute() && direct.is_file() {
        return Some(path.to_string());
    }
    if let Some(joined) = output_dir.map(|d| d.join(path)).filter(|p| p.is_file()) {
        return Some(joined.to_string_lossy().into_owned());
    }
    if let Some(&i) = by_name.get(file_name(path)) {
        return Some(scanned[i].path.clone());
    }
    direct.is_file().then(|| path.to_string())
}

/// The best `limit` favorites by (rating, recency), kept bounded while streaming.
struct TopList {
    limit: usize,
    items: Vec<ImageRecord>,
}

impl TopList {
    fn new(limit: usize) -> Self {
        TopList {
            limit,
            items: Vec::new(),
        }
    }

    fn score(rating: Option<u8>, time: Option<u64>) -> (u8, u64) {
        (rating.unwrap_or(0), time.unwrap_or(0))
    }

    /// Whether a favorite with this score could enter the list (saves building a record).
    fn wants(&self, rating: Option<u8>, time: Option<u64>) -> bool {
        self.limit > 0
            && (self.items.len() < self.limit * 2
                || self
                    .items
                    .iter()
                    .any(|r| Self::score(r.rating, r.created_ms) < Self::score(rating, time)))
    }

    fn push(&mut self, record: ImageRecord) {
        self.items.push(record);
        if self.items.len() > self.limit * 2 {
            self.sort_and_cut();
        }
    }

    fn sort_and_cut(&mut self) {
        self.items.sort_by(|a, b| {
            Self::score(b.rating, b.created_ms).cmp(&Self::score(a.rating, a.created_ms))
        });
        self.items.truncate(self.limit);
    }

    /// Takes in another thread's list.
    fn absorb(&mut self, other: TopList) {
        for record in other.items {
            self.push(record);
        }
    }

    fn finish(mut self) -> Vec<ImageRecord> {
        self.sort_and_cut();
        self.items
    }
}
