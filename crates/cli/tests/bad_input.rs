//! `imagelab generate` on bad input: each case gets one clear message naming the file,
//! field or value, a non-zero exit, no panic and no file written.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;
use tch::Tensor;

mod common;

use common::Sandbox;

fn run(sb: &Sandbox, args: &[&str]) -> Output {
    sb.generate().args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean failure: non-zero exit, the expected words, no panic, nothing written.
fn assert_refused(sandbox: &Sandbox, out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    assert!(sandbox.outputs().is_empty(), "an output file was written");
}

fn write_tensors(path: &Path, tensors: &[(&str, Tensor)]) {
    Tensor::write_safetensors(tensors, path).unwrap();
}

#[test]
fn without_any_checkpoint_it_explains_where_to_put_one() {
    let sb = Sandbox::new();
    let out = run(&sb, &["--prompt", "a lighthouse"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("models/checkpoints") && err.contains(".safetensors"),
        "{err}"
    );
}

#[test]
fn pickle_checkpoints_are_refused_with_a_hint() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("models/checkpoints/old.ckpt"), b"\x80\x02}q\x00.").unwrap();
    let out = run(&sb, &["--model", "old.ckpt", "--device", "cpu"]);
    assert_refused(&sb, &out, &["old.ckpt", "pickle", "safetensors"]);
    // Pickle content under a .safetensors name is refused too.
    std::fs::write(
        sb.path("models/checkpoints/sneaky.safetensors"),
        b"\x80\x02}q\x00.",
    )
    .unwrap();
    let out = run(&sb, &["--model", "sneaky", "--device", "cpu"]);
    assert_refused(&sb, &out, &["sneaky.safetensors", "pickle"]);
}

#[test]
fn truncated_and_corrupt_safetensors_name_the_file() {
    let sb = Sandbox::new();
    let good = sb.path("models/checkpoints/good.safetensors");
    write_tensors(
        &good,
        &[(
            "model.diffusion_model.input_blocks.0.0.weight",
            Tensor::zeros([8, 4, 3, 3], tch::kind::FLOAT_CPU),
        )],
    );
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(
        sb.path("models/checkpoints/cut.safetensors"),
        &bytes[..bytes.len() - 100],
    )
    .unwrap();
    let out = run(&sb, &["--model", "cut", "--device", "cpu"]);
    assert_refused(&sb, &out, &["cut.safetensors", "not a valid safetensors"]);
    std::fs::write(
        sb.path("models/checkpoints/junk.safetensors"),
        b"this is not a model at all",
    )
    .unwrap();
    let out = run(&sb, &["--model", "junk", "--device", "cpu"]);
    assert_refused(&sb, &out, &["junk.safetensors", "not a valid safetensors"]);
    std::fs::write(sb.path("models/checkpoints/empty.safetensors"), b"").unwrap();
    let out = run(&sb, &["--model", "empty", "--device", "cpu"]);
    assert_refused(&sb, &out, &["empty.safetensors"]);
}

