//! Parity of the PixArt-Σ transformer with diffusers' PixArtTransformer2DModel: tiny
//! seeded random models (tests/reference/pixart_ref.py) on non-square latents with a
//! caption mask, in diffusers' layout, in the original PixArt layout, under a single
//! file's prefix, and with a config.json that changes heads and position scale.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, load_tensors, reference_once};
use imagelab_engine::pixart::{
    transformer_view, PixArtConfig, PixArtLayout, PixArtTransformer, DEFAULT_POSITION_SCALE,
};
use imagelab_engine::weights::{WeightFile, Weights};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use tch::Tensor;

const TOL: f64 = 1e-4;

fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    reference_once(&DIR, "pixart_ref.py")
}

fn expected() -> HashMap<String, Tensor> {
    load_tensors(&reference().join("expected.safetensors"))
}

fn open(file: &str) -> Weights {
    Weights::from_file(WeightFile::open(&reference().join(file)).unwrap())
}

fn folder_config(folder: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(reference().join(folder).join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(w: &Weights, folder: Option<&str>) -> PixArtTransformer {
    let view = transformer_view(w).expect("a PixArt transformer");
    let mut cfg = PixArtConfig::detect(&view).unwrap();
    if let Some(folder) = folder {
        cfg = cfg.with_diffusers_config(&folder_config(folder)).unwrap();
    }
    PixArtTransformer::load(&view, &cfg).unwrap()
}

fn run(model: &PixArtTransformer, exp: &HashMap<String, Tensor>, mask: &Tensor) -> Tensor {
    tch::no_grad(|| model.forward(&exp["x"], &exp["t"], &exp["caption"], mask))
}

#[test]
fn detects_the_shape_in_both_layouts() {
    for (file, layout) in [
        (
            "sigma/diffusion_pytorch_model.safetensors",
            PixArtLayout::Diffusers,
        ),
        ("original.safetensors", PixArtLayout::Original),
    ] {
        let cfg = PixArtConfig::detect(&open(file)).unwrap();
        assert_eq!(cfg.layout, layout, "{file}");
        assert_eq!(
            (cfg.hidden, cfg.heads, cfg.layers, cfg.patch),
            (144, 2, 2, 2)
        );
        assert_eq!((cfg.in_channels, cfg.out_channels), (4, 8));
        assert_eq!((cfg.caption_channels, cfg.mlp_hidden), (32, 576));
        assert_eq!(cfg.position_scale, DEFAULT_POSITION_SCALE);
    }
}

#[test]
fn diffusers_layout_matches_diffusers_on_non_square_latents_with_a_mask() {
    let exp = expected();
    let model = load(
        &open("sigma/diffusion_pytorch_model.safetensors"),
        Some("sigma"),
    );
    let out = run(&model, &exp, &exp["mask"]);
    assert_eq!(out.size(), [2, 8, 6, 10]);
    assert_close("diffusers layout, masked", &out, &exp["sigma"], TOL);
    let unmasked = run(&model, &exp, &exp["mask"].ones_like());
    assert_close(
        "diffusers layout, unmasked",
        &unmasked,
        &exp["sigma_unmasked"],
        TOL,
    );
}

#[test]
fn the_mask_and_the_second_half_matter_so_the_comparison_can_fail() {
    let exp = expected();
    let err = common::relative_error(&exp["sigma"], &exp["sigma_unmasked"]);
    println!("masked vs unmasked reference: {err:.3e}");
    assert!(err > 1e-2, "the reference's mask must matter ({err:.3e})");
    // The learned-sigma half is a real output too, not zeros.
    let sigma_half = exp["sigma"].narrow(1, 4, 4).abs().mean(tch::Kind::Float);
    assert!(sigma_half.double_value(&[]) > 1e-2);
}

#[test]
fn original_layout_loads_to_the_same_output() {
    let exp = expected();
    let model = load(&open("original.safetensors"), None);
    assert_eq!(model.config().layout, PixArtLayout::Original);
    assert_close(
        "original layout",
        &run(&model, &exp, &exp["mask"]),
        &exp["sigma"],
        TOL,
    );
}

#[test]
fn a_single_file_with_a_prefix_loads_to_the_same_output() {
    let exp = expected();
    let model = load(&open("prefixed.safetensors"), None);
    assert_close(
        "prefixed",
        &run(&model, &exp, &exp["mask"]),
        &exp["sigma"],
        TOL,
    );
}

#[test]
fn config_json_sets_heads_and_the_position_scale() {
    let exp = expected();
    let w = open("odd/diffusion_pytorch_model.safetensors");
    let cfg = PixArtConfig::detect(&w)
        .unwrap()
        .with_diffusers_config(&folder_config("odd"))
        .unwrap();
    // sample_size 32 / patch 2 = 16, interpolation max(32 / 64, 1) = 1.
    assert_eq!(
        (cfg.heads, cfg.head_dim(), cfg.position_scale),
        (4, 36, 16.0)
    );
    let model = load(&w, Some("odd"));
    assert_close(
        "4 heads of 36",
        &run(&model, &exp, &exp["mask"]),
        &exp["odd"],
        TOL,
    );
    // Without the config, the defaults (2 heads of 72, scale 32) give another output.
    let defaults = load(&w, None);
    let err = common::relative_error(&run(&defaults, &exp, &exp["mask"]), &exp["odd"]);
    assert!(err > 1e-2, "config.json must matter here ({err:.3e})");
}

#[test]
fn pixart_alpha_and_other_files_are_refused_by_name() {
    let err = PixArtConfig::detect(&open("alpha.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("csize_embedder") && err.contains("PixArt-α"),
        "{err}"
    );
    assert!(transformer_view(&open("expected.safetensors")).is_none());
    let bad = serde_json::json!({"num_attention_heads": 5});
    let cfg = PixArtConfig::detect(&open("original.safetensors")).unwrap();
    let err = cfg.with_diffusers_config(&bad).unwrap_err().to_string();
    assert!(
        err.contains("num_attention_heads") && err.contains('5'),
        "{err}"
    );
}

#[test]
fn sliced_attention_gives_the_same_output() {
    let exp = expected();
    let mode = imagelab_engine::layers::AttentionMode::Sliced {
        query_chunk: Some(7),
    };
    let model = load(&open("original.safetensors"), None).with_attention(mode);
    assert_close(
        "sliced attention",
        &run(&model, &exp, &exp["mask"]),
        &exp["sigma"],
        TOL,
    );
}

#[test]
fn a_guided_step_follows_comfyuis_conventions_for_pixart() {
    use imagelab_core::memory::CfgBatching;
    use imagelab_engine::checkpoint::Prediction;
    use imagelab_engine::pipeline::denoiser::{Denoiser, GuidanceInput, Network};
    use imagelab_engine::sampling::ModelSchedule;
    let exp = expected();
    let model = load(&open("original.safetensors"), None);
    let schedule = ModelSchedule::pixart();
    let sigma = exp["step_sigma"].double_value(&[0]);
    // The nearest step (419), not the interpolated one (≈ 418.96).
    assert_eq!(schedule.nearest_t(sigma), exp["step_t"].double_value(&[0]));
    assert!((schedule.sigma_to_t(sigma) - schedule.nearest_t(sigma)).abs() > 1e-3);
    let side = |row: i64| GuidanceInput {
        context: exp["caption"].narrow(0, row, 1),
        vector: None,
        mask: Some(exp["mask"].narrow(0, row, 1)),
    };
    let (cond, uncond) = (side(0), side(1));
    for batching in [CfgBatching::Batched, CfgBatching::Sequential] {
        let denoiser = Denoiser {
            net: Network::PixArt(&model),
            schedule: &schedule,
            prediction: Prediction::Eps,
            cond: &cond,
            uncond: &uncond,
            cfg: 4.5,
            kind: tch::Kind::Float,
            batching,
        };
        let out = tch::no_grad(|| denoiser.denoise(&exp["x"], sigma)).unwrap();
        assert_close(
            &format!("guided step, {batching:?}"),
            &out,
            &exp["step"],
            TOL,
        );
    }
}

#[test]
fn pixart_models_are_told_apart_from_checkpoints_before_loading() {
    use imagelab_engine::checkpoint::{is_pixart, open_model};
    let file = reference().join("original.safetensors");
    assert!(is_pixart(&file).unwrap());
    // open_model splits SD checkpoints; a PixArt file is sent to PixArtFiles by name.
    let err = open_model(&file).unwrap_err().to_string();
    assert!(
        err.contains("PixArt-Σ") && err.contains("original.safetensors"),
        "{err}"
    );
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(folder.path().join("transformer")).unwrap();
    std::fs::write(
        folder.path().join("model_index.json"),
        r#"{"_class_name": "PixArtSigmaPipeline"}"#,
    )
    .unwrap();
    assert!(is_pixart(folder.path()).unwrap());
    std::fs::write(
        folder.path().join("model_index.json"),
        r#"{"_class_name": "StableDiffusionXLPipeline"}"#,
    )
    .unwrap();
    assert!(!is_pixart(folder.path()).unwrap());
}
