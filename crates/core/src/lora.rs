//! Which LoRAs a generation uses: A1111's `<lora:name:weight>` tags in the prompt
//! (`<lora:name:unet_weight:te_weight>`), and the `loras` list of a job spec (what
//! `--lora name:weight` fills), merged into one list.

use crate::params::ValidationError;
use serde::{Deserialize, Serialize};

/// The largest strength accepted: far beyond any useful one, but it catches typos (80 for 0.8).
pub const MAX_WEIGHT: f64 = 10.0;

/// One LoRA by name (a file in `models/loras/`, the `.safetensors` ending optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraRef {
    pub name: String,
    /// Strength on the UNet (and on the text encoders unless `te_weight` is given).
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub te_weight: Option<f64>,
}

fn one() -> f64 {
    1.0
}

impl LoraRef {
    /// The strength on the text encoders.
    pub fn text_weight(&self) -> f64 {
        self.te_weight.unwrap_or(self.weight)
    }

    /// Parses `name`, `name:weight` or `name:unet_weight:te_weight` (as in `--lora` and
    /// inside a `<lora:…>` tag). `field` names where it came from in errors.
    pub fn parse(text: &str, field: &'static str) -> Result<LoraRef, ValidationError> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or("").trim().to_string();
        if name.is_empty() {
            return Err(ValidationError::new(
                field,
                text,
                "expected name[:weight[:te_weight]]",
            ));
        }
        let weight = |part: Option<&str>| -> Result<Option<f64>, ValidationError> {
            part.map(|p| {
                p.trim().parse::<f64>().map_err(|_| {
                    ValidationError::new(field, text, format!("weight {p:?} is not a number"))
                })
            })
            .transpose()
        };
        let unet = weight(parts.next())?.unwrap_or(1.0);
        let te_weight = weight(parts.next())?;
        if parts.next().is_some() {
            return Err(ValidationError::new(
                field,
                text,
                "expected name[:weight[:te_weight]]",
            ));
        }
        let lora = LoraRef {
            name,
            weight: unet,
            te_weight,
        };
        lora.validate(field)?;
        Ok(lora)
    }

    fn validate(&self, field: &'static str) -> Result<(), ValidationError> {
        for w in [self.weight, self.text_weight()] {
            if !w.is_finite() || w.abs() > MAX_WEIGHT {
                return Err(ValidationError::new(
                    field,
                    format!("{}:{w}", self.name),
                    format!("expected a weight between -{MAX_WEIGHT} and {MAX_WEIGHT}"),
                ));
            }
        }
        if self.name.contains(['/', '\\']) || self.name.contains("..") || self.name.is_empty() {
            return Err(ValidationError::new(
                field,
                &self.name,
                "expected a file name in models/loras/",
            ));
        }
        Ok(())
    }
}

/// The prompt without its `<lora:…>` tags (what the text encoder sees), and the tags.
pub fn split_prompt(prompt: &str) -> Result<(String, Vec<LoraRef>), ValidationError> {
    let mut text = String::with_capacity(prompt.len());
    let mut loras = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("<lora:") {
        text.push_str(&rest[..start]);
        let tag = &rest[start..];
        let end = tag
            .find('>')
            .ok_or_else(|| ValidationError::new("prompt", tag, "a <lora:…> tag must end with >"))?;
        loras.push(LoraRef::parse(&tag["<lora:".len()..end], "prompt")?);
        rest = &tag[end + 1..];
    }
    text.push_str(rest);
    Ok((text, loras))
}

/// The prompt's tags, then the spec's list: every LoRA of a generation, each once.
pub fn requested(prompt: &str, listed: &[LoraRef]) -> Result<Vec<LoraRef>, ValidationError> {
    let (_, mut loras) = split_prompt(prompt)?;
    for lora in listed {
        lora.validate("loras")?;
        loras.push(lora.clone());
    }
    for (i, lora) in loras.iter().enumerate() {
        if loras[..i].iter().any(|other| other.name == lora.name) {
            return Err(ValidationError::new(
                "loras",
                &lora.name,
                "each LoRA may be used once (in the prompt or in the list)",
            ));
        }
    }
    Ok(loras)
}

/// The LoRA set of a generation as one analytics group: the names of the prompt's tags and
/// of `listed`, sorted and joined with `+` (`detail+ink`); `None` without LoRAs. Lenient:
/// a malformed tag adds nothing (an old image must still count).
pub fn group_key<'a>(prompt: &str, listed: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut names: Vec<String> = listed.into_iter().map(str::to_string).collect();
    if prompt.contains("<lora:") {
        if let Ok((_, tags)) = split_prompt(prompt) {
            names.extend(tags.into_iter().map(|t| t.name));
        }
    }
    names.sort();
    names.dedup();
    (!names.is_empty()).then(|| names.join("+"))
}

