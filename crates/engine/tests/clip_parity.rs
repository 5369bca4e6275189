//! Parity of the CLIP text encoders with transformers: tiny seeded random models in every
//! key layout SD checkpoints use (tests/reference/clip_ref.py), compared in float32.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, load_tensors, run_reference};
use imagelab_engine::clip::{
    detect_layout, open_hf_text_encoder_dir, Activation, ClipConfig, ClipLayout, ClipOutput,
    ClipRole, ClipTextEncoder, LayerChoice, PoolPosition,
};
use imagelab_engine::weights::{WeightFile, Weights};
use imagelab_engine::EngineError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Kind, Tensor};

const TOL: f64 = 1e-4;
const PADS: [&str; 2] = ["eos", "zero"];

/// Runs the reference script once per test binary.
fn reference() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clip_parity");
        run_reference("clip_ref.py", &dir, &[]);
        dir
    })
}

fn expected() -> HashMap<String, Tensor> {
    load_tensors(&reference().join("expected.safetensors"))
}

fn open(file: &str) -> Weights {
    Weights::from_file(WeightFile::open(&reference().join(file)).unwrap())
}

fn load(w: &Weights) -> (ClipConfig, ClipTextEncoder) {
    let layout = detect_layout(w).expect("a CLIP text encoder");
    let cfg = ClipConfig::detect(w, layout).unwrap();
    let enc = ClipTextEncoder::load(w, &cfg).unwrap();
    (cfg, enc)
}

/// Every (layer, norm) combination against transformers' hidden states, plus pooling.
fn check_against_reference(enc: &ClipTextEncoder, model: &str, what: &str) {
    let exp = expected();
    let cases = [
        (LayerChoice::Last, false, "hidden_last"),
        (LayerChoice::Last, true, "last_hidden_state"),
        (LayerChoice::FromEnd(1), true, "last_hidden_state"),
        (LayerChoice::FromEnd(2), false, "hidden_penultimate"),
        (LayerChoice::FromEnd(2), true, "hidden_penultimate_ln"),
    ];
    for pad in PADS {
        let tokens = &exp[&format!("tokens_{pad}")];
        for (layer, norm, key) in cases {
            let out = enc.encode(tokens, layer, norm).unwrap();
            let want = &exp[&format!("{model}_{pad}_{key}")];
            assert_close(
                &format!("{what} {pad}-padded {layer:?} norm={norm} vs {key}"),
                &out.hidden,
                want,
                TOL,
            );
        }
        let out = enc.encode(tokens, LayerChoice::Last, false).unwrap();
        assert_close(
            &format!("{what} {pad}-padded pooled"),
            &out.pooled,
            &exp[&format!("{model}_{pad}_pooler_output")],
            TOL,
        );
        match (model, &out.projected) {
            ("g", Some(p)) => assert_close(
                &format!("{what} {pad}-padded projected"),
                p,
                &exp[&format!("g_{pad}_text_embeds")],
                TOL,
            ),
            ("l", None) => {}
            _ => panic!("{what}: unexpected projection presence"),
        }
    }
}

fn outputs(enc: &ClipTextEncoder) -> Vec<ClipOutput> {
    let exp = expected();
    let mut all = Vec::new();
    for pad in PADS {
        for (layer, norm) in [(LayerChoice::Last, true), (LayerChoice::FromEnd(2), false)] {
            all.push(
                enc.encode(&exp[&format!("tokens_{pad}")], layer, norm)
                    .unwrap(),
            );
        }
    }
    all
}

fn assert_identical(what: &str, a: &[ClipOutput], b: &[ClipOutput]) {
    for (x, y) in a.iter().zip(b) {
        assert!(x.hidden.equal(&y.hidden), "{what}: hidden differs");
        assert!(x.pooled.equal(&y.pooled), "{what}: pooled differs");
        match (&x.projected, &y.projected) {
            (Some(p), Some(q)) => assert!(p.equal(q), "{what}: projected differs"),
            (None, None) => {}
            _ => panic!("{what}: projection presence differs"),
        }
    }
}

#[test]
fn sd1_clip_l_single_file_matches_transformers() {
    let w = open("sd1.safetensors").at(ClipRole::Sd1ClipL.single_file_prefix());
    assert_eq!(detect_layout(&w), Some(ClipLayout::HuggingFace));
    let (cfg, enc) = load(&w);
    assert_eq!(
        (
            cfg.vocab,
            cfg.hidden,
            cfg.layers,
            cfg.heads,
            cfg.intermediate
        ),
        (1000, 128, 3, 2, 512)
    );
    assert_eq!(
        (cfg.max_positions, cfg.activation, cfg.projection_dim),
        (77, Activation::QuickGelu, None)
    );
    assert_eq!(cfg.pool, PoolPosition::HighestTokenId);
    check_against_reference(&enc, "l", "sd1 CLIP-L");
}

