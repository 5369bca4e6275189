//! One image as analytics sees it, whichever tool made it: the settings that matter for
//! "what makes the images I keep", normalized to ComfyUI's sampler and scheduler names.

use serde::{Deserialize, Serialize};

/// Which metadata an image's settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceTool {
    /// A line of `jobs.log`.
    #[default]
    JobLog,
    /// Our own `imagelab` JSON chunk.
    Imagelab,
    /// An A1111 / Forge `parameters` chunk.
    A1111,
    /// A ComfyUI `prompt` graph.
    Comfyui,
}

/// The normalized settings of one image. Unknown values stay `None` and are grouped as
/// "unknown" rather than guessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageRecord {
    /// The image file as recorded (an output path from the log, or the scanned file).
    pub path: String,
    pub job: Option<u64>,
    pub prompt: String,
    pub negative: String,
    pub model: Option<String>,
    pub model_hash: Option<String>,
    /// The style profile the prompt was styled with.
    pub profile: Option<String>,
    pub theme: Option<String>,
    /// The LoRA set (`detail+ink`; see `imagelab_core::lora::group_key`).
    pub lora: Option<String>,
    pub sampler: Option<String>,
    pub scheduler: Option<String>,
    pub cfg: Option<f64>,
    pub steps: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub seed: Option<i64>,
    /// Milliseconds since the Unix epoch (the job's finish time, or the file's mtime).
    pub created_ms: Option<u64>,
    pub favorite: bool,
    pub rating: Option<u8>,
    pub source: SourceTool,
}

impl ImageRecord {
    /// `WxH`, or `None` when either side is unknown.
    pub fn size(&self) -> Option<String> {
        Some(format!("{}x{}", self.width?, self.height?))
    }

    /// The file-name part of `path`, the key favorites match on (outputs are recorded
    /// relative to the output folder while users name images by absolute path).
    pub fn file_name(&self) -> &str {
        file_name(&self.path)
    }
}

/// The last path component of `path` (either separator), or `path` itself.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Maps a sampler label as any tool writes it onto ComfyUI's sampler and, for A1111
/// labels such as "DPM++ 2M Karras", the scheduler it implies. Labels we do not know are
/// kept as written (lowercased) so they still form their own group.
pub fn normalize_sampler(label: &str) -> (String, Option<String>) {
    match imagelab_core::parse_sampler_label(label) {
        Ok((sampler, scheduler)) => (
            sampler.as_str().to_string(),
            scheduler.map(|s| s.as_str().to_string()),
        ),
        Err(_) => (label.trim().to_ascii_lowercase(), None),
    }
}

/// [`normalize_sampler`] without allocating for names that are already ComfyUI's (what
/// our own job lines hold), for the streaming loop.
pub fn sampler_name(label: &str) -> std::borrow::Cow<'_, str> {
    match label.parse::<imagelab_core::SamplerName>() {
        Ok(name) => std::borrow::Cow::Borrowed(name.as_str()),
        Err(_) => std::borrow::Cow::Owned(normalize_sampler(label).0),
    }
}

/// Maps an A1111 "Schedule type" label ("Karras", "SGM Uniform") onto ComfyUI's name.
pub fn normalize_scheduler(label: &str) -> String {
    let wanted = label.trim();
    imagelab_core::SchedulerName::ALL
        .iter()
        .find(|s| s.a1111_label().eq_ignore_ascii_case(wanted) || s.as_str() == wanted)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| wanted.to_ascii_lowercase().replace(' ', "_"))
}
