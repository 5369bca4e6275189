//! UNet parity with diffusers on small random SD 1.x-, SD 2.x- (inpainting) and SDXL-like
//! models: config detection from the single-file names, forward output, the diffusers-layout
//! key mapping (bit-identical to the single-file load), SDXL's size vector, and errors that
//! name the broken tensor.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, load_tensors, run_reference};
use imagelab_engine::unet::{
    diffusers_unet_index, sdxl_refiner_vector, sdxl_vector, HeadRule, UNet, UNetConfig, UNetFamily,
};
use imagelab_engine::weights::{WeightFile, Weights};
use imagelab_engine::EngineError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::Tensor;

const TOLERANCE: f64 = 1e-4;

/// Runs the reference script once per test binary.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unet_parity");
        run_reference("unet_ref.py", &dir, &[]);
        dir
    })
}

fn single_file(name: &str) -> Weights {
    let file = WeightFile::open(&reference_dir().join(name)).unwrap();
    Weights::from_file(file).at("model.diffusion_model")
}

fn diffusers_file(flavour: &str) -> Weights {
    let file = WeightFile::open(&reference_dir().join(format!("{flavour}_diffusers.safetensors")))
        .unwrap();
    let index = diffusers_unet_index(&file, "model.diffusion_model.").unwrap();
    Weights::from_mapping(format!("{flavour} diffusers"), index).at("model.diffusion_model")
}

fn io(flavour: &str) -> std::collections::HashMap<String, Tensor> {
    load_tensors(&reference_dir().join(format!("{flavour}_io.safetensors")))
}

/// Detects, loads and runs `w`, returning the config and the output for the flavour's inputs.
fn run(w: &Weights, flavour: &str) -> (UNetConfig, Tensor) {
    let cfg = UNetConfig::detect(w).unwrap();
    let unet = UNet::load(w, &cfg).unwrap();
    let io = io(flavour);
    let y = io
        .get("pooled")
        .map(|pooled| sdxl_vector(pooled, (1024, 768), (16, 32), (1024, 1024)));
    let out = tch::no_grad(|| {
        unet.forward(&io["x"], &io["t"], &io["context"], y.as_ref())
            .unwrap()
    });
    (cfg, out)
}

fn check_flavour(flavour: &str) -> UNetConfig {
    let (cfg, out) = run(&single_file(&format!("{flavour}_ldm.safetensors")), flavour);
    assert_close(
        &format!("{flavour} single-file UNet vs diffusers"),
        &out,
        &io(flavour)["out"],
        TOLERANCE,
    );
    let (diffusers_cfg, diffusers_out) = run(&diffusers_file(flavour), flavour);
    assert_eq!(
        diffusers_cfg, cfg,
        "{flavour}: the diffusers layout detects as a different config"
    );
    assert!(
        diffusers_out.equal(&out),
        "{flavour}: diffusers-layout output differs from the single-file one"
    );
    cfg
}

