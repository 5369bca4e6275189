//! `imagelab models [--json]`: the daemon's model folders, each checkpoint, LoRA and embedding with
//! the family its tensors name (sd1, sd2, sd2-v, sdxl, …) or why it cannot be read.

use anyhow::Result;
use clap::Args;
use imagelab_core::api::{ModelEntry, ModelList};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ModelsArgs) -> Result<ExitCode> {
    let list = crate::client_cmds::client()?.models()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", table(&list));
    }
    Ok(ExitCode::SUCCESS)
}

/// A folder of add-ons (LoRAs, embeddings), each with the family it was made for.
fn made_for(title: &str, entries: &[ModelEntry]) -> String {
    let mut out = format!("{title}:\n");
    if entries.is_empty() {
        out.push_str("  (none)\n");
    }
    let width = entries
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0);
    for entry in entries {
        let family = match (&entry.family, &entry.error) {
            (Some(family), _) => format!("for {family}"),
            (None, Some(error)) => format!("? ({error})"),
            (None, None) => "family unknown".into(),
        };
        out.push_str(&format!("  {:<width$}  {family}\n", entry.name));
    }
    out
}

/// The human listing: checkpoints with their family, then LoRAs, embeddings, VAEs and
/// text encoders.
fn table(list: &ModelList) -> String {
    let width = list
        .checkpoints
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::from("checkpoints:\n");
    if list.checkpoints.is_empty() {
        out.push_str("  (none)\n");
    }
    for entry in &list.checkpoints {
        let family = match (&entry.family, &entry.error) {
            (Some(family), _) => family.clone(),
            (None, Some(error)) => format!("? ({error})"),
            (None, None) => "?".into(),
        };
        out.push_str(&format!("  {:<width$}  {family}\n", entry.name));
    }
    out.push_str(&made_for("loras", &list.loras));
    out.push_str(&made_for("embeddings", &list.embeddings));
    for (title, names) in [("vae", &list.vae), ("clip", &list.clip)] {
        out.push_str(&format!("{title}:\n"));
        if names.is_empty() {
            out.push_str("  (none)\n");
        }
        for name in names {
            out.push_str(&format!("  {name}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_core::api::ModelEntry;

    #[test]
    fn checkpoints_are_listed_with_their_family_or_the_reason() {
        let list = ModelList {
            checkpoints: vec![
                ModelEntry {
                    name: "base.safetensors".into(),
                    family: Some("sdxl".into()),
                    error: None,
                },
                ModelEntry {
                    name: "x.safetensors".into(),
                    family: None,
                    error: Some("not a checkpoint".into()),
                },
            ],
            vae: vec!["v.safetensors".into()],
            clip: Vec::new(),
            loras: vec![ModelEntry {
                name: "ink.safetensors".into(),
                family: Some("sd1".into()),
                error: None,
            }],
            embeddings: vec![ModelEntry {
                name: "neg.safetensors".into(),
                family: None,
                error: None,
            }],
        };
        assert_eq!(
            table(&list),
            "checkpoints:\n  base.safetensors  sdxl\n  x.safetensors     ? (not a checkpoint)\n\
             loras:\n  ink.safetensors  for sd1\nembeddings:\n  neg.safetensors  family unknown\n\
             vae:\n  v.safetensors\nclip:\n  (none)\n"
        );
    }
}
