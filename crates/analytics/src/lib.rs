//! Favorites and analytics for imagelab: which models, style profiles and settings make the
//! images the user keeps. Reads `jobs/jobs.log` (job lines and favorite event lines) in one
//! streaming pass plus folders of PNGs (ours, A1111/Forge, ComfyUI), aggregates favorite
//! rates with Wilson intervals, and renders JSON, Markdown and self-contained HTML reports.

pub mod a1111;
pub mod aggregate;
pub mod analyze;
pub mod comfy;
pub mod error;
pub mod favorites;
mod intern;
pub mod joblog;
pub mod pngmeta;
pub mod record;
pub mod report;
pub mod tables;
pub mod theme_export;
pub mod wilson;

pub use aggregate::{Aggregator, Analysis, GroupStats};
pub use analyze::Report;
pub use analyze::{analyze, AnalyzeOptions};
pub use error::{AnalyticsError, Result};
pub use favorites::{append_event, fold_favorites, FavoriteEvent, FavoriteSet};
pub use record::{ImageRecord, SourceTool};
pub use report::{render, write_atomic, Format};
pub use theme_export::{export_theme, ExportedTheme};
pub use wilson::{wilson_interval, Interval};