#[test]
fn unknown_architectures_are_named() {
    let sb = Sandbox::new();
    write_tensors(
        &sb.path("models/checkpoints/lora.safetensors"),
        &[(
            "lora_unet_down.weight",
            Tensor::zeros([4, 4], tch::kind::FLOAT_CPU),
        )],
    );
    let out = run(&sb, &["--model", "lora", "--device", "cpu"]);
    assert_refused(
        &sb,
        &out,
        &["lora.safetensors", "unknown model architecture", "no UNet"],
    );
    write_tensors(
        &sb.path("models/checkpoints/odd.safetensors"),
        &[
            (
                "model.diffusion_model.input_blocks.0.0.weight",
                Tensor::zeros([8, 4, 3, 3], tch::kind::FLOAT_CPU),
            ),
            (
                "model.diffusion_model.x.attn2.to_k.weight",
                Tensor::zeros([8, 512], tch::kind::FLOAT_CPU),
            ),
        ],
    );
    let out = run(&sb, &["--model", "odd", "--device", "cpu"]);
    assert_refused(&sb, &out, &["odd.safetensors", "cross-attention width 512"]);
    write_tensors(
        &sb.path("models/checkpoints/inpaint.safetensors"),
        &[
            (
                "model.diffusion_model.input_blocks.0.0.weight",
                Tensor::zeros([8, 9, 3, 3], tch::kind::FLOAT_CPU),
            ),
            (
                "model.diffusion_model.x.attn2.to_k.weight",
                Tensor::zeros([8, 768], tch::kind::FLOAT_CPU),
            ),
        ],
    );
    let out = run(&sb, &["--model", "inpaint", "--device", "cpu"]);
    assert_refused(&sb, &out, &["inpaint.safetensors", "9-channel"]);
    let out = run(&sb, &["--model", "odd", "--device", "cpu"]);
    assert_refused(&sb, &out, &["odd.safetensors", "cross-attention width 512"]);
}

#[test]
fn bad_parameters_name_the_field_and_value() {
    let sb = Sandbox::new();
    write_tensors(
        &sb.path("models/checkpoints/m.safetensors"),
        &[("x", Tensor::zeros([1], tch::kind::FLOAT_CPU))],
    );
    let out = run(&sb, &["--model", "m", "--width", "7"]);
    assert_refused(&sb, &out, &["width 7", "multiple of 8"]);
    let out = run(&sb, &["--model", "m", "--height", "100000"]);
    assert_refused(&sb, &out, &["height 100000"]);
    let out = run(&sb, &["--model", "m", "--sampler", "eulerr"]);
    assert_refused(&sb, &out, &["sampler \"eulerr\"", "dpmpp_2m"]);
    let out = run(&sb, &["--model", "m", "--scheduler", "fast"]);
    assert_refused(&sb, &out, &["scheduler \"fast\"", "karras"]);
    let out = run(&sb, &["--model", "m", "--device", "cpu", "--dtype", "fp16"]);
    assert_refused(&sb, &out, &["dtype fp16", "CPU"]);
    let out = run(&sb, &["--model", "m", "--batch", "100000"]);
    assert_refused(&sb, &out, &["batch 100000"]);
}

#[test]
fn names_with_dotdot_and_missing_models_are_refused() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("secret.safetensors"), b"x").unwrap();
    std::fs::write(sb.path("models/checkpoints/m.safetensors"), b"x").unwrap();
    let out = run(
        &sb,
        &["--model", "../../secret.safetensors", "--device", "cpu"],
    );
    assert_refused(&sb, &out, &["..", "secret"]);
    let out = run(
        &sb,
        &["--model", "m", "--vae", "../secret", "--device", "cpu"],
    );
    assert_refused(&sb, &out, &["vae", ".."]);
    let out = run(&sb, &["--model", "nothere", "--device", "cpu"]);
    assert_refused(&sb, &out, &["\"nothere\"", "not found"]);
}

#[test]
fn submit_refuses_memory_flags_that_only_generate_can_apply() {
    let sb = Sandbox::new();
    let out = sb
        .imagelab()
        .args([
            "submit",
            "--prompt",
            "x",
            "--low-vram",
            "--offload",
            "model",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    for needle in ["--low-vram", "--offload", "memory:"] {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    // Refused before any daemon is contacted: not the "not running" message.
    assert!(!err.contains("not running"), "{err}");
    // The IMAGELAB_* variables a headless setup exports for generate are not refused:
    // this submit gets as far as looking for the daemon.
    let out = sb
        .imagelab()
        .args(["submit", "--prompt", "x", "--model", "sd1"])
        .env("IMAGELAB_VAE_TILING", "on")
        .env("IMAGELAB_LOW_VRAM", "1")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        !err.contains("memory:") && err.contains("not running"),
        "{err}"
    );
}