#[test]
fn clip_l_without_text_model_prefix_and_diffusers_folder_agree() {
    let (_, reference_enc) = load(&open("sd1.safetensors").at("cond_stage_model.transformer"));
    let want = outputs(&reference_enc);

    let legacy = open("sd1_legacy.safetensors").at("cond_stage_model.transformer");
    assert_eq!(detect_layout(&legacy), Some(ClipLayout::HuggingFaceNoRoot));
    assert_identical("legacy single file", &outputs(&load(&legacy).1), &want);

    // transformers 5 saves CLIPTextModel without `text_model.`; its config says eos 2.
    let (w, cfg) = open_hf_text_encoder_dir(&reference().join("l_hf")).unwrap();
    assert_eq!(
        (cfg.layout, cfg.activation, cfg.heads),
        (ClipLayout::HuggingFaceNoRoot, Activation::QuickGelu, 2)
    );
    assert_eq!(cfg.pool, PoolPosition::HighestTokenId);
    assert_identical(
        "l_hf folder",
        &outputs(&ClipTextEncoder::load(&w, &cfg).unwrap()),
        &want,
    );

    let sdxl_l = open("sdxl.safetensors").at(ClipRole::SdxlClipL.single_file_prefix());
    assert_eq!(detect_layout(&sdxl_l), Some(ClipLayout::HuggingFace));
    assert_identical("sdxl CLIP-L", &outputs(&load(&sdxl_l).1), &want);
}

#[test]
fn sdxl_open_clip_g_matches_transformers() {
    let w = open("sdxl.safetensors").at(ClipRole::SdxlOpenClipG.single_file_prefix());
    assert_eq!(detect_layout(&w), Some(ClipLayout::OpenClip));
    let (cfg, enc) = load(&w);
    assert_eq!(
        (
            cfg.vocab,
            cfg.hidden,
            cfg.layers,
            cfg.heads,
            cfg.intermediate
        ),
        (1000, 192, 3, 3, 768)
    );
    assert_eq!(
        (cfg.max_positions, cfg.activation, cfg.projection_dim),
        (77, Activation::Gelu, Some(96))
    );
    check_against_reference(&enc, "g", "sdxl OpenCLIP-G");
}

#[test]
fn diffusers_text_encoder_2_matches_open_clip_layout_exactly() {
    let (w, cfg) = open_hf_text_encoder_dir(&reference().join("g_hf")).unwrap();
    // Without config.json a 192-wide HF-layout tower would be taken for OpenAI CLIP.
    let bare = ClipConfig::detect(&w, ClipLayout::HuggingFace).unwrap();
    assert_eq!(bare.activation, Activation::QuickGelu);
    assert_eq!(
        (cfg.activation, cfg.pool, cfg.projection_dim),
        (Activation::Gelu, PoolPosition::FirstToken(999), Some(96))
    );
    let enc = ClipTextEncoder::load(&w, &cfg).unwrap();
    check_against_reference(&enc, "g", "g_hf folder");

    let open_clip = open("sdxl.safetensors").at("conditioner.embedders.1.model");
    assert_identical(
        "HF vs open_clip layout",
        &outputs(&enc),
        &outputs(&load(&open_clip).1),
    );
}

#[test]
fn family_settings_follow_comfyui_and_sgm() {
    let w = open("sdxl.safetensors").at(ClipRole::SdxlOpenClipG.single_file_prefix());
    let (mut cfg, _) = load(&w);
    let s = ClipRole::SdxlOpenClipG.settings(&cfg);
    assert_eq!(
        (s.layer, s.final_norm_on_hidden, s.uses_projected_pool),
        (LayerChoice::FromEnd(2), false, true)
    );
    let s = ClipRole::SdxlClipL.settings(&cfg);
    assert_eq!(
        (s.layer, s.final_norm_on_hidden),
        (LayerChoice::FromEnd(2), false)
    );
    let s = ClipRole::Sd1ClipL.settings(&cfg);
    assert_eq!((s.layer, s.final_norm_on_hidden), (LayerChoice::Last, true));
    cfg.layers = 24;
    let s = ClipRole::Sd2OpenClipH.settings(&cfg);
    assert_eq!(
        (s.layer, s.final_norm_on_hidden),
        (LayerChoice::FromEnd(2), true)
    );
    cfg.layers = 23;
    assert_eq!(
        ClipRole::Sd2OpenClipH.settings(&cfg).layer,
        LayerChoice::Last
    );
}

