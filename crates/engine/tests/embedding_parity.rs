//! Textual-inversion embeddings against diffusers: A1111's and SDXL's embedding files for
//! the tiny SD 1.x and SDXL models, named in prompts as ComfyUI (`embedding:name`) and
//! A1111 (the bare name) write them, against the same vectors inserted by hand as new
//! tokens in the reference, prompt to latents; weighting works on them; bad names and
//! wrong families are clear errors; the PNG records their hashes.
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_core::{DType, DeviceSpec, GenerationParams};
use imagelab_engine::pipeline::conditioning::Conditioning;
use imagelab_engine::pipeline::{ModelChoice, Pipeline};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Runs the reference once for all tests in this file.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    common::reference_once(&DIR, "embedding_ref.py")
}

fn embeddings() -> PathBuf {
    reference_dir().join("embeddings")
}

fn load(name: &str) -> Pipeline {
    let path = reference_dir().join(format!("{name}.safetensors"));
    let pipeline = Pipeline::load(&ModelChoice::new(path, DeviceSpec::Cpu, DType::Fp32)).unwrap();
    pipeline.set_embeddings_folder(Some(embeddings()));
    pipeline
}

fn params(prompt: &str, negative: &str) -> GenerationParams {
    GenerationParams {
        prompt: prompt.into(),
        negative: negative.into(),
        ..common::pipeline_ref_params()
    }
}

fn check(family: &str, prompt: &str, negative: &str) {
    let io = common::load_tensors(&reference_dir().join(format!("{family}_io.safetensors")));
    let pipeline = load(family);
    let with = pipeline
        .sample_latents(&params(prompt, negative), &mut |_| {})
        .unwrap();
    common::assert_close(&format!("{family} latents"), &with, &io["latents"], 1e-4);
    // The embeddings must matter, or the comparison above proves nothing.
    let plain = params(
        "a lighthouse at dusk, volumetric light",
        "blurry, low quality",
    );
    let without = pipeline.sample_latents(&plain, &mut |_| {}).unwrap();
    let moved = common::relative_error(&without, &io["latents"]);
    assert!(
        moved > 0.01,
        "{family}: the embeddings move the latents by only {moved}"
    );
}

#[test]
fn sd1_embeddings_by_comfyui_and_a1111_names_match_hand_inserted_tokens() {
    check(
        "sd1",
        "a lighthouse embedding:ink at dusk, volumetric light",
        "blurry, low quality, neg",
    );
}

#[test]
fn sdxl_embedding_pair_feeds_both_encoders_and_the_pooled_vector() {
    check(
        "sdxl",
        "a lighthouse embedding:xl_ink.safetensors at dusk, volumetric light",
        "blurry, low quality",
    );
}

#[test]
fn weighting_pushes_embedding_vectors_from_the_empty_prompt() {
    let pipeline = load("sd1");
    let plain = pipeline
        .encode_prompt("a lighthouse embedding:ink", None)
        .unwrap();
    let weighted = pipeline
        .encode_prompt("a lighthouse (embedding:ink:1.3)", None)
        .unwrap();
    let empty = pipeline.encode_prompt("", None).unwrap();
    // BOS, "a", "lighthouse", then the embedding's two vectors at positions 3 and 4.
    let at = |c: &Conditioning, from: i64, n: i64| c.context.narrow(1, from, n);
    let expected = (at(&plain, 3, 2) - at(&empty, 3, 2)) * 1.3 + at(&empty, 3, 2);
    common::assert_close("weighted vectors", &at(&weighted, 3, 2), &expected, 1e-5);
    common::assert_close(
        "unweighted tokens",
        &at(&weighted, 0, 3),
        &at(&plain, 0, 3),
        1e-6,
    );
    assert!(common::relative_error(&at(&weighted, 3, 2), &at(&plain, 3, 2)) > 0.01);
}

#[test]
fn bad_embeddings_are_errors_that_name_them() {
    let sdxl = load("sdxl");
    let wrong = sdxl
        .encode_prompt("embedding:ink", None)
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("ink") && wrong.contains("this one is for"),
        "{wrong}"
    );
    let missing = sdxl
        .encode_prompt("a embedding:nope, b", None)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("nope") && missing.contains("xl_ink"),
        "{missing}"
    );

    let sd1 = load("sd1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.pt"), [0x80u8, 0x02, 0x7d]).unwrap();
    let bytes = std::fs::read(embeddings().join("ink.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("broken.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    sd1.set_embeddings_folder(Some(dir.path().to_path_buf()));
    for (prompt, expected) in [
        ("embedding:old", "old.pt"),
        ("a broken cat", "broken.safetensors"),
    ] {
        let err = sd1.encode_prompt(prompt, None).unwrap_err().to_string();
        assert!(err.contains(expected), "{prompt}: {err}");
    }
    sd1.set_embeddings_folder(None);
    assert!(sd1.encode_prompt("a broken cat", None).is_ok());
}

#[test]
fn the_png_names_each_embedding_with_its_hash() {
    let pipeline = load("sd1");
    let p = params("a lighthouse embedding:ink", "neg, blurry");
    let latents = pipeline.sample_latents(&p, &mut |_| {}).unwrap();
    let image = pipeline.decode(&latents, p.seed).unwrap().remove(0);
    let png = pipeline.encode_png(&p, &image).unwrap();
    let text = String::from_utf8_lossy(&png);
    let ink = &imagelab_engine::model_hash::sha256_file(&embeddings().join("ink.safetensors"))
        .unwrap()[..12];
    let neg = &imagelab_engine::model_hash::sha256_file(&embeddings().join("neg.safetensors"))
        .unwrap()[..12];
    assert!(
        text.contains(&format!("TI hashes: \"ink: {ink}, neg: {neg}\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{{\"hash\":\"{ink}\",\"name\":\"ink\"}}")),
        "{text}"
    );
}