/// The family a LoRA file was made for, from its tensor names and shapes (never its file
/// name): the cross-attention key projection's input width (768 SD 1.x, 1024 SD 2.x, 2048
/// SDXL), else the text encoders it patches. `None` when nothing tells.
pub fn family_of(shapes: &std::collections::BTreeMap<String, Vec<i64>>) -> Option<&'static str> {
    let down = |name: &str| {
        name.ends_with("lora_down.weight")
            || name.ends_with("lora_A.weight")
            || name.ends_with("lora.down.weight")
    };
    let by_context = shapes.iter().find_map(|(name, shape)| {
        let cross_key = name.contains("attn2") && (name.contains("to_k") || name.contains("to.k"));
        (cross_key && down(name))
            .then(|| shape.get(1).copied())
            .flatten()
    });
    match by_context {
        Some(768) => return Some("sd1"),
        Some(1024) => return Some("sd2"),
        Some(2048) => return Some("sdxl"),
        _ => {}
    }
    if shapes
        .keys()
        .any(|k| k.starts_with("lora_te2_") || k.starts_with("text_encoder_2."))
    {
        return Some("sdxl");
    }
    let text_width = shapes.iter().find_map(|(name, shape)| {
        let text = name.starts_with("lora_te") || name.starts_with("text_encoder.");
        (text && name.contains("q_proj") && down(name))
            .then(|| shape.get(1).copied())
            .flatten()
    });
    match text_width {
        Some(768) => Some("sd1"),
        Some(1024) => Some("sd2"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loras_family_comes_from_its_shapes() {
        let shapes = |entries: &[(&str, &[i64])]| {
            entries
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_vec()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let sdxl = shapes(&[(
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight",
            &[32, 2048],
        )]);
        assert_eq!(family_of(&sdxl), Some("sdxl"));
        let sd1 = shapes(&[(
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight",
            &[8, 768],
        )]);
        assert_eq!(family_of(&sd1), Some("sd1"));
        let te_only = shapes(&[(
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
            &[4, 1024],
        )]);
        assert_eq!(family_of(&te_only), Some("sd2"));
        let te2 = shapes(&[(
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
            &[4, 1280],
        )]);
        assert_eq!(family_of(&te2), Some("sdxl"));
        assert_eq!(family_of(&shapes(&[("x", &[1])])), None);
    }

    #[test]
    fn tags_leave_the_prompt_and_keep_their_weights() {
        let (text, loras) =
            split_prompt("a castle <lora:detail:0.8>, night <lora:ink:0.5:0.25><lora:x>").unwrap();
        assert_eq!(text, "a castle , night ");
        assert_eq!(loras.len(), 3);
        assert_eq!((loras[0].weight, loras[0].text_weight()), (0.8, 0.8));
        assert_eq!((loras[1].weight, loras[1].text_weight()), (0.5, 0.25));
        assert_eq!((loras[2].name.as_str(), loras[2].weight), ("x", 1.0));
    }

    #[test]
    fn bad_tags_and_entries_name_the_problem() {
        let err = split_prompt("a <lora:detail:abc> cat").unwrap_err();
        assert_eq!(err.field, "prompt");
        assert!(err.expected.contains("\"abc\""), "{err:?}");
        assert!(split_prompt("a <lora:detail:0.5").is_err());
        assert!(split_prompt("<lora::0.5>").is_err());
        assert!(split_prompt("<lora:../../etc/passwd:1>").is_err());
        assert!(LoraRef::parse("x:80", "lora").is_err());
        assert!(LoraRef::parse("x:1:2:3", "lora").is_err());
        let twice = requested("<lora:a:1>", &[LoraRef::parse("a:0.5", "lora").unwrap()]);
        assert_eq!(twice.unwrap_err().field, "loras");
    }

    #[test]
    fn a_lora_set_is_one_group_whatever_its_order() {
        assert_eq!(
            group_key("x <lora:ink:1> <lora:detail:0.5>", []),
            Some("detail+ink".into())
        );
        assert_eq!(
            group_key("x <lora:ink:1>", ["detail", "ink"]),
            Some("detail+ink".into())
        );
        assert_eq!(group_key("x <lora:ink:bad>", []), None);
        assert_eq!(group_key("plain", []), None);
    }

    #[test]
    fn the_list_follows_the_tags() {
        let listed = [LoraRef::parse("b:0.3", "lora").unwrap()];
        let all = requested("x <lora:a:0.7>", &listed).unwrap();
        let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
