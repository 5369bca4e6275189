//! `--export-theme`: the winning configurations as a theme file for the prompt generator,
//! closing the loop from "what I liked" to "make more like it". The shape is the prompts
//! crate's theme format (not a dependency; a CLI test loads the export with it): `name`,
//! `templates` (favorite prompts, template syntax escaped), `negative`, `profile`
//! (optional), `models`, and `settings.{sampler,scheduler,cfg,steps,size}` as lists.

use crate::aggregate::{GroupStats, NONE, UNKNOWN};
use crate::analyze::Report;
use crate::error::{AnalyticsError, Result};
use serde::{Deserialize, Serialize};

/// How many ranked configurations feed the settings choices.
const WINNERS: usize = 3;
/// Most prompt templates taken from the top favorites.
const TEMPLATES: usize = 10;

/// A list of values the generator picks from; written as a plain YAML list, which is how
/// the prompts crate's theme files spell a choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Choices<T> {
    pub choices: Vec<T>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ThemeSettings {
    pub sampler: Choices<String>,
    pub scheduler: Choices<String>,
    pub cfg: Choices<f64>,
    pub steps: Choices<u32>,
    /// `WxH`.
    pub size: Choices<String>,
}

/// The exported theme.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedTheme {
    pub name: String,
    pub templates: Vec<String>,
    pub negative: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub models: Vec<String>,
    pub settings: ThemeSettings,
}

/// Builds the theme: settings from the best-ranked configurations (the supported ones;
/// without any, the top favorites' own settings), prompts from the top favorites.
pub fn export_theme(report: &Report, name: &str) -> Result<ExportedTheme> {
    let favorites: Vec<_> = report.top_favorites.iter().map(|f| &f.record).collect();
    if favorites.is_empty() {
        return Err(AnalyticsError::Invalid {
            field: "favorites",
            value: "0".into(),
            expected: "at least one favorite image to build a theme from".into(),
        });
    }
    // Config parts: model, profile, sampler, scheduler, cfg, steps, size.
    let winners: Vec<Vec<&str>> = {
        let ranked: Vec<&GroupStats> = report
            .analysis
            .best_configs
            .groups
            .iter()
            .filter(|g| g.rank.is_some())
            .take(WINNERS)
            .collect();
        ranked
            .iter()
            .map(|g| g.parts.iter().map(String::as_str).collect())
            .collect()
    };
    let mut theme = ExportedTheme {
        name: name.to_string(),
        templates: Vec::new(),
        negative: most_common(favorites.iter().map(|f| f.negative.as_str())),
        profile: None,
        models: Vec::new(),
        settings: ThemeSettings::default(),
    };
    for f in &favorites {
        let prompt = f.prompt.trim();
        if !prompt.is_empty()
            && !theme
                .templates
                .iter()
                .any(|t| *t == escape_template(prompt))
            && theme.templates.len() < TEMPLATES
        {
            theme.templates.push(escape_template(prompt));
        }
    }
    let s = &mut theme.settings;
    if winners.is_empty() {
        for f in &favorites {
            push(&mut theme.models, f.model.clone());
            push(&mut s.sampler.choices, f.sampler.clone());
            push(&mut s.scheduler.choices, f.scheduler.clone());
            push(&mut s.cfg.choices, f.cfg);
            push(&mut s.steps.choices, f.steps);
            push(&mut s.size.choices, f.size());
        }
        theme.profile = favorites.iter().find_map(|f| f.profile.clone());
    } else {
        for w in &winners {
            let part = |i: usize| {
                w.get(i)
                    .copied()
                    .filter(|v| *v != UNKNOWN && *v != NONE && !v.is_empty())
            };
            push(&mut theme.models, part(0).map(str::to_string));
            push(&mut s.sampler.choices, part(2).map(str::to_string));
            push(&mut s.scheduler.choices, part(3).map(str::to_string));
            push(&mut s.cfg.choices, part(4).and_then(|v| v.parse().ok()));
            push(&mut s.steps.choices, part(5).and_then(|v| v.parse().ok()));
            push(&mut s.size.choices, part(6).map(str::to_string));
        }
        theme.profile = winners
            .first()
            .and_then(|w| w.get(1).copied())
            .filter(|p| *p != UNKNOWN && *p != NONE)
            .map(str::to_string);
    }
    Ok(theme)
}

/// The theme as YAML text.
pub fn to_yaml(theme: &ExportedTheme) -> Result<String> {
    serde_yaml::to_string(theme).map_err(|e| AnalyticsError::Format {
        path: "<theme>".into(),
        message: e.to_string(),
    })
}

fn push<T: PartialEq>(list: &mut Vec<T>, value: Option<T>) {
    if let Some(v) = value {
        if !list.contains(&v) {
            list.push(v);
        }
    }
}

fn most_common<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(k, _)| *k == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    // The first of the most frequent (favorites are in rank order).
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    counts
        .into_iter()
        .find(|(_, n)| *n == best)
        .map(|(k, _)| k.to_string())
        .unwrap_or_default()
}

/// A favorite's prompt as a template that expands to exactly itself: the template syntax's
/// special characters (`{ } | $ _`) are backslash-escaped.
pub fn escape_template(prompt: &str) -> String {
    let mut out = String::with_capacity(prompt.len());
    for c in prompt.chars() {
        if matches!(c, '{' | '}' | '|' | '$' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
