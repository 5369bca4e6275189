//! Whole-pipeline parity: tiny random SD 1.x, SD 2.x (v-prediction) and SDXL checkpoints,
//! loaded through the real single-file loader, must reproduce diffusers' own pipelines from
//! prompt to final latents (4 Euler steps, CFG 5, ComfyUI's seeded noise and `normal`
//! sigmas), and the decoded images; the SDXL diffusers folder must give identical results.
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_core::{DType, DeviceSpec, GenerationParams, SamplerName, SchedulerName};
use imagelab_engine::pipeline::{ModelChoice, Pipeline};
use imagelab_engine::sampling::{sigmas_for, ModelSchedule};
use std::path::Path;
use std::sync::OnceLock;

const SEED: i64 = 424242;

/// Runs the reference once for all tests in this file.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    common::reference_once(&DIR, "pipeline_ref.py")
}

fn params() -> GenerationParams {
    common::pipeline_ref_params()
}

fn load(path: &Path) -> Pipeline {
    Pipeline::load(&ModelChoice::new(path, DeviceSpec::Cpu, DType::Fp32)).unwrap()
}

/// Our `normal` sigmas for `steps` Euler steps are the reference's (`io["sigmas"]`).
fn check_sigmas(name: &str, steps: usize, io: &std::collections::HashMap<String, tch::Tensor>) {
    let want = Vec::<f64>::try_from(&io["sigmas"]).unwrap();
    let ours = sigmas_for(
        SamplerName::Euler,
        SchedulerName::Normal,
        &ModelSchedule::stable_diffusion(),
        steps,
        1.0,
    );
    assert_eq!(ours.len(), want.len(), "{name} sigmas {ours:?} vs {want:?}");
    for (a, b) in ours.iter().zip(&want) {
        assert!((a - b).abs() < 1e-9, "{name} sigmas {ours:?} vs {want:?}");
    }
}

fn check_family(name: &str, family: &str, prediction: &str) {
    let dir = reference_dir();
    let io = common::load_tensors(&dir.join(format!("{name}_io.safetensors")));
    check_sigmas(name, 4, &io);
    let pipeline = load(&dir.join(format!("{name}.safetensors")));
    assert_eq!(pipeline.family.as_str(), family);
    assert_eq!(
        format!("{:?}", pipeline.prediction).to_lowercase(),
        prediction
    );
    let mut steps = 0;
    let latents = pipeline
        .sample_latents(&params(), &mut |e| {
            if let imagelab_engine::pipeline::StepEvent::Sampling { done, .. } = e {
                steps = done;
            }
        })
        .unwrap();
    assert_eq!(steps, 4);
    common::assert_close(
        &format!("{name} final latents"),
        &latents,
        &io["latents"],
        1e-4,
    );
    let image = pipeline.decode_to_tensor(&latents).unwrap();
    common::assert_close(&format!("{name} decoded image"), &image, &io["image"], 1e-4);
}

#[test]
fn sd1_matches_diffusers_from_prompt_to_image() {
    check_family("sd1", "sd1", "eps");
}

#[test]
fn sd2_v_prediction_matches_diffusers_from_prompt_to_image() {
    check_family("sd2", "sd2", "v");
}

#[test]
fn sdxl_matches_diffusers_from_prompt_to_image() {
    check_family("sdxl", "sdxl", "eps");
}

#[test]
fn sd1_is_fed_the_nearest_timestep_as_comfyui_does() {
    // 5 `normal` steps put the timesteps between integers, where ComfyUI feeds the
    // nearest one and diffusers' Euler would interpolate.
    let io = common::load_tensors(&reference_dir().join("sd1_comfy5_io.safetensors"));
    check_sigmas("sd1, 5 steps", 5, &io);
    let pipeline = load(&reference_dir().join("sd1.safetensors"));
    let five = GenerationParams {
        steps: 5,
        ..params()
    };
    let latents = pipeline.sample_latents(&five, &mut |_| {}).unwrap();
    // Measured 2.2e-6; the interpolated timestep gives 1.3e-4 on this tiny UNet.
    common::assert_close("5-step latents", &latents, &io["latents"], 2e-5);
}

#[test]
fn sdxl_diffusers_folder_gives_identical_results_to_the_single_file() {
    let dir = reference_dir();
    let single = load(&dir.join("sdxl.safetensors"))
        .sample_latents(&params(), &mut |_| {})
        .unwrap();
    let folder = load(&dir.join("sdxl_diffusers"))
        .sample_latents(&params(), &mut |_| {})
        .unwrap();
    assert!(
        single.equal(&folder),
        "relative error {:.3e}",
        common::relative_error(&folder, &single)
    );
}

