//! What a run draws from, loaded and checked before the run starts (and again when it
//! resumes): its themes with their weights, the style profiles and content mode, the
//! checkpoints each theme rotates through, and the generation defaults. Every problem is
//! a [`NightError::Invalid`] naming the request field and the file at fault.

use super::plan::weighted_cycle;
use super::{NightError, NightOptions};
use imagelab_core::night::NightRequest;
use imagelab_core::paths::resolve_model_file;
use imagelab_core::{Folders, GenerationParams};
use imagelab_prompts::{ContentMode, ProfileLibrary, Theme, Weighted, Wildcards};
use std::path::Path;

/// Most turns one theme may take per round (`name:N`).
pub const MAX_THEME_WEIGHT: u32 = 100;

/// One theme of a run.
#[derive(Debug, Clone)]
pub struct ThemeSlot {
    pub theme: Theme,
    /// The style profile's id, recorded in each job's `style`.
    pub profile: Option<String>,
    /// The checkpoints (file names in `models/checkpoints/`) in rotation order, a name
    /// repeated by its weight.
    pub models: Vec<String>,
    /// Whether `models` is the theme's own list (it then advances per visit of the theme)
    /// rather than the run's list (which advances once per round of all themes).
    pub own_models: bool,
}

/// Everything a run draws from.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub themes: Vec<ThemeSlot>,
    /// Theme indices in the order they take turns, each repeated by its weight.
    pub theme_cycle: Vec<usize>,
    pub profiles: ProfileLibrary,
    pub mode: ContentMode,
    pub base: GenerationParams,
    /// For models whose family has recommended settings (PixArt-Σ: 20 steps, CFG 4.5), the
    /// base with them in, where the settings file's defaults left steps and CFG as shipped;
    /// a theme's own settings still win over both.
    pub family_bases: std::collections::HashMap<String, GenerationParams>,
}

/// The run's content mode: the settings file's, narrowed by the request. A request may
/// ask for safe mode, or for mature mode where the settings allow it, never both.
fn content_mode(
    request: &NightRequest,
    settings: &imagelab_core::config::NightDefaults,
) -> Result<ContentMode, NightError> {
    let asked_mature = request.mature == Some(true);
    if request.safe && asked_mature {
        return Err(NightError::invalid(
            "mature",
            "safe and mature are exclusive: ask for one of them",
        ));
    }
    if asked_mature && !settings.mature {
        return Err(NightError::invalid(
            "mature",
            "mature mode for overnight runs is turned on in the settings file \
             (`night: {mature: true}`), not by a request",
        ));
    }
    let safe = settings.safe || request.safe;
    let mature = settings.mature && !request.safe && request.mature != Some(false);
    ContentMode::from_flags(safe, mature).map_err(|e| {
        NightError::invalid(
            "night.mature",
            format!("settings file night section: {e} (night.safe and night.mature)"),
        )
    })
}

impl Catalog {
    /// Loads and checks what `request` names from `folders`.
    pub fn load(
        request: &NightRequest,
        options: &NightOptions,
        folders: &Folders,
    ) -> Result<Catalog, NightError> {
        if request.themes.is_empty() {
            return Err(NightError::invalid(
                "themes",
                "no themes given: name at least one theme from the themes folder",
            ));
        }
        let settings = &options.settings;
        let mode = content_mode(request, settings)?;
        let setup = |e: &dyn std::fmt::Display| NightError::invalid("themes", e.to_string());
        let profiles = ProfileLibrary::load_dir(&folders.profiles()).map_err(|e| setup(&e))?;
        let wildcards = Wildcards::load_dir(&folders.wildcards()).map_err(|e| setup(&e))?;
        let checkpoints = folders.checkpoints();
        let run_models = resolve_models(
            &checkpoints,
            request.models.iter().map(|m| (m.as_str(), 1)),
            |i| format!("models[{i}]"),
        )?;
        let fallback = resolve_models(
            &checkpoints,
            settings.models.iter().map(|m| (m.as_str(), 1)),
            |i| format!("night.models[{i}]"),
        )?;
        let mut themes = Vec::new();
        let mut weights = Vec::new();
        for (index, entry) in request.themes.iter().enumerate() {
            let field = format!("themes[{index}]");
            let (name, weight) = split_weight(entry).map_err(|m| NightError::invalid(&field, m))?;
            let path = imagelab_prompts::find_theme(&folders.themes, name)
                .map_err(|m| NightError::invalid(&field, m))?;
            let theme = Theme::load(&path, &wildcards)
                .map_err(|e| NightError::invalid(&field, e.to_string()))?;
            let profile = match request.profile.as_deref().or(theme.spec.profile.as_deref()) {
                None => None,
                Some(p) => Some(
                    profiles
                        .get(p, mode)
                        .map_err(|e| {
                            NightError::invalid(
                                &field,
                                match &request.profile {
                                    Some(_) => format!(
                                        "profile: {e} (for overnight runs mature mode is \
                                         `night: {{mature: true}}` in the settings file)"
                                    ),
                                    None => format!(
                                        "theme file {}: {e} (for overnight runs mature mode is \
                                         `night: {{mature: true}}` in the settings file)",
                                        path.display()
                                    ),
                                },
                            )
                        })?
                        .id
                        .clone(),
                ),
            };
            let own = theme_models(&theme, &checkpoints, &field)?;
            let (models, own_models) = if !run_models.is_empty() {
                (run_models.clone(), false)
            } else if !own.is_empty() {
                (own, true)
            } else if !fallback.is_empty() {
                (fallback.clone(), false)
            } else {
                return Err(NightError::invalid(
                    "models",
                    format!(
                        "no model for theme {name:?}: give models (--models), add `models:` to \
                         {}, or set night.models in the settings file",
                        path.display()
                    ),
                ));
            };
            themes.push(ThemeSlot {
                theme,
                profile,
                models,
                own_models,
            });
            weights.push(weight);
        }
        let mut catalog = Catalog {
            themes,
            theme_cycle: weighted_cycle(&weights),
            profiles,
            mode,
            base: options.base.clone(),
            family_bases: Default::default(),
        };
        catalog.family_bases = family_bases(&catalog, &checkpoints);
        Ok(catalog)
    }

