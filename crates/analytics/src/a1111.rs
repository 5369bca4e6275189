//! Parsing A1111 / Forge `parameters` text: the prompt (possibly several lines), an
//! optional `Negative prompt:` section (possibly several lines), and a last line of
//! `Key: value` pairs whose values are JSON-quoted when they contain `,` `:` or newlines.

use crate::record::{normalize_sampler, normalize_scheduler, ImageRecord, SourceTool};

/// The parts of a `parameters` text. `fields` keeps every pair in order, including keys we
/// do not interpret (hires fix, ADetailer, LoRA hashes…).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct A1111Parameters {
    pub prompt: String,
    pub negative: String,
    pub fields: Vec<(String, String)>,
}

impl A1111Parameters {
    /// The value of the first field called `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `text` into prompt, negative prompt and settings. The settings line is the last
/// line that parses as at least two `Key: value` pairs with a `Steps` key; a text without
/// one is all prompt (some tools write only the prompt).
pub fn parse_parameters(text: &str) -> A1111Parameters {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let mut body_end = lines.len();
    let mut fields = Vec::new();
    if let Some(last) = lines.iter().rposition(|l| !l.trim().is_empty()) {
        let parsed = parse_fields(lines[last]);
        if parsed.len() >= 2 && parsed.iter().any(|(k, _)| k == "Steps") {
            fields = parsed;
            body_end = last;
        }
    }
    let body = &lines[..body_end];
    let negative_at = body
        .iter()
        .position(|l| l.trim_start().starts_with("Negative prompt:"));
    let (prompt_lines, negative) = match negative_at {
        Some(i) => {
            let first = body[i]
                .trim_start()
                .trim_start_matches("Negative prompt:")
                .trim_start();
            let mut negative = vec![first];
            negative.extend_from_slice(&body[i + 1..]);
            (&body[..i], negative.join("\n"))
        }
        None => (body, String::new()),
    };
    A1111Parameters {
        prompt: prompt_lines.join("\n").trim().to_string(),
        negative: negative.trim().to_string(),
        fields,
    }
}

/// Parses `Key: value, Key: "quoted, value", …`. A pair that does not parse ends the
/// scan; the pairs read so far are kept.
pub fn parse_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let Some(colon) = rest.find(':') else { break };
        let key = rest[..colon].trim();
        if key.is_empty() || key.contains(',') {
            break;
        }
        let after = rest[colon + 1..].trim_start();
        let (value, remaining) = if after.starts_with('"') {
            match quoted_end(after) {
                Some(end) => {
                    let raw = &after[..=end];
                    let value = serde_json::from_str::<String>(raw)
                        .unwrap_or_else(|_| raw.trim_matches('"').to_string());
                    (value, &after[end + 1..])
                }
                None => (after.trim_matches('"').to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(comma) => (after[..comma].trim().to_string(), &after[comma..]),
                None => (after.trim().to_string(), ""),
            }
        };
        fields.push((key.to_string(), value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    fields
}

/// The byte index of the quote closing the JSON string that starts `s`.
fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// The normalized record of an A1111 `parameters` text.
pub fn record_from_parameters(path: &str, text: &str) -> ImageRecord {
    let p = parse_parameters(text);
    let mut record = ImageRecord {
        path: path.to_string(),
        source: SourceTool::A1111,
        ..ImageRecord::default()
    };
    if let Some(label) = p.get("Sampler") {
        let (sampler, scheduler) = normalize_sampler(label);
        record.sampler = Some(sampler);
        record.scheduler = scheduler;
    }
    if let Some(label) = p.get("Schedule type") {
        record.scheduler = Some(normalize_scheduler(label));
    }
    record.steps = p.get("Steps").and_then(|v| v.trim().parse().ok());
    record.cfg = p.get("CFG scale").and_then(|v| v.trim().parse().ok());
    record.seed = p.get("Seed").and_then(|v| v.trim().parse().ok());
    if let Some((w, h)) = p.get("Size").and_then(|v| v.trim().split_once('x')) {
        record.width = w.trim().parse().ok();
        record.height = h.trim().parse().ok();
    }
    record.model = p.get("Model").map(str::to_string);
    record.model_hash = p.get("Model hash").map(str::to_string);
    // Our own extension of the format; other tools never write it.
    record.profile = p.get("Style").map(str::to_string);
    record.lora = imagelab_core::lora::group_key(&record.prompt, []);
    record.prompt = p.prompt;
    record.negative = p.negative;
    record
}