/// Copies sdxl.safetensors with one tensor replaced (or removed when `replacement` is None).
fn mutated(file: &str, name: &str, replacement: Option<Tensor>) -> Weights {
    let mut tensors = load_tensors(&reference().join("sdxl.safetensors"));
    assert!(
        tensors.remove(name).is_some(),
        "{name} not in the reference file"
    );
    if let Some(t) = replacement {
        tensors.insert(name.to_string(), t);
    }
    let path = reference().join(file);
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    Tensor::write_safetensors(&list, &path).unwrap();
    Weights::from_file(WeightFile::open(&path).unwrap())
}

fn load_error(w: &Weights) -> EngineError {
    let layout = detect_layout(w).unwrap();
    match ClipConfig::detect(w, layout).and_then(|cfg| ClipTextEncoder::load(w, &cfg)) {
        Ok(_) => panic!("a broken file loaded"),
        Err(e) => e,
    }
}

#[test]
fn wrong_width_or_missing_tensors_are_named() {
    let g = "conditioner.embedders.1.model.";
    let l = "conditioner.embedders.0.transformer.";
    let cases = [
        (
            format!("{l}text_model.encoder.layers.2.self_attn.k_proj.weight"),
            vec![128, 127],
            l,
        ),
        (
            format!("{g}transformer.resblocks.1.attn.in_proj_weight"),
            vec![3 * 192, 193],
            g,
        ),
        (
            format!("{g}transformer.resblocks.2.mlp.c_proj.weight"),
            vec![192, 767],
            g,
        ),
        (format!("{g}text_projection"), vec![191, 96], g),
    ];
    for (i, (name, shape, prefix)) in cases.iter().enumerate() {
        let w = mutated(
            &format!("bad_{i}.safetensors"),
            name,
            Some(Tensor::zeros(
                shape.as_slice(),
                (Kind::Float, tch::Device::Cpu),
            )),
        );
        let error = load_error(&w.at(prefix.trim_end_matches('.')));
        println!("{error}");
        match error {
            EngineError::ShapeMismatch {
                name: got, actual, ..
            } => {
                assert_eq!((&got, &actual), (name, shape))
            }
            other => panic!("{name}: expected ShapeMismatch, got {other}"),
        }
    }
    // A gap in the layer indices is a missing tensor, not a shorter model.
    let w = mutated(
        "gap.safetensors",
        &format!("{g}transformer.resblocks.1.mlp.c_fc.weight"),
        None,
    );
    match load_error(&w.at("conditioner.embedders.1.model")) {
        EngineError::MissingTensor { name, .. } => {
            assert_eq!(name, format!("{g}transformer.resblocks.1.mlp.c_fc.weight"))
        }
        other => panic!("expected MissingTensor, got {other}"),
    }
}

#[test]
fn bad_layers_and_tokens_are_refused() {
    let (_, enc) = load(&open("sd1.safetensors").at("cond_stage_model.transformer"));
    let tokens = &expected()["tokens_eos"];
    for layer in [
        LayerChoice::FromEnd(0),
        LayerChoice::FromEnd(4),
        LayerChoice::FromEnd(usize::MAX),
    ] {
        assert!(
            matches!(
                enc.encode(tokens, layer, false),
                Err(EngineError::Invalid { .. })
            ),
            "{layer:?}"
        );
    }
    let too_high = tokens.copy();
    let _ = too_high.get(0).get(3).fill_(1000);
    assert!(matches!(
        enc.encode(&too_high, LayerChoice::Last, true),
        Err(EngineError::Invalid { .. })
    ));
    let too_long = Tensor::zeros([1, 78], (Kind::Int64, tch::Device::Cpu));
    assert!(matches!(
        enc.encode(&too_long, LayerChoice::Last, true),
        Err(EngineError::Invalid { .. })
    ));
    // Shorter sequences are fine (positions 0..n).
    let short = tokens.narrow(1, 0, 10);
    assert_eq!(
        enc.encode(&short, LayerChoice::Last, true)
            .unwrap()
            .hidden
            .size(),
        [4, 10, 128]
    );
}
