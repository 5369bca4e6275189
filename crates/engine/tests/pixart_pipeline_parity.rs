//! Whole-pipeline parity for PixArt-Σ: a tiny random model (tests/reference/
//! pixart_pipeline_ref.py) loaded through the real loaders — the diffusers folder and
//! ComfyUI's three files — must reproduce diffusers' PixArtSigmaPipeline from prompt to
//! image (4 Euler steps, CFG 4.5, ComfyUI's seeded noise and `normal` sigmas), and a
//! ComfyUI-style loop at fractional timesteps (the nearest integer step fed).
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_core::memory::{MemorySettings, Offload};
use imagelab_core::{DType, DeviceSpec, GenerationParams};
use imagelab_engine::pipeline::{ModelChoice, Pipeline};
use imagelab_engine::sampling::{sigmas_for, ModelSchedule};
use imagelab_engine::EngineError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::Tensor;

const TOL: f64 = 1e-4;

fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    common::reference_once(&DIR, "pixart_pipeline_ref.py")
}

fn io() -> HashMap<String, Tensor> {
    common::load_tensors(&reference().join("io.safetensors"))
}

fn params(steps: u32) -> GenerationParams {
    GenerationParams {
        prompt: "A Lighthouse at Dusk, Volumetric Light".into(),
        negative: "blurry, low quality".into(),
        width: 96,
        height: 64,
        steps,
        cfg: 4.5,
        seed: 31337,
        ..common::tiny_params()
    }
}

fn folder() -> PathBuf {
    reference().join("pixart_diffusers")
}

/// ComfyUI's layout: the transformer in checkpoints/, T5 (+ spiece.model) in clip/, the
/// VAE in vae/.
fn comfy_choice() -> ModelChoice {
    let comfy = reference().join("comfy");
    ModelChoice {
        clip: Some(comfy.join("clip/t5.safetensors")),
        vae: Some(comfy.join("vae.safetensors")),
        ..ModelChoice::new(
            comfy.join("pixart.safetensors"),
            DeviceSpec::Cpu,
            DType::Fp32,
        )
    }
}

fn load(choice: &ModelChoice) -> Pipeline {
    Pipeline::load(choice).unwrap()
}

fn sample(pipeline: &Pipeline, params: &GenerationParams) -> Tensor {
    pipeline.sample_latents(params, &mut |_| {}).unwrap()
}

#[test]
fn the_schedules_sigmas_are_comfyuis() {
    let io = io();
    for steps in [4usize, 5] {
        let want = Vec::<f64>::try_from(&io[&format!("sigmas{steps}")]).unwrap();
        let ours = sigmas_for(
            imagelab_core::SamplerName::Euler,
            imagelab_core::SchedulerName::Normal,
            &ModelSchedule::pixart(),
            steps,
            1.0,
        );
        assert_eq!(ours.len(), want.len());
        for (a, b) in ours.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9 * b.max(1.0), "{ours:?} vs {want:?}");
        }
    }
}

#[test]
fn diffusers_folder_matches_pixart_sigma_pipeline_from_prompt_to_image() {
    let io = io();
    let pipeline = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32));
    assert_eq!(pipeline.family.as_str(), "pixart-sigma");
    let mut steps = 0;
    let latents = pipeline
        .sample_latents(&params(4), &mut |e| {
            if let imagelab_engine::pipeline::StepEvent::Sampling { done, .. } = e {
                steps = done;
            }
        })
        .unwrap();
    assert_eq!(steps, 4);
    common::assert_close("final latents", &latents, &io["latents4"], TOL);
    let image = pipeline.decode_to_tensor(&latents).unwrap();
    common::assert_close("decoded image", &image, &io["image4"], TOL);
}

#[test]
fn comfyui_style_loop_at_fractional_timesteps_matches() {
    // 5 normal steps put the timesteps between integers: the nearest one is fed.
    let pipeline = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32));
    let latents = sample(&pipeline, &params(5));
    common::assert_close("5-step latents", &latents, &io()["latents5"], TOL);
}

