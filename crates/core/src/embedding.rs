//! What the daemon and the CLI know about textual-inversion embeddings without libtorch:
//! the family a file's tensor shapes name, and the `embedding:name` words of a prompt
//! (checked at submit so a missing file is a 422, not a failed job).

use std::collections::BTreeMap;

/// The family whose text encoder has this width: 768 CLIP-L (SD 1.x), 1024 OpenCLIP-H
/// (SD 2.x). SDXL embeddings are a `clip_l` / `clip_g` pair, not one width.
pub fn family_of_width(width: i64) -> Option<&'static str> {
    match width {
        768 => Some("sd1"),
        1024 => Some("sd2"),
        _ => None,
    }
}

/// The family an embedding file was made for, from its tensor names and shapes (never its
/// file name); `None` when nothing tells.
pub fn family_of(shapes: &BTreeMap<String, Vec<i64>>) -> Option<&'static str> {
    if shapes.contains_key("clip_l") && shapes.contains_key("clip_g") {
        return Some("sdxl");
    }
    let single = shapes
        .get("emb_params")
        .or_else(|| {
            let mut params = shapes
                .iter()
                .filter(|(k, _)| k.starts_with("string_to_param."));
            match (params.next(), params.next()) {
                (Some((_, shape)), None) => Some(shape),
                _ => None,
            }
        })
        .or_else(|| {
            (shapes.len() == 1)
                .then(|| shapes.values().next())
                .flatten()
        })?;
    family_of_width(*single.last()?)
}

/// The names a prompt asks for with ComfyUI's `embedding:name`. Neither an emphasis weight
/// (`(embedding:name:1.2)`) nor trailing punctuation such as a comma is part of the name;
/// a `.safetensors` ending is dropped.
pub fn explicit_names(prompt: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for word in prompt.split(|c: char| c.is_whitespace() || c == '(' || c == '[') {
        let Some(rest) = word.strip_prefix("embedding:") else {
            continue;
        };
        let name = rest.split(':').next().unwrap_or_default();
        let name = name.trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
        let name = name.strip_suffix(".safetensors").unwrap_or(name);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(entries: &[(&str, &[i64])]) -> BTreeMap<String, Vec<i64>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn families_from_shapes() {
        assert_eq!(
            family_of(&shapes(&[("emb_params", &[4, 768])])),
            Some("sd1")
        );
        assert_eq!(
            family_of(&shapes(&[("string_to_param.*", &[2, 1024])])),
            Some("sd2")
        );
        assert_eq!(
            family_of(&shapes(&[("clip_g", &[8, 1280]), ("clip_l", &[8, 768])])),
            Some("sdxl")
        );
        assert_eq!(family_of(&shapes(&[("anything", &[768])])), Some("sd1"));
        assert_eq!(family_of(&shapes(&[("emb_params", &[4, 64])])), None);
        assert_eq!(
            family_of(&shapes(&[("a", &[1, 768]), ("b", &[1, 768])])),
            None
        );
    }

    #[test]
    fn explicit_names_in_a_prompt() {
        assert_eq!(
            explicit_names("a cat, (embedding:bad_hands-5.safetensors:1.2), embedding:ink, x"),
            vec!["bad_hands-5", "ink"]
        );
        assert_eq!(
            explicit_names("easynegative, embedding:ink embedding:ink"),
            vec!["ink"]
        );
        assert!(explicit_names("an embedding is: nothing").is_empty());
    }
}
