//! LoRAs against diffusers: random PEFT LoRAs for the tiny SD 1.x and SDXL models, in the
//! kohya layout (diffusers and LDM module names, LoCon convolutions, alpha) and in the
//! diffusers / PEFT layout, loaded by `load_lora_weights` and run at a scale, prompt to
//! latents; merging and restoring is exact; bad LoRAs are clear errors.
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_core::lora::LoraRef;
use imagelab_core::memory::Offload;
use imagelab_core::{DType, DeviceSpec, GenerationParams};
use imagelab_engine::lora::LoraApplication;
use imagelab_engine::pipeline::{ModelChoice, Pipeline};
use imagelab_engine::EngineError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::Tensor;

/// Runs the reference once for all tests in this file.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    common::reference_once(&DIR, "lora_ref.py")
}

fn load(name: &str) -> Pipeline {
    let path = reference_dir().join(format!("{name}.safetensors"));
    Pipeline::load(&ModelChoice::new(path, DeviceSpec::Cpu, DType::Fp32)).unwrap()
}

fn lora(name: &str, weight: f64) -> LoraApplication {
    LoraApplication {
        name: name.into(),
        path: reference_dir().join(format!("{name}.safetensors")),
        unet_weight: weight,
        te_weight: weight,
    }
}

fn params(loras: &[LoraApplication]) -> GenerationParams {
    GenerationParams {
        loras: loras
            .iter()
            .map(|l| LoraRef {
                name: l.name.clone(),
                weight: l.unet_weight,
                te_weight: Some(l.te_weight),
            })
            .collect(),
        ..common::pipeline_ref_params()
    }
}

fn latents(pipeline: &Pipeline, loras: &[LoraApplication]) -> Tensor {
    pipeline.set_loras(loras).unwrap();
    pipeline
        .sample_latents(&params(loras), &mut |_| {})
        .unwrap()
}

fn check_case(base: &str, case: &str) {
    let io = common::load_tensors(&reference_dir().join(format!("{case}_io.safetensors")));
    let scale = io["scale"].double_value(&[]);
    let pipeline = load(base);
    let without = latents(&pipeline, &[]);
    let with = latents(&pipeline, &[lora(case, scale)]);
    common::assert_close(&format!("{case} latents"), &with, &io["latents"], 1e-4);
    // The LoRA must matter, or the comparison above proves nothing.
    let moved = common::relative_error(&without, &io["latents"]);
    assert!(
        moved > 0.05,
        "{case}: the LoRA changes the latents by only {moved}"
    );
}

#[test]
fn sd1_kohya_lora_with_locon_convolutions_matches_diffusers() {
    check_case("sd1", "sd1_kohya");
}

#[test]
fn sd1_diffusers_layout_lora_matches_diffusers() {
    check_case("sd1", "sd1_peft");
}

#[test]
fn sdxl_kohya_lora_with_ldm_names_and_both_text_encoders_matches_diffusers() {
    check_case("sdxl", "sdxl_kohya");
}

#[test]
fn merging_and_restoring_is_exact() {
    let pipeline = load("sd1");
    let base = latents(&pipeline, &[]);
    let a = [lora("sd1_kohya", 0.7)];
    let b = [lora("sd1_peft", 1.0), lora("sd1_kohya", -0.3)];
    let first_a = latents(&pipeline, &a);
    let _ = latents(&pipeline, &b);
    let again_a = latents(&pipeline, &a);
    assert!(first_a.equal(&again_a), "A, B, A differs from A");
    let fresh = load("sd1");
    assert!(
        latents(&fresh, &a).equal(&first_a),
        "A differs from a fresh load with A"
    );
    assert!(
        latents(&pipeline, &[]).equal(&base),
        "removing the LoRAs left a trace"
    );
    assert!(
        latents(&pipeline, &[lora("sd1_kohya", 0.0)]).equal(&base),
        "weight 0 differs from no LoRA"
    );
    assert_eq!(pipeline.applied_loras(), [lora("sd1_kohya", 0.0)]);
}

#[test]
fn a_prompt_tag_is_the_same_lora_and_leaves_the_encoded_text() {
    let pipeline = load("sd1");
    let listed = latents(&pipeline, &[lora("sd1_kohya", 0.7)]);
    let mut tagged = params(&[]);
    tagged.prompt.push_str("<lora:sd1_kohya:0.7>");
    // The tag alone, unmerged, is refused: an image must never silently lack its LoRA.
    pipeline.set_loras(&[]).unwrap();
    let err = pipeline.sample_latents(&tagged, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("sd1_kohya"), "{err}");
    let folder = reference_dir();
    let resolved =
        imagelab_engine::lora::resolve(folder, &tagged.requested_loras().unwrap()).unwrap();
    pipeline.set_loras(&resolved).unwrap();
    let from_tag = pipeline.sample_latents(&tagged, &mut |_| {}).unwrap();
    assert!(from_tag.equal(&listed));
}

fn error_of(pipeline: &Pipeline, loras: &[LoraApplication]) -> String {
    pipeline.set_loras(loras).unwrap_err().to_string()
}

#[test]
fn bad_loras_are_errors_that_name_them() {
    let sdxl = load("sdxl");
    let wrong_family = error_of(&sdxl, &[lora("sd1_kohya", 1.0)]);
    assert!(
        wrong_family.contains("sd1_kohya.safetensors") && wrong_family.contains("lora_"),
        "{wrong_family}"
    );
    assert!(
        wrong_family.contains("another model family"),
        "{wrong_family}"
    );
    // Nothing was merged: the weights are untouched and the set is empty.
    assert!(sdxl.applied_loras().is_empty());

    let missing = imagelab_engine::lora::resolve(
        reference_dir(),
        &[LoraRef::parse("no_such_lora:0.5", "--lora").unwrap()],
    )
    .unwrap_err();
    assert!(missing.to_string().contains("no_such_lora"), "{missing}");

    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("old.pt");
    std::fs::write(&pickle, [0x80u8, 0x02, 0x7d]).unwrap();
    let broken = dir.path().join("broken.safetensors");
    let bytes = std::fs::read(reference_dir().join("sd1_kohya.safetensors")).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let sd1 = load("sd1");
    for (path, expected) in [(pickle, "old.pt"), (broken.clone(), "broken.safetensors")] {
        let bad = LoraApplication {
            path: path.clone(),
            ..lora("x", 1.0)
        };
        let err = sd1.set_loras(&[bad]).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert!(
            matches!(
                err,
                EngineError::PickleRefused { .. } | EngineError::CorruptSafetensors { .. }
            ),
            "{err:?}"
        );
    }
    let bad_tag = GenerationParams {
        prompt: "a cat <lora:sd1_kohya:strong>".into(),
        ..params(&[])
    };
    let err = bad_tag.validate().unwrap_err();
    assert!(
        err.value.contains("strong") && err.field == "prompt",
        "{err:?}"
    );
}

#[test]
fn offloaded_models_refuse_loras_clearly() {
    let path: PathBuf = reference_dir().join("sd1.safetensors");
    let mut choice = ModelChoice::new(path, DeviceSpec::Cpu, DType::Fp32);
    choice.memory.offload = Offload::Model;
    let pipeline = Pipeline::load(&choice).unwrap();
    let err = error_of(&pipeline, &[lora("sd1_kohya", 1.0)]);
    assert!(err.contains("offload"), "{err}");
}