#[test]
fn comfyui_files_give_the_folders_result() {
    let from_folder = sample(
        &load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32)),
        &params(4),
    );
    let pipeline = load(&comfy_choice());
    let from_files = sample(&pipeline, &params(4));
    common::assert_close("ComfyUI layout", &from_files, &from_folder, 1e-6);
    let info = &pipeline.info;
    assert_eq!(info.clip_name.as_deref(), Some("t5"));
    assert_eq!(info.vae_name.as_deref(), Some("vae"));
}

#[test]
fn memory_report_names_transformer_t5_and_vae_and_offload_keeps_t5_off() {
    let resident = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32));
    let parts = common::report_by_component(&resident);
    assert_eq!(
        parts.keys().collect::<Vec<_>>(),
        ["t5", "transformer", "vae"],
        "{parts:?}"
    );
    assert!(parts.values().all(|&b| b > 0), "{parts:?}");
    let offloaded = load(&ModelChoice {
        memory: MemorySettings {
            offload: Offload::Model,
            ..MemorySettings::default()
        },
        ..ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32)
    });
    let off = common::report_by_component(&offloaded);
    assert_eq!((off["t5"], off["vae"]), (0, 0), "{off:?}");
    assert_eq!(off["transformer"], parts["transformer"]);
    // Built for each use, T5 gives the same conditioning.
    let a = sample(&resident, &params(2));
    let b = sample(&offloaded, &params(2));
    assert!(a.equal(&b), "{:.3e}", common::relative_error(&b, &a));
    // Once both prompts are cached, a job does not build the offloaded T5 at all.
    let built = offloaded.text_encoder_builds();
    assert!(built >= 1);
    let again = sample(&offloaded, &params(2));
    assert!(again.equal(&b));
    assert_eq!(offloaded.text_encoder_builds(), built);
    let other = GenerationParams {
        prompt: "another prompt".into(),
        ..params(2)
    };
    let _ = sample(&offloaded, &other);
    assert_eq!(offloaded.text_encoder_builds(), built + 1);
    assert_eq!(resident.text_encoder_builds(), 0);
}

#[test]
fn bf16_and_fp16_run_close_to_fp32() {
    let io = io();
    let pipeline = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Bf16));
    let latents = sample(&pipeline, &params(4));
    assert_eq!(latents.kind(), tch::Kind::Float);
    // bf16's 8 mantissa bits through T5, 4 steps of CFG 4.5 and the DiT.
    common::assert_close("bf16 latents", &latents, &io["latents4"], 5e-2);
    // fp16: the transformer in fp16, T5 and the VAE in bf16 (fp16 overflows in both).
    let pipeline = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp16));
    let latents = sample(&pipeline, &params(4));
    common::assert_close("fp16 latents", &latents, &io["latents4"], 5e-2);
    let image = pipeline.decode_to_tensor(&latents).unwrap();
    common::assert_close("fp16 image", &image, &io["image4"], 5e-2);
}

#[test]
fn img2img_runs_from_an_init_image_over_the_schedules_last_steps() {
    let pipeline = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32));
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.png");
    let pixels: Vec<u8> = (0..96 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect();
    image::RgbImage::from_raw(96, 64, pixels)
        .unwrap()
        .save(&init)
        .unwrap();
    let img2img = GenerationParams {
        init_image: Some(init.display().to_string()),
        strength: 0.5,
        ..params(4)
    };
    let mut steps = 0;
    let latents = pipeline
        .sample_latents(&img2img, &mut |e| {
            if let imagelab_engine::pipeline::StepEvent::Sampling { total, .. } = e {
                steps = total;
            }
        })
        .unwrap();
    // ComfyUI's denoise: the last 4 steps of an 8-step schedule, from the encoded image.
    assert_eq!(steps, 4);
    assert!(latents.isfinite().all().int64_value(&[]) == 1);
    let txt2img = sample(&pipeline, &params(4));
    assert!(common::relative_error(&latents, &txt2img) > 1e-2);
}

