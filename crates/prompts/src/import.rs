//! Importing style files from other tools into profile files: A1111's `styles.csv`
//! (`name,prompt,negative_prompt`, `{prompt}` placeholder, CSV quoting) and Fooocus-style
//! JSON (`[{"name", "prompt", "negative_prompt"}]`).

use crate::profiles::{ProfileFile, ProfileGroup, RecommendedSettings, StyleProfile};
use serde::Deserialize;
use std::collections::BTreeSet;

/// A style file that cannot be imported; messages name the source and the line or record.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{source_name}: {message}")]
    Csv {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: not a Fooocus style list ([{{\"name\", \"prompt\", \"negative_prompt\"}}]): {message}")]
    Json {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: no styles found")]
    Empty { source_name: String },
    #[error("cannot write profile file: {0}")]
    Write(String),
}

/// Reads A1111's `styles.csv`. The header names the columns (`name`, `prompt`,
/// `negative_prompt`, any order; extra columns ignored); rows with an empty name are skipped.
pub fn import_a1111_csv(text: &str, source_name: &str) -> Result<Vec<StyleProfile>, ImportError> {
    let csv_err = |message: String| ImportError::Csv {
        source_name: source_name.to_string(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| csv_err(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let name_col =
        column("name").ok_or_else(|| csv_err("the header has no `name` column".to_string()))?;
    let prompt_col = column("prompt");
    let negative_col = column("negative_prompt");
    let mut styles = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            csv_err(format!("line {line}: {e}"))
        })?;
        let field = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or("").to_string();
        let name = field(Some(name_col));
        if name.trim().is_empty() {
            continue;
        }
        styles.push((name, field(prompt_col), field(negative_col)));
    }
    finish(styles, source_name)
}

#[derive(Deserialize)]
struct FooocusStyle {
    name: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
}

/// Reads a Fooocus-style JSON list of styles.
pub fn import_fooocus_json(
    text: &str,
    source_name: &str,
) -> Result<Vec<StyleProfile>, ImportError> {
    let styles: Vec<FooocusStyle> = serde_json::from_str(text).map_err(|e| ImportError::Json {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })?;
    finish(
        styles
            .into_iter()
            .map(|s| (s.name, s.prompt, s.negative_prompt))
            .collect(),
        source_name,
    )
}

fn finish(
    styles: Vec<(String, String, String)>,
    source_name: &str,
) -> Result<Vec<StyleProfile>, ImportError> {
    if styles.is_empty() {
        return Err(ImportError::Empty {
            source_name: source_name.to_string(),
        });
    }
    let mut taken = BTreeSet::new();
    Ok(styles
        .into_iter()
        .map(|(name, prompt, negative)| {
            let id = unique_id(&slug(&name), &mut taken);
            StyleProfile {
                id,
                name: name.trim().to_string(),
                group: ProfileGroup::Custom,
                description: format!("Imported from {source_name}"),
                prompt,
                negative,
                settings: RecommendedSettings::default(),
                mature: false,
            }
        })
        .collect())
}

/// The profiles as a profile file (YAML), ready for `themes/profiles/`.
pub fn profiles_to_yaml(profiles: &[StyleProfile]) -> Result<String, ImportError> {
    let file = ProfileFile {
        profiles: profiles.to_vec(),
    };
    serde_yaml::to_string(&file).map_err(|e| ImportError::Write(e.to_string()))
}

/// A profile id from a display name: lowercase ASCII letters and digits, runs of anything
/// else become one `-` ("Dark Fantasy/Grimdark" → "dark-fantasy-grimdark").
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "style".to_string()
    } else {
        trimmed.to_string()
    }
}

fn unique_id(base: &str, taken: &mut BTreeSet<String>) -> String {
    let mut id = base.to_string();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}
