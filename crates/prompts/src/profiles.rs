//! Style profiles: a look wrapped around the user's prompt (`{prompt}` marks where it goes),
//! a negative prompt, optional recommended settings, and a `mature` flag. Loaded from
//! `themes/profiles/*.yaml` (JSON accepted); the content mode decides which are visible.

use crate::content::ContentMode;
use imagelab_core::{GenerationParams, SamplerName, SchedulerName};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the user's prompt goes in a profile's template.
pub const PROMPT_PLACEHOLDER: &str = "{prompt}";

/// The roadmap's three groups, plus the user's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileGroup {
    Core,
    ArtistGenre,
    Extended,
    Custom,
}

/// Settings a profile suggests; every field optional, names as core spells them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendedSettings {
    #[serde(skip_serializing_if = "Option::is_none", with = "crate::names_serde")]
    pub sampler: Option<SamplerName>,
    #[serde(skip_serializing_if = "Option::is_none", with = "crate::names_serde")]
    pub scheduler: Option<SchedulerName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// LoRAs in `models/loras/` (`[{name: detail, weight: 0.6}]`); added to a job's own,
    /// replacing one of the same name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<imagelab_core::lora::LoraRef>,
}

impl RecommendedSettings {
    pub fn is_empty(&self) -> bool {
        *self == RecommendedSettings::default()
    }

    /// Checks the values as a generation would (sizes multiple of 8, steps in range, …).
    pub fn validate(&self) -> Result<(), imagelab_core::ValidationError> {
        // A stand-in model name: profiles never choose the model, but validation wants one.
        let mut params = GenerationParams {
            model: "any".to_string(),
            ..GenerationParams::default()
        };
        self.fill(&mut params);
        params.validate()
    }

    /// Writes every value that is set into `params`.
    pub fn fill(&self, params: &mut GenerationParams) {
        if let Some(v) = self.sampler {
            params.sampler = v;
        }
        if let Some(v) = self.scheduler {
            params.scheduler = v;
        }
        if let Some(v) = self.steps {
            params.steps = v;
        }
        if let Some(v) = self.cfg {
            params.cfg = v;
        }
        if let Some(v) = self.width {
            params.width = v;
        }
        if let Some(v) = self.height {
            params.height = v;
        }
        for lora in &self.loras {
            params.loras.retain(|l| l.name != lora.name);
            params.loras.push(lora.clone());
        }
    }
}

/// One style profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StyleProfile {
    /// Short stable name: lowercase letters, digits, `-` and `_`.
    pub id: String,
    /// The name shown to people ("35mm Film").
    pub name: String,
    pub group: ProfileGroup,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The prompt template; `{prompt}` is replaced by the user's text. Without it the
    /// user's text comes first and the style is appended (as A1111 does).
    pub prompt: String,
    #[serde(default)]
    pub negative: String,
    #[serde(default, skip_serializing_if = "RecommendedSettings::is_empty")]
    pub settings: RecommendedSettings,
    #[serde(default)]
    pub mature: bool,
}

impl StyleProfile {
    /// The profile's prompt and negative around the user's: the prompt goes into
    /// `{prompt}`, the negatives are joined with ", " (empty parts skipped).
    pub fn apply(&self, prompt: &str, negative: &str) -> (String, String) {
        let styled = if self.prompt.contains(PROMPT_PLACEHOLDER) {
            self.prompt.replace(PROMPT_PLACEHOLDER, prompt)
        } else {
            join_nonempty(&[prompt, &self.prompt])
        };
        // Only an empty user prompt leaves stray commas behind; a real one is kept as typed.
        let styled = if prompt.trim().is_empty() {
            tidy(&styled)
        } else {
            styled
        };
        (styled, merge_terms(&[negative, &self.negative]))
    }

    /// Whether `key` names this profile: its id or its display name, any case.
    pub fn answers_to(&self, key: &str) -> bool {
        let key = key.trim();
        self.id.eq_ignore_ascii_case(key) || self.name.eq_ignore_ascii_case(key)
    }
}

/// Parts joined by ", ", empty ones left out.
pub fn join_nonempty(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parts joined by ", " with repeated comma-separated terms dropped (a theme's negative and
/// its profile's often share "cartoon, watermark"). Commas inside parentheses, as in
/// `(a, b:1.2)`, do not split a term.
pub fn merge_terms(parts: &[&str]) -> String {
    let mut terms: Vec<String> = Vec::new();
    for part in parts {
        for term in split_top_level(part) {
            let term = term.trim();
            if !term.is_empty() && !terms.iter().any(|t| t.eq_ignore_ascii_case(term)) {
                terms.push(term.to_string());
            }
        }
    }
    terms.join(", ")
}

/// Splits at commas outside `(…)` and `[…]`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth <= 0 => {
                pieces.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// Removes the stray ", ," and leading/trailing commas an empty user prompt leaves behind.
fn tidy(text: &str) -> String {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A profile problem; messages name the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}:{line}: profile {id:?}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        id: String,
        message: String,
    },
    #[error("{path}:{line}: profile id {id:?} is already defined in {first}")]
    Duplicate {
        path: PathBuf,
        line: usize,
        id: String,
        first: PathBuf,
    },
    #[error("unknown style profile {name:?}; known: {known}")]
    Unknown { name: String, known: String },
    #[error(
        "style profile {name:?} is a mature profile; turn mature mode on (--mature) to use it"
    )]
    MatureRefused { name: String },
    #[error("safe mode and mature mode cannot both be on; pick one")]
    SafeAndMature,
}

