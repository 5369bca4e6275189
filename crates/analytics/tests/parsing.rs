//! Metadata parsing: A1111 `parameters` (quoted values, missing negative, extra fields,
//! multi-line prompts), a ComfyUI API graph, and our own JSON chunk.
#![allow(clippy::unwrap_used)]

use imagelab_analytics::a1111::{parse_fields, parse_parameters, record_from_parameters};
use imagelab_analytics::comfy::record_from_graph;
use imagelab_analytics::pngmeta::{record_from_ours, record_from_texts};
use imagelab_analytics::SourceTool;
use std::collections::BTreeMap;

#[test]
fn a1111_full_text_with_quoted_values_and_extra_fields() {
    let text = "a castle on a hill, (golden hour:1.2)\nmisty valley\nNegative prompt: blurry, lowres\nworst quality\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, Size: 832x1216, Model hash: abcdef1234, Model: \"juggernaut, v9: final\", Lora hashes: \"detail: 0123, style: 4567\", ADetailer model: face_yolov8n.pt, Version: v1.10.1";
    let p = parse_parameters(text);
    assert_eq!(
        p.prompt,
        "a castle on a hill, (golden hour:1.2)\nmisty valley"
    );
    assert_eq!(p.negative, "blurry, lowres\nworst quality");
    assert_eq!(p.get("Model"), Some("juggernaut, v9: final"));
    assert_eq!(p.get("Lora hashes"), Some("detail: 0123, style: 4567"));
    assert_eq!(p.get("ADetailer model"), Some("face_yolov8n.pt"));
    assert_eq!(p.get("Version"), Some("v1.10.1"));
    assert_eq!(p.fields.len(), 11);
    let r = record_from_parameters("x.png", text);
    assert_eq!(r.source, SourceTool::A1111);
    assert_eq!(r.sampler.as_deref(), Some("dpmpp_2m"));
    assert_eq!(r.scheduler.as_deref(), Some("karras"));
    assert_eq!(r.cfg, Some(6.5));
    assert_eq!(r.steps, Some(30));
    assert_eq!(r.seed, Some(1_234_567_890));
    assert_eq!((r.width, r.height), (Some(832), Some(1216)));
    assert_eq!(r.model.as_deref(), Some("juggernaut, v9: final"));
    assert_eq!(r.model_hash.as_deref(), Some("abcdef1234"));
}

#[test]
fn a1111_without_negative_and_label_with_scheduler() {
    let text = "portrait of a fox\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 5, Size: 512x512, Model: sd15";
    let r = record_from_parameters("fox.png", text);
    assert_eq!(r.prompt, "portrait of a fox");
    assert_eq!(r.negative, "");
    assert_eq!(r.sampler.as_deref(), Some("dpmpp_2m"));
    assert_eq!(r.scheduler.as_deref(), Some("karras"));
    let euler_a = record_from_parameters("a.png", "x\nSteps: 4, Sampler: Euler a, Size: 64x64");
    assert_eq!(euler_a.sampler.as_deref(), Some("euler_ancestral"));
}

#[test]
fn a1111_quoted_values_with_escapes_and_no_settings_line() {
    let fields = parse_fields(r#"Steps: 20, Note: "say \"hi\", then: go", Seed: 3"#);
    assert_eq!(
        fields,
        vec![
            ("Steps".to_string(), "20".to_string()),
            ("Note".to_string(), "say \"hi\", then: go".to_string()),
            ("Seed".to_string(), "3".to_string()),
        ]
    );
    // A prompt-only text (some tools write just the prompt) is all prompt.
    let p = parse_parameters("just a prompt: with a colon, and commas");
    assert_eq!(p.prompt, "just a prompt: with a colon, and commas");
    assert!(p.fields.is_empty());
}

const COMFY_GRAPH: &str = r#"{
  "3": {"class_type": "KSampler", "inputs": {"seed": 156680208700286, "steps": 25, "cfg": 8.0,
        "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0,
        "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/realvisxlV40.safetensors"}},
  "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors", "strength_model": 0.8,
         "strength_clip": 0.8, "model": ["4", 0], "clip": ["4", 1]}},
  "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 896, "height": 1152, "batch_size": 1}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["10", 1]}},
  "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["10", 1]}},
  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
  "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
  "12": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 1, "steps": 10, "cfg": 3,
         "sampler_name": "euler", "scheduler": "normal", "model": ["4", 0], "positive": ["6", 0],
         "negative": ["7", 0], "latent_image": ["3", 0]}}
}"#;

#[test]
fn comfyui_graph_follows_links_to_loader_texts_and_latent() {
    let r = record_from_graph("ComfyUI_00001_.png", COMFY_GRAPH).unwrap();
    assert_eq!(r.source, SourceTool::Comfyui);
    assert_eq!(r.seed, Some(156_680_208_700_286));
    assert_eq!(r.steps, Some(25));
    assert_eq!(r.cfg, Some(8.0));
    assert_eq!(r.sampler.as_deref(), Some("dpmpp_2m"));
    assert_eq!(r.scheduler.as_deref(), Some("karras"));
    assert_eq!(r.model.as_deref(), Some("realvisxlV40"));
    assert_eq!(r.prompt, "a red fox in snow");
    assert_eq!(r.negative, "text, watermark");
    assert_eq!((r.width, r.height), (Some(896), Some(1152)));
    assert!(record_from_graph("x", "{\"1\": {\"class_type\": \"SaveImage\"}}").is_none());
    assert!(record_from_graph("x", "not json").is_none());
}

#[test]
fn our_chunk_wins_over_parameters() {
    let ours = r#"{"params":{"prompt":"a lighthouse","negative":"fog","model":"sd_xl_base_1.0","width":1024,"height":768,"steps":30,"cfg":5.5,"sampler":"dpmpp_2m","scheduler":"karras","seed":-1,"batch":1},"seed":42,"batch_index":0,"model":{"model_name":"sd_xl_base_1.0","model_path":"/m/sd_xl_base_1.0.safetensors","model_hash":"31e35c80fc","vae_name":null,"clip_name":null,"family":"sdxl"},"prediction":"eps","engine":"imagelab 0.1.0","style":"cinematic"}"#;
    let r = record_from_ours("out.png", ours).unwrap();
    assert_eq!(r.source, SourceTool::Imagelab);
    assert_eq!(r.prompt, "a lighthouse");
    assert_eq!(r.negative, "fog");
    assert_eq!(r.seed, Some(42));
    assert_eq!(r.model.as_deref(), Some("sd_xl_base_1.0"));
    assert_eq!(r.model_hash.as_deref(), Some("31e35c80fc"));
    assert_eq!(r.profile.as_deref(), Some("cinematic"));
    assert_eq!(
        (r.width, r.height, r.steps, r.cfg),
        (Some(1024), Some(768), Some(30), Some(5.5))
    );
    let mut texts = BTreeMap::new();
    texts.insert(
        "parameters".to_string(),
        "other\nSteps: 1, Sampler: Euler".to_string(),
    );
    texts.insert("imagelab".to_string(), ours.to_string());
    assert_eq!(
        record_from_texts("out.png", &texts).unwrap().source,
        SourceTool::Imagelab
    );
    texts.remove("imagelab");
    assert_eq!(
        record_from_texts("out.png", &texts).unwrap().source,
        SourceTool::A1111
    );
    texts.insert("prompt".to_string(), COMFY_GRAPH.to_string());
    assert_eq!(
        record_from_texts("out.png", &texts).unwrap().source,
        SourceTool::Comfyui
    );
    assert!(record_from_texts("x.png", &BTreeMap::new()).is_none());
}
