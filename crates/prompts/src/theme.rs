//! Themes: `themes/*.yaml` (JSON accepted) that generate prompts. A theme holds weighted
//! templates, its own word lists (usable as `__name__`), the wildcard files it expects, a
//! negative prompt, a style profile, models and settings. [`Theme::generate`] turns a run
//! seed and an index into a [`GeneratedPrompt`] that records everything needed to make the
//! same prompt again.

use crate::content::ContentMode;
use crate::error::TemplateError;
use crate::profiles::{ProfileError, ProfileLibrary};
use crate::rng::{derive_seed, PromptRng};
use crate::settings::{ParamOverrides, SettingsSpec, Weighted};
use crate::template::{expand_all, expand_random, Template};
use crate::wildcards::Wildcards;
use imagelab_core::GenerationParams;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A theme file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThemeSpec {
    /// Shown name; defaults to the file name without extension.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// One or more templates: `"text"` or `{ value: "text", weight: 2 }`.
    pub templates: Vec<Weighted<String>>,
    /// The theme's own word lists, usable as `__name__`; they hide a wildcard file of the
    /// same name.
    #[serde(default)]
    pub words: BTreeMap<String, Vec<String>>,
    /// Wildcard files (in `themes/wildcards/`) the theme uses; checked at load.
    #[serde(default)]
    pub wildcards: Vec<String>,
    #[serde(default)]
    pub negative: String,
    /// A style profile id or name.
    #[serde(default)]
    pub profile: Option<String>,
    /// Checkpoint names to rotate through (weighted like templates).
    #[serde(default)]
    pub models: Vec<Weighted<String>>,
    #[serde(default)]
    pub settings: SettingsSpec,
    /// LoRAs for every prompt: `[detail, {name: ink, weight: {min: 0.4, max: 0.9}, chance: 0.5}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<crate::theme_loras::ThemeLora>,
}

/// A theme problem; messages name the file and, where known, the line and column.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("cannot read theme file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("theme file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("theme file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// One prompt a theme made, with what a job must record to make it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedPrompt {
    pub prompt: String,
    pub negative: String,
    /// Settings the theme drew (model, sampler, steps, …); unset ones are left to the
    /// profile's recommendations and then the defaults.
    pub params: ParamOverrides,
    /// The template the prompt came from, as written.
    pub template: String,
    pub theme: String,
    /// The first 12 hex digits of the theme file's sha256: which version made the prompt.
    pub theme_hash: String,
    /// Regenerates this prompt with [`Theme::generate_from_prompt_seed`].
    pub prompt_seed: u64,
    /// The style profile the theme asks for (applied by the caller, which knows the mode).
    pub profile: Option<String>,
}

impl GeneratedPrompt {
    /// The full generation settings for this prompt: `base` (the saved defaults), then the
    /// style profile's recommendations, then what the theme drew; the prompt and negative
    /// styled by the profile (`profile` overrides the theme's own) and finished by `mode`
    /// (safe mode adds the safety negative; a mature profile is refused outside mature mode).
    pub fn resolve(
        &self,
        base: &GenerationParams,
        profiles: &ProfileLibrary,
        mode: ContentMode,
        profile: Option<&str>,
    ) -> Result<GenerationParams, ProfileError> {
        let mut params = base.clone();
        let (prompt, negative) = match profile.or(self.profile.as_deref()) {
            Some(name) => {
                let style = profiles.get(name, mode)?;
                style.settings.fill(&mut params);
                mode.apply(style, &self.prompt, &self.negative)?
            }
            None => (self.prompt.clone(), mode.finish_negative(&self.negative)),
        };
        self.params.fill(&mut params);
        params.prompt = prompt;
        params.negative = negative;
        Ok(params)
    }
}

/// A loaded, checked theme.
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub path: PathBuf,
    pub spec: ThemeSpec,
    pub hash: String,
    templates: Vec<(Template, f64)>,
    wildcards: Wildcards,
}

