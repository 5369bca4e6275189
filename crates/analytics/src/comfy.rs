//! Reading ComfyUI's `prompt` chunk (the API graph: node id → `{class_type, inputs}`),
//! where an input is either a value or a link `[node_id, output_index]`. We take the first
//! KSampler (or KSamplerAdvanced) by node id and follow its links to the checkpoint loader,
//! the positive and negative text encoders and the empty latent.

use crate::record::{normalize_sampler, ImageRecord, SourceTool};
use serde_json::{Map, Value};

/// How many links we follow before giving up (graphs can, in theory, loop).
const MAX_HOPS: usize = 16;

/// Inputs a value may pass through on its way from a loader to the sampler (LoRA loaders,
/// conditioning combiners, latent upscalers…).
const PASS_THROUGH: &[&str] = &[
    "model",
    "clip",
    "conditioning",
    "conditioning_1",
    "samples",
    "latent_image",
    "text",
    "positive",
    "negative",
];

/// The normalized record of a ComfyUI API graph, or `None` when the text is not a graph
/// with a sampler node.
pub fn record_from_graph(path: &str, text: &str) -> Option<ImageRecord> {
    let graph: Value = serde_json::from_str(text).ok()?;
    let nodes = graph.as_object()?;
    let mut samplers: Vec<(&String, &Map<String, Value>)> = nodes
        .iter()
        .filter(|(_, n)| {
            matches!(
                n.get("class_type").and_then(Value::as_str),
                Some("KSampler" | "KSamplerAdvanced")
            )
        })
        .filter_map(|(id, n)| Some((id, n.get("inputs")?.as_object()?)))
        .collect();
    samplers.sort_by_key(|(id, _)| (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string()));
    let (_, inputs) = samplers.first()?;
    let mut record = ImageRecord {
        path: path.to_string(),
        source: SourceTool::Comfyui,
        ..ImageRecord::default()
    };
    let seed = inputs.get("seed").or_else(|| inputs.get("noise_seed"));
    record.seed = seed
        .and_then(|v| resolve(nodes, v, &["seed", "noise_seed", "value"]))
        .and_then(|v| v.as_i64());
    record.steps = inputs
        .get("steps")
        .and_then(|v| resolve(nodes, v, &["steps", "value"]))
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok());
    record.cfg = inputs
        .get("cfg")
        .and_then(|v| resolve(nodes, v, &["cfg", "value"]))
        .and_then(Value::as_f64);
    if let Some(name) = inputs
        .get("sampler_name")
        .and_then(|v| resolve(nodes, v, &["sampler_name", "value"]))
        .and_then(Value::as_str)
    {
        record.sampler = Some(normalize_sampler(name).0);
    }
    record.scheduler = inputs
        .get("scheduler")
        .and_then(|v| resolve(nodes, v, &["scheduler", "value"]))
        .and_then(Value::as_str)
        .map(str::to_string);
    record.model = inputs
        .get("model")
        .and_then(|v| resolve(nodes, v, &["ckpt_name", "unet_name"]))
        .and_then(Value::as_str)
        .map(model_label);
    let text_keys = ["text", "text_g", "string", "value"];
    record.prompt = inputs
        .get("positive")
        .and_then(|v| resolve(nodes, v, &text_keys))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    record.negative = inputs
        .get("negative")
        .and_then(|v| resolve(nodes, v, &text_keys))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let latent = inputs.get("latent_image");
    record.width = latent
        .and_then(|v| resolve(nodes, v, &["width"]))
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    record.height = latent
        .and_then(|v| resolve(nodes, v, &["height"]))
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    Some(record)
}

/// A checkpoint file name without folder and extension, as our own records name models.
fn model_label(name: &str) -> String {
    let file = crate::record::file_name(name);
    file.strip_suffix(".safetensors")
        .or_else(|| file.strip_suffix(".ckpt"))
        .unwrap_or(file)
        .to_string()
}

/// Follows `value` through links until a node has one of `keys` as a plain (non-link)
/// input, and returns that input. A plain `value` is returned as is.
fn resolve<'a>(
    nodes: &'a Map<String, Value>,
    value: &'a Value,
    keys: &[&str],
) -> Option<&'a Value> {
    let mut current = value;
    for _ in 0..MAX_HOPS {
        let Some(target) = link_target(current) else {
            return Some(current);
        };
        let inputs = nodes.get(target)?.get("inputs")?.as_object()?;
        if let Some(found) = keys.iter().find_map(|k| inputs.get(*k)) {
            if link_target(found).is_none() {
                return Some(found);
            }
            current = found;
            continue;
        }
        current = PASS_THROUGH
            .iter()
            .find_map(|k| inputs.get(*k).filter(|v| link_target(v).is_some()))?;
    }
    None
}

/// The node id a link `["6", 0]` points at.
fn link_target(value: &Value) -> Option<&str> {
    let pair = value.as_array()?;
    if pair.len() != 2 || !pair[1].is_u64() {
        return None;
    }
    match &pair[0] {
        Value::String(id) => Some(id.as_str()),
        _ => None,
    }
}