/// The file format: a list of profiles under `profiles:`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub profiles: Vec<StyleProfile>,
}

/// Every loaded profile with the file it came from, in file then written order.
#[derive(Debug, Clone, Default)]
pub struct ProfileLibrary {
    entries: Vec<(StyleProfile, PathBuf)>,
}

impl ProfileLibrary {
    /// Loads every `*.yaml`, `*.yml` and `*.json` in `dir`, sorted by file name. A missing
    /// folder gives an empty library.
    pub fn load_dir(dir: &Path) -> Result<ProfileLibrary, ProfileError> {
        let mut library = ProfileLibrary::default();
        let Ok(read) = std::fs::read_dir(dir) else {
            return Ok(library);
        };
        let mut paths: Vec<PathBuf> = read
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
                path: path.clone(),
                source,
            })?;
            library.add_text(&path, &text)?;
        }
        Ok(library)
    }

    /// Parses and validates one file's text, adding its profiles.
    pub fn add_text(&mut self, path: &Path, text: &str) -> Result<(), ProfileError> {
        // YAML is a superset of JSON, so one parser reads both.
        let file: ProfileFile = serde_yaml::from_str(text).map_err(|e| ProfileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for profile in file.profiles {
            let line = line_of_id(text, &profile.id);
            let invalid = |message: String| ProfileError::Invalid {
                path: path.to_path_buf(),
                line,
                id: profile.id.clone(),
                message,
            };
            validate_profile(&profile).map_err(invalid)?;
            if let Some((_, first)) = self.entries.iter().find(|(p, _)| p.id == profile.id) {
                return Err(ProfileError::Duplicate {
                    path: path.to_path_buf(),
                    line,
                    id: profile.id.clone(),
                    first: first.clone(),
                });
            }
            self.entries.push((profile, path.to_path_buf()));
        }
        Ok(())
    }

    /// Every profile, mature ones included (for counting and tests).
    pub fn all(&self) -> impl Iterator<Item = &StyleProfile> {
        self.entries.iter().map(|(p, _)| p)
    }

    /// The profiles `mode` lets the user see: mature ones only in mature mode.
    /// Sorted by group (core, artist/genre, extended, custom), then in file order.
    pub fn visible(&self, mode: ContentMode) -> Vec<&StyleProfile> {
        let mut list: Vec<&StyleProfile> = self.all().filter(|p| mode.allows(p)).collect();
        list.sort_by_key(|p| p.group);
        list
    }

    /// The file a profile came from.
    pub fn source_of(&self, id: &str) -> Option<&Path> {
        self.entries
            .iter()
            .find(|(p, _)| p.id == id)
            .map(|(_, f)| f.as_path())
    }

    /// Looks a profile up by id or display name; a mature one is refused unless `mode` is
    /// mature, and the unknown-name message lists only what the user may pick.
    pub fn get(&self, name: &str, mode: ContentMode) -> Result<&StyleProfile, ProfileError> {
        match self.all().find(|p| p.answers_to(name)) {
            Some(p) if mode.allows(p) => Ok(p),
            Some(_) => Err(ProfileError::MatureRefused {
                name: name.to_string(),
            }),
            None => Err(ProfileError::Unknown {
                name: name.to_string(),
                known: self
                    .visible(mode)
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

fn validate_profile(profile: &StyleProfile) -> Result<(), String> {
    let id_ok = !profile.id.is_empty()
        && profile
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !id_ok {
        return Err("id must be lowercase letters, digits, '-' or '_'".to_string());
    }
    if profile.name.trim().is_empty() {
        return Err("name is empty".to_string());
    }
    if profile.prompt.matches(PROMPT_PLACEHOLDER).count() > 1 {
        return Err("prompt holds {prompt} more than once".to_string());
    }
    profile
        .settings
        .validate()
        .map_err(|e| format!("settings: {e}"))
}

/// The 1-based line where `id: <id>` is written, or 1 when it cannot be found.
fn line_of_id(text: &str, id: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            (l.starts_with("id:") || l.starts_with("\"id\":")) && l.contains(id)
        })
        .map_or(1, |i| i + 1)
}