impl Theme {
    /// Reads and checks a theme file against the shared wildcard lists.
    pub fn load(path: &Path, shared: &Wildcards) -> Result<Theme, ThemeError> {
        let bytes = std::fs::read(path).map_err(|source| ThemeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Theme::from_text(path, &stem, &text, shared)
    }

    /// Parses theme text; `path` is only for messages and the default name comes from `stem`.
    pub fn from_text(
        path: &Path,
        stem: &str,
        text: &str,
        shared: &Wildcards,
    ) -> Result<Theme, ThemeError> {
        let invalid = |message: String| ThemeError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        // YAML is a superset of JSON, so one parser reads both; its messages carry line and column.
        let spec: ThemeSpec = serde_yaml::from_str(text).map_err(|e| ThemeError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if spec.templates.is_empty() {
            return Err(invalid(
                "`templates` is empty; give at least one".to_string(),
            ));
        }
        spec.settings.validate().map_err(invalid)?;
        crate::theme_loras::validate(&spec.loras).map_err(invalid)?;
        let source = path.display().to_string();
        let mut wildcards = shared.clone();
        for (name, entries) in &spec.words {
            let at = format!("{source} words.{name}");
            wildcards.add_entries(name, &at, entries)?;
        }
        for name in &spec.wildcards {
            if wildcards.get(name.trim_matches('_')).is_none() {
                return Err(invalid(format!(
                    "wildcard {name:?} listed under `wildcards` has no file themes/wildcards/{name}.txt"
                )));
            }
        }
        let file_text = text;
        let mut templates = Vec::new();
        for (index, entry) in spec.templates.iter().enumerate() {
            let (text, weight) = match entry {
                Weighted::Plain(t) => (t, 1.0),
                Weighted::Weighted { value, weight } => (value, *weight),
            };
            let line = line_of(text_source(text), file_text);
            let label = format!("{source} templates[{index}]");
            let template = Template::parse(text, &label, line.unwrap_or(1))?;
            wildcards.check(&template)?;
            templates.push((template, weight.max(0.0)));
        }
        if templates.iter().all(|(_, w)| *w <= 0.0) {
            return Err(invalid("every template has weight 0".to_string()));
        }
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(Theme {
            name: spec.name.clone().unwrap_or_else(|| stem.to_string()),
            path: path.to_path_buf(),
            hash: hash[..12].to_string(),
            spec,
            templates,
            wildcards,
        })
    }

    /// The wildcard lists this theme sees (shared ones plus its own words).
    pub fn wildcards(&self) -> &Wildcards {
        &self.wildcards
    }

    /// Prompt number `index` of a run started with `run_seed`.
    pub fn generate(&self, run_seed: u64, index: u64) -> Result<GeneratedPrompt, ThemeError> {
        self.generate_from_prompt_seed(derive_seed(run_seed, index))
    }

    /// The prompt a recorded prompt seed stands for. Draw order (fixed): template, then its
    /// expansion, then model, then settings, then LoRAs.
    pub fn generate_from_prompt_seed(
        &self,
        prompt_seed: u64,
    ) -> Result<GeneratedPrompt, ThemeError> {
        let mut rng = PromptRng::new(prompt_seed);
        let weights: Vec<f64> = self.templates.iter().map(|(_, w)| *w).collect();
        let index = rng.weighted(&weights).unwrap_or(0);
        let template = &self.templates[index].0;
        let prompt = expand_random(template, &self.wildcards, &mut rng)?;
        let model = if self.spec.models.is_empty() {
            None
        } else {
            let weights: Vec<f64> = self.spec.models.iter().map(weight_of).collect();
            rng.weighted(&weights)
                .map(|i| value_of(&self.spec.models[i]).clone())
        };
        let mut params =
            self.spec
                .settings
                .draw(&mut rng)
                .map_err(|message| ThemeError::Invalid {
                    path: self.path.clone(),
                    message,
                })?;
        params.model = model;
        // Drawn last: a theme without LoRAs draws exactly what it drew before they existed.
        params.settings.loras = crate::theme_loras::draw(&self.spec.loras, &mut rng);
        Ok(GeneratedPrompt {
            prompt,
            negative: self.spec.negative.trim().to_string(),
            params,
            template: template.text.clone(),
            theme: self.name.clone(),
            theme_hash: self.hash.clone(),
            prompt_seed,
            profile: self.spec.profile.clone(),
        })
    }

    /// Every prompt each template can make, template by template, up to `cap` in all.
    pub fn enumerate(&self, cap: usize) -> Result<Vec<String>, ThemeError> {
        let mut out = Vec::new();
        for (template, _) in &self.templates {
            if out.len() >= cap {
                break;
            }
            out.extend(expand_all(template, &self.wildcards, cap - out.len())?);
        }
        Ok(out)
    }
}

fn weight_of<T>(w: &Weighted<T>) -> f64 {
    match w {
        Weighted::Plain(_) => 1.0,
        Weighted::Weighted { weight, .. } => *weight,
    }
}

fn value_of<T>(w: &Weighted<T>) -> &T {
    match w {
        Weighted::Plain(v) | Weighted::Weighted { value: v, .. } => v,
    }
}

/// The first line of a template, used to find where it is written in the file.
fn text_source(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// The 1-based line of the file holding `needle`, so template errors point into the file.
fn line_of(needle: &str, file_text: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    file_text
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
}

/// Names of the themes in `dir` (`*.yaml`, `*.yml`, `*.json` directly inside), sorted.
pub fn list_themes(dir: &Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        })
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// A theme name (with or without `.yaml` / `.yml` / `.json`) → its file, only ever inside
/// `dir`; otherwise a message naming the theme and the ones there are.
pub fn find_theme(dir: &Path, name: &str) -> Result<std::path::PathBuf, String> {
    let has_ext = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x));
    let candidates: Vec<String> = if has_ext {
        vec![name.to_string()]
    } else {
        ["yaml", "yml", "json"]
            .iter()
            .map(|x| format!("{name}.{x}"))
            .collect()
    };
    for candidate in candidates {
        let path = imagelab_core::resolve_in_folder(dir, &candidate, "theme")
            .map_err(|e| e.to_string())?;
        if path.is_file() {
            return Ok(path);
        }
    }
    let known = list_themes(dir);
    Err(format!(
        "unknown theme {name:?}: no such file in {} (available: {})",
        dir.display(),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}