#[test]
fn same_seed_reproduces_and_another_seed_differs() {
    let pipeline = load(&reference_dir().join("sd1.safetensors"));
    let a = pipeline.sample_latents(&params(), &mut |_| {}).unwrap();
    let b = pipeline.sample_latents(&params(), &mut |_| {}).unwrap();
    assert!(a.equal(&b));
    let other = GenerationParams {
        seed: SEED + 1,
        ..params()
    };
    let c = pipeline.sample_latents(&other, &mut |_| {}).unwrap();
    assert!(common::relative_error(&c, &a) > 1e-2);
}

#[test]
fn prompt_weights_long_prompts_and_clip_skip_shape_the_conditioning() {
    let pipeline = load(&reference_dir().join("sdxl.safetensors"));
    let plain = pipeline.encode_prompt("a red lighthouse", None).unwrap();
    assert_eq!(plain.context.size(), [1, 77, 192]);
    assert_eq!(plain.pooled.as_ref().unwrap().size(), [1, 32]);
    // A weight of 1 is the plain prompt; another weight changes only the conditioning.
    let unit = pipeline
        .encode_prompt("a (red:1.0) lighthouse", None)
        .unwrap();
    assert!(unit.context.equal(&plain.context));
    let heavy = pipeline
        .encode_prompt("a (red:1.5) lighthouse", None)
        .unwrap();
    assert!(common::relative_error(&heavy.context, &plain.context) > 1e-3);
    // Escaped brackets are literal text, not weights.
    let literal = pipeline
        .encode_prompt("a \\(red\\) lighthouse", None)
        .unwrap();
    assert!(!literal.context.equal(&plain.context));
    // Over 75 tokens: two 77-token chunks, concatenated.
    let long = vec!["lighthouse"; 100].join(" ");
    let long = pipeline.encode_prompt(&long, None).unwrap();
    assert_eq!(long.context.size(), [1, 154, 192]);
    // Clip skip picks another layer.
    let skipped = pipeline.encode_prompt("a red lighthouse", Some(1)).unwrap();
    assert!(!skipped.context.equal(&plain.context));
}

#[test]
fn bf16_runs_every_part_in_half_precision_close_to_fp32() {
    // The CUDA dtypes' casting paths (timesteps, context, pooled vector, VAE kind), exercised
    // on the CPU where libtorch runs bf16 too.
    let dir = reference_dir();
    let io = common::load_tensors(&dir.join("sdxl_io.safetensors"));
    let pipeline = Pipeline::load(&ModelChoice::new(
        dir.join("sdxl.safetensors"),
        DeviceSpec::Cpu,
        DType::Bf16,
    ))
    .unwrap();
    let latents = pipeline.sample_latents(&params(), &mut |_| {}).unwrap();
    assert_eq!(
        latents.kind(),
        tch::Kind::Float,
        "latents stay fp32 between steps"
    );
    // bf16 keeps 8 mantissa bits (~4e-3 per rounding); through 4 steps of CFG it measured
    // 2.6e-2 (latents) and 3.6e-2 (image) here. A wrong cast (fp16 timesteps, a
    // mismatched VAE kind) shows up as an error, a NaN or a jump far past these.
    common::assert_close("sdxl bf16 final latents", &latents, &io["latents"], 5e-2);
    let image = pipeline.decode_to_tensor(&latents).unwrap();
    assert!(
        image.isfinite().all().int64_value(&[]) == 1,
        "NaN or inf in the decode"
    );
    common::assert_close("sdxl bf16 decoded image", &image, &io["image"], 5e-2);
}

#[test]
fn prompt_and_negative_of_different_lengths_share_a_batch() {
    // 154 tokens of prompt against a 77-token negative: the shorter context is repeated to
    // the common length, as ComfyUI does, and the longer prompt changes the result.
    let pipeline = load(&reference_dir().join("sd1.safetensors"));
    let long = GenerationParams {
        prompt: vec!["lighthouse"; 100].join(" "),
        steps: 2,
        ..params()
    };
    let short = GenerationParams {
        prompt: vec!["lighthouse"; 70].join(" "),
        steps: 2,
        ..params()
    };
    let a = pipeline.sample_latents(&long, &mut |_| {}).unwrap();
    let b = pipeline.sample_latents(&short, &mut |_| {}).unwrap();
    assert!(a.isfinite().all().int64_value(&[]) == 1);
    assert!(common::relative_error(&a, &b) > 1e-4);
}