    /// The parameters a job on `model` starts from, before its theme's settings.
    pub fn base_for(&self, model: &str) -> &GenerationParams {
        self.family_bases.get(model).unwrap_or(&self.base)
    }

    /// Every checkpoint the run may use, each once, in first-use order.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for slot in &self.themes {
            for model in &slot.models {
                if !names.contains(model) {
                    names.push(model.clone());
                }
            }
        }
        names
    }
}

/// The bases of the run's models whose family recommends other steps or CFG (told from
/// each file's tensors; a file that cannot be read keeps the plain base, and fails when
/// its job runs, as before).
fn family_bases(
    catalog: &Catalog,
    checkpoints: &Path,
) -> std::collections::HashMap<String, GenerationParams> {
    let stock = imagelab_core::config::GenerationDefaults::default();
    let mut bases = std::collections::HashMap::new();
    for model in catalog.model_names() {
        let family = resolve_model_file(checkpoints, &model, "model", false)
            .ok()
            .and_then(|path| imagelab_core::family::inspect(&path).ok())
            .map(|detected| detected.family);
        let Some(recommended) = family.and_then(|f| f.recommended()) else {
            continue;
        };
        let mut base = catalog.base.clone();
        if base.steps == stock.steps {
            base.steps = recommended.steps;
        }
        if base.cfg == stock.cfg {
            base.cfg = recommended.cfg;
        }
        bases.insert(model, base);
    }
    bases
}

/// `name` or `name:N` → (name, N).
fn split_weight(entry: &str) -> Result<(&str, u32), String> {
    let entry = entry.trim();
    let Some((name, weight)) = entry.rsplit_once(':') else {
        return Ok((entry, 1));
    };
    match weight.trim().parse::<u32>() {
        Ok(w) if (1..=MAX_THEME_WEIGHT).contains(&w) => Ok((name.trim(), w)),
        _ => Err(format!(
            "theme {entry:?}: weight {weight:?} after ':' is not a whole number from 1 to \
             {MAX_THEME_WEIGHT}"
        )),
    }
}

/// Checks model names (with weights) inside `models/checkpoints/` and returns the file
/// names in rotation order, each repeated by its weight.
fn resolve_models<'a>(
    checkpoints: &Path,
    models: impl Iterator<Item = (&'a str, u32)>,
    field: impl Fn(usize) -> String,
) -> Result<Vec<String>, NightError> {
    let mut names = Vec::new();
    let mut weights = Vec::new();
    for (i, (name, weight)) in models.enumerate() {
        // The same spelling the dispatcher's model affinity compares: the file name.
        let path = resolve_model_file(checkpoints, name, "model", false)
            .map_err(|e| NightError::invalid(field(i), e.to_string()))?;
        let file = path
            .strip_prefix(checkpoints)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| name.to_string());
        names.push(file);
        weights.push(weight);
    }
    Ok(weighted_cycle(&weights)
        .into_iter()
        .map(|i| names[i].clone())
        .collect())
}

/// A theme's own `models:` list, weights turned into whole turns (the lightest model one
/// turn, the others in proportion, at most 16).
fn theme_models(theme: &Theme, checkpoints: &Path, field: &str) -> Result<Vec<String>, NightError> {
    let entries: Vec<(&str, f64)> = theme
        .spec
        .models
        .iter()
        .map(|w| match w {
            Weighted::Plain(v) => (v.as_str(), 1.0),
            Weighted::Weighted { value, weight } => (value.as_str(), *weight),
        })
        .filter(|(_, w)| *w > 0.0)
        .collect();
    let lightest = entries
        .iter()
        .map(|(_, w)| *w)
        .fold(f64::INFINITY, f64::min);
    let turns = entries
        .iter()
        .map(|(name, w)| (*name, ((w / lightest).round() as u32).clamp(1, 16)));
    resolve_models(checkpoints, turns, |_| field.to_string()).map_err(|e| match e {
        NightError::Invalid { field, message } => NightError::invalid(
            field,
            format!("theme file {}: models: {message}", theme.path.display()),
        ),
        other => other,
    })
}