#[test]
fn sd1_like_matches_diffusers() {
    let cfg = check_flavour("sd1");
    assert_eq!(cfg.family, UNetFamily::Other);
    assert_eq!(
        (
            cfg.in_channels,
            cfg.out_channels,
            cfg.model_channels,
            cfg.time_embed_dim
        ),
        (4, 4, 32, 128)
    );
    assert_eq!(cfg.channel_mult, [1, 2, 2]);
    assert_eq!(cfg.num_res_blocks, [2, 2, 2]);
    assert_eq!(cfg.input_depth, [1, 1, 1, 1, 0, 0]);
    assert_eq!(cfg.middle_depth, 1);
    assert_eq!(cfg.output_depth, [0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert_eq!(cfg.context_dim, 48);
    assert!(!cfg.linear_projection);
    assert_eq!(cfg.heads, HeadRule::Count(8));
    assert_eq!(cfg.adm_in_channels, None);

    let w = single_file("sd1_ldm.safetensors");
    let io = io("sd1");
    let unet = UNet::load(&w, &cfg).unwrap();
    let out = tch::no_grad(|| {
        unet.forward(&io["x_odd"], &io["t_odd"], &io["context_odd"], None)
            .unwrap()
    });
    assert_close(
        "sd1 UNet on an 18x14 latent vs diffusers",
        &out,
        &io["out_odd"],
        TOLERANCE,
    );

    // The head split is not in the file; a wrong one must show (and the override must work).
    let four_heads = UNetConfig {
        heads: HeadRule::Count(4),
        ..cfg
    };
    let unet = UNet::load(&w, &four_heads).unwrap();
    let out = tch::no_grad(|| {
        unet.forward(&io["x"], &io["t"], &io["context"], None)
            .unwrap()
    });
    let err = common::relative_error(&out, &io["out"]);
    println!("sd1 with 4 heads instead of 8: relative error {err:.3e}");
    assert!(err > 1e-3, "the head count made no difference ({err:.3e})");
}

#[test]
fn sd2_inpainting_like_matches_diffusers() {
    let cfg = check_flavour("sd2");
    assert_eq!(
        (cfg.in_channels, cfg.out_channels, cfg.model_channels),
        (9, 4, 64)
    );
    assert_eq!(cfg.channel_mult, [1, 2]);
    assert_eq!(cfg.num_res_blocks, [1, 1]);
    assert_eq!(cfg.input_depth, [1, 0]);
    assert_eq!(cfg.output_depth, [0, 0, 1, 1]);
    assert_eq!(cfg.context_dim, 40);
    assert!(cfg.linear_projection);
    assert_eq!(cfg.heads, HeadRule::Width(64));
}

#[test]
fn sdxl_like_matches_diffusers() {
    let cfg = check_flavour("sdxl");
    assert_eq!(cfg.channel_mult, [1, 2, 4]);
    assert_eq!(cfg.input_depth, [0, 0, 1, 1, 2, 2]);
    assert_eq!(cfg.middle_depth, 2);
    assert_eq!(cfg.output_depth, [2, 2, 2, 1, 1, 1, 0, 0, 0]);
    assert_eq!(cfg.context_dim, 64);
    assert!(cfg.linear_projection);
    assert_eq!(cfg.adm_in_channels, Some(32 + 6 * 256));

    // The size conditioning must reach the output, and y is required.
    let w = single_file("sdxl_ldm.safetensors");
    let unet = UNet::load(&w, &cfg).unwrap();
    let io = io("sdxl");
    let y = sdxl_vector(&io["pooled"], (512, 512), (0, 0), (1024, 1024));
    let out = tch::no_grad(|| {
        unet.forward(&io["x"], &io["t"], &io["context"], Some(&y))
            .unwrap()
    });
    let err = common::relative_error(&out, &io["out"]);
    println!("sdxl with other size conditioning: relative error {err:.3e}");
    assert!(
        err > 1e-3,
        "the size conditioning made no difference ({err:.3e})"
    );
    assert!(matches!(
        unet.forward(&io["x"], &io["t"], &io["context"], None),
        Err(EngineError::Invalid { .. })
    ));
}

#[test]
fn sdxl_vector_matches_diffusers_add_embedding_input() {
    let io = io("sdxl");
    let y = sdxl_vector(&io["pooled"], (1024, 768), (16, 32), (1024, 1024));
    assert_close(
        "sdxl_vector vs diffusers add_embeds",
        &y,
        &io["add_embeds"],
        1e-6,
    );
    // The order matters: swapping height and width must be caught.
    let swapped = sdxl_vector(&io["pooled"], (768, 1024), (16, 32), (1024, 1024));
    assert!(common::relative_error(&swapped, &io["add_embeds"]) > 1e-2);

    let refiner = sdxl_refiner_vector(&io["pooled"], (1024, 768), (16, 32), 6.0);
    assert_close(
        "sdxl_refiner_vector vs diffusers",
        &refiner,
        &io["refiner_add_embeds"],
        1e-6,
    );
}

#[test]
fn missing_tensor_is_named() {
    let w = single_file("sd1_missing.safetensors");
    let cfg = UNetConfig::detect(&w).unwrap();
    match UNet::load(&w, &cfg) {
        Err(EngineError::MissingTensor { name, .. }) => {
            assert_eq!(
                name,
                "model.diffusion_model.output_blocks.3.0.emb_layers.1.weight"
            )
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn wrong_shape_is_named() {
    let w = single_file("sd1_badshape.safetensors");
    let cfg = UNetConfig::detect(&w).unwrap();
    match UNet::load(&w, &cfg) {
        Err(EngineError::ShapeMismatch {
            name,
            actual,
            expected,
            ..
        }) => {
            assert_eq!(
                name,
                "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_v.weight"
            );
            assert_eq!((actual, expected), (vec![32, 47], vec![32, 48]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn non_unet_is_unknown_architecture() {
    // The SDXL inputs file has tensors but no UNet.
    let file = WeightFile::open(&reference_dir().join("sdxl_io.safetensors")).unwrap();
    match UNetConfig::detect(&Weights::from_file(file).at("model.diffusion_model")) {
        Err(EngineError::UnknownArchitecture { reason, .. }) => {
            assert!(reason.contains("input_blocks.0.0.weight"))
        }
        other => panic!("expected UnknownArchitecture, got {other:?}"),
    }
}

/// Detection on the shapes of the full-size models (built on the meta device by the
/// reference script, so no weights are needed).
#[test]
fn full_size_families_are_detected() {
    let text = std::fs::read_to_string(reference_dir().join("real_shapes.json")).unwrap();
    let all: BTreeMap<String, BTreeMap<String, Vec<i64>>> = serde_json::from_str(&text).unwrap();
    let detect = |name: &str| UNetConfig::detect_from_shapes(name, &all[name]).unwrap();

    let sd15 = detect("sd15");
    let expected = UNetConfig {
        family: UNetFamily::Sd1,
        in_channels: 4,
        out_channels: 4,
        model_channels: 320,
        time_embed_dim: 1280,
        channel_mult: vec![1, 2, 4, 4],
        num_res_blocks: vec![2, 2, 2, 2],
        input_depth: vec![1, 1, 1, 1, 1, 1, 0, 0],
        middle_depth: 1,
        output_depth: vec![0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        context_dim: 768,
        linear_projection: false,
        heads: HeadRule::Count(8),
        adm_in_channels: None,
    };
    assert_eq!(sd15, expected);
    let inpaint = detect("sd15_inpaint");
    assert_eq!(
        inpaint,
        UNetConfig {
            in_channels: 9,
            ..expected.clone()
        }
    );
    let sd21 = detect("sd21");
    assert_eq!(
        sd21,
        UNetConfig {
            family: UNetFamily::Sd2,
            context_dim: 1024,
            linear_projection: true,
            heads: HeadRule::Width(64),
            ..expected
        }
    );

    let sdxl = detect("sdxl_base");
    let expected = UNetConfig {
        family: UNetFamily::Sdxl,
        in_channels: 4,
        out_channels: 4,
        model_channels: 320,
        time_embed_dim: 1280,
        channel_mult: vec![1, 2, 4],
        num_res_blocks: vec![2, 2, 2],
        input_depth: vec![0, 0, 2, 2, 10, 10],
        middle_depth: 10,
        output_depth: vec![10, 10, 10, 2, 2, 2, 0, 0, 0],
        context_dim: 2048,
        linear_projection: true,
        heads: HeadRule::Width(64),
        adm_in_channels: Some(2816),
    };
    assert_eq!(sdxl, expected);
    let refiner = detect("sdxl_refiner");
    assert_eq!(
        refiner,
        UNetConfig {
            family: UNetFamily::SdxlRefiner,
            model_channels: 384,
            time_embed_dim: 1536,
            channel_mult: vec![1, 2, 4, 4],
            num_res_blocks: vec![2, 2, 2, 2],
            input_depth: vec![0, 0, 4, 4, 4, 4, 0, 0],
            middle_depth: 4,
            output_depth: vec![0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0],
            context_dim: 1280,
            adm_in_channels: Some(2560),
            ..expected
        }
    );
    // Heads as the real models were trained: SD 1.5 has 8 everywhere, SDXL 5/10/20.
    assert_eq!(HeadRule::Width(64).heads(1280), Some(20));
    assert_eq!(HeadRule::Count(8).heads(1280), Some(8));
}