#[test]
fn bad_sizes_and_loras_are_refused_by_name() {
    let pipeline = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32));
    let odd = GenerationParams {
        width: 72,
        ..params(2)
    };
    match pipeline.sample_latents(&odd, &mut |_| {}) {
        Err(err @ EngineError::Invalid { field: "width", .. }) => {
            assert!(err.to_string().contains("multiple of 16"), "{err}");
        }
        other => panic!("expected an invalid width, got {other:?}"),
    }
    let lora = imagelab_engine::lora::LoraApplication {
        name: "style".into(),
        path: reference().join("none.safetensors"),
        unet_weight: 1.0,
        te_weight: 1.0,
    };
    let err = pipeline.set_loras(&[lora]).unwrap_err().to_string();
    assert!(err.contains("PixArt-Σ") && err.contains("style"), "{err}");
}

#[test]
fn a_transformer_alone_without_its_t5_names_the_flag() {
    let choice = ModelChoice {
        clip: None,
        ..comfy_choice()
    };
    let err = Pipeline::load(&choice).unwrap_err().to_string();
    assert!(
        err.contains("--clip") && err.contains("pixart.safetensors"),
        "{err}"
    );
}

#[test]
fn emphasis_weights_t5_tokens_as_comfyui_does() {
    // ComfyUI's T5 path: the syntax removed, words tokenized one by one, each token's
    // output weighted against an all-<pad> prompt's; padding and the mask change nothing
    // for the real tokens.
    let io = io();
    let want = &io["weighted_context"];
    let real = want.size()[1];
    let pipeline = load(&ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32));
    let weighted = pipeline
        .encode_prompt("A (red:1.5) lighthouse at (dusk)", None)
        .unwrap()
        .context;
    assert_eq!(weighted.size()[1], 300);
    common::assert_close("weighted context", &weighted.narrow(1, 0, real), want, 1e-5);
    // A weight of 1 is the plain prompt; the weights are what changed it.
    let plain = pipeline
        .encode_prompt("A red lighthouse at dusk", None)
        .unwrap()
        .context;
    let unit = pipeline
        .encode_prompt("A (red:1.0) lighthouse at dusk", None)
        .unwrap()
        .context;
    assert!(plain.equal(&unit));
    assert!(common::relative_error(&weighted.narrow(1, 0, real), &plain.narrow(1, 0, real)) > 1e-3);
}

#[test]
fn sequential_offload_is_reported_as_the_model_offload_it_runs_and_alpha_folders_are_refused() {
    let pipeline = load(&ModelChoice {
        memory: MemorySettings {
            offload: Offload::Sequential,
            ..MemorySettings::default()
        },
        ..ModelChoice::new(folder(), DeviceSpec::Cpu, DType::Fp32)
    });
    assert_eq!(pipeline.memory_settings().offload, Offload::Model);
    // No "Clip skip" for T5 in the PNG's parameters.
    let skipped = GenerationParams {
        clip_skip: Some(2),
        ..params(2)
    };
    let images = pipeline.generate(&skipped, &mut |_| {}).unwrap();
    let png = pipeline.encode_png(&skipped, &images[0]).unwrap();
    let text = String::from_utf8_lossy(&png).into_owned();
    assert!(text.contains("Steps: 2") && !text.contains("Clip skip"));
    // A PixArt-α folder is named, not run as Σ.
    let alpha = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(alpha.path().join("transformer")).unwrap();
    std::fs::copy(
        folder().join("transformer/diffusion_pytorch_model.safetensors"),
        alpha
            .path()
            .join("transformer/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        alpha.path().join("model_index.json"),
        r#"{"_class_name": "PixArtAlphaPipeline"}"#,
    )
    .unwrap();
    let err = Pipeline::load(&ModelChoice::new(
        alpha.path(),
        DeviceSpec::Cpu,
        DType::Fp32,
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("PixArtAlphaPipeline"), "{err}");
}
