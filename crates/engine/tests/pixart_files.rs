//! Finding PixArt-Σ's parts (`pixart::PixArtFiles`) in a diffusers folder and in ComfyUI's
//! layout (transformer file + `--clip` T5 + `--vae`), built from the reference tests'
//! tiny files; every missing part is an error naming what is needed.
#![allow(clippy::unwrap_used)]

mod common;

use common::reference_once;
use imagelab_engine::pixart::PixArtFiles;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn refs(script: &'static str) -> &'static Path {
    static DIRS: [OnceLock<tempfile::TempDir>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let slot = [
        "pixart_ref.py",
        "t5_ref.py",
        "t5_tokenizer_ref.py",
        "vae_ref.py",
    ]
    .iter()
    .position(|s| *s == script)
    .unwrap();
    reference_once(&DIRS[slot], script)
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// `models/` as a ComfyUI user has it: checkpoints/pixart.safetensors,
/// clip/t5.safetensors with spiece.model beside it, vae/sdxl_vae.safetensors.
fn comfy_layout(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = root.join("checkpoints/pixart.safetensors");
    let clip = root.join("clip/t5.safetensors");
    let vae = root.join("vae/sdxl_vae.safetensors");
    copy(&refs("pixart_ref.py").join("original.safetensors"), &model);
    copy(&refs("t5_ref.py").join("gated_prefixed.safetensors"), &clip);
    copy(
        &refs("t5_tokenizer_ref.py").join("spm/spiece.model"),
        &root.join("clip/spiece.model"),
    );
    copy(&refs("vae_ref.py").join("vae_diffusers.safetensors"), &vae);
    (model, clip, vae)
}

#[test]
fn comfyui_files_are_found_and_each_missing_one_is_named() {
    let root = tempfile::tempdir().unwrap();
    let (model, clip, vae) = comfy_layout(root.path());
    let files = PixArtFiles::locate(&model, Some(&clip), Some(&vae)).unwrap();
    assert!(files.transformer.contains("t_block.1.weight"));
    assert!(files
        .text_encoder
        .contains("encoder.final_layer_norm.weight"));
    assert!(files.vae.contains("decoder.conv_in.weight"));
    assert_eq!(files.tokenizer.length(), 300);
    assert!(files.transformer_config.is_none());

    let err = PixArtFiles::locate(&model, None, Some(&vae))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--clip") && err.contains("pixart.safetensors"),
        "{err}"
    );
    let err = PixArtFiles::locate(&model, Some(&clip), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--vae"), "{err}");
    // A CLIP file given as T5, and a T5 without its tokenizer.
    let not_t5 = root.path().join("clip/not_t5.safetensors");
    copy(
        &refs("vae_ref.py").join("vae_diffusers.safetensors"),
        &not_t5,
    );
    let err = PixArtFiles::locate(&model, Some(&not_t5), Some(&vae))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not_t5.safetensors") && err.contains("no T5 encoder"),
        "{err}"
    );
    std::fs::remove_file(root.path().join("clip/spiece.model")).unwrap();
    let err = PixArtFiles::locate(&model, Some(&clip), Some(&vae))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spiece.model") && err.contains("tokenizer"),
        "{err}"
    );
    // The tokenizer may also sit in a tokenizer/ folder beside the T5 file.
    copy(
        &refs("t5_tokenizer_ref.py").join("spm/spiece.model"),
        &root.path().join("clip/tokenizer/spiece.model"),
    );
    assert!(PixArtFiles::locate(&model, Some(&clip), Some(&vae)).is_ok());
}

#[test]
fn a_diffusers_folder_supplies_every_part_and_flags_override_them() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("PixArt-Sigma");
    let pixart = refs("pixart_ref.py");
    for name in ["config.json", "diffusion_pytorch_model.safetensors"] {
        copy(
            &pixart.join("sigma").join(name),
            &folder.join("transformer").join(name),
        );
    }
    let sharded = refs("t5_ref.py").join("gated_sharded");
    for entry in std::fs::read_dir(&sharded).unwrap() {
        let path = entry.unwrap().path();
        copy(
            &path,
            &folder.join("text_encoder").join(path.file_name().unwrap()),
        );
    }
    copy(
        &refs("t5_tokenizer_ref.py").join("spm/spiece.model"),
        &folder.join("tokenizer/spiece.model"),
    );
    let err = PixArtFiles::locate(&folder, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vae") && err.contains("diffusion_pytorch_model"),
        "{err}"
    );
    copy(
        &refs("vae_ref.py").join("vae_diffusers.safetensors"),
        &folder.join("vae/diffusion_pytorch_model.safetensors"),
    );
    let files = PixArtFiles::locate(&folder, None, None).unwrap();
    assert!(files.transformer.contains("adaln_single.linear.weight"));
    assert_eq!(files.transformer_config.unwrap()["num_attention_heads"], 2);
    assert!(files.text_encoder.contains("shared.weight"));
    // --clip replaces the folder's T5 (and its tokenizer comes from beside that file).
    let (_, clip, _) = comfy_layout(&root.path().join("models"));
    let files = PixArtFiles::locate(&folder, Some(&clip), None).unwrap();
    assert!(
        files.text_encoder.label().ends_with("t5.safetensors"),
        "{}",
        files.text_encoder.label()
    );
}
