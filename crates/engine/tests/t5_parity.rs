//! Parity of the T5 encoder with transformers' T5EncoderModel: tiny seeded random models
//! (tests/reference/t5_ref.py) in transformers' layout and under a combined file's prefix,
//! gated-GELU and ReLU, with padding masked and not, in float32 and bfloat16.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, load_tensors, reference_once};
use imagelab_engine::t5::{encoder_view, FeedForward, T5Config, T5Encoder};
use imagelab_engine::weights::{WeightFile, Weights};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;

fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    reference_once(&DIR, "t5_ref.py")
}

fn expected() -> HashMap<String, Tensor> {
    load_tensors(&reference().join("expected.safetensors"))
}

fn open(file: &str) -> Weights {
    Weights::from_file(WeightFile::open(&reference().join(file)).unwrap())
}

fn load(w: &Weights) -> T5Encoder {
    let view = encoder_view(w).expect("a T5 encoder");
    let cfg = T5Config::detect(&view).unwrap();
    T5Encoder::load(&view, &cfg).unwrap()
}

#[test]
fn detects_the_shape_from_the_tensors() {
    let view = encoder_view(&open("gated_hf/model.safetensors")).unwrap();
    let cfg = T5Config::detect(&view).unwrap();
    assert_eq!(
        (cfg.vocab, cfg.d_model, cfg.heads, cfg.head_dim, cfg.d_ff),
        (500, 64, 4, 16, 96)
    );
    assert_eq!((cfg.layers, cfg.buckets), (3, 8));
    assert_eq!(cfg.feed_forward, FeedForward::GatedGelu);
    let relu = T5Config::detect(&open("relu.safetensors")).unwrap();
    assert_eq!(relu.feed_forward, FeedForward::Relu);
}

#[test]
fn gated_gelu_encoder_matches_transformers_with_and_without_padding_masked() {
    let exp = expected();
    let enc = load(&open("gated_hf/model.safetensors"));
    let out = enc.encode(&exp["tokens"], &exp["mask"]).unwrap();
    assert_close("gated, padding masked", &out.hidden, &exp["gated"], TOL);
    let everything = exp["mask"].ones_like();
    let out = enc.encode(&exp["tokens"], &everything).unwrap();
    assert_close(
        "gated, nothing masked",
        &out.hidden,
        &exp["gated_unmasked"],
        TOL,
    );
}

#[test]
fn the_mask_changes_the_output_so_the_comparison_can_fail() {
    let exp = expected();
    let masked = &exp["gated"];
    let unmasked = &exp["gated_unmasked"];
    let err = common::relative_error(masked, unmasked);
    println!("masked vs unmasked reference: {err:.3e}");
    assert!(err > 1e-2, "the reference's mask must matter ({err:.3e})");
}

#[test]
fn relu_encoder_matches_transformers() {
    let exp = expected();
    let enc = load(&open("relu.safetensors"));
    let out = enc.encode(&exp["tokens"], &exp["mask"]).unwrap();
    assert_close("relu", &out.hidden, &exp["relu"], TOL);
}

#[test]
fn a_prefixed_copy_in_a_combined_file_loads_the_same() {
    let exp = expected();
    let w = open("gated_prefixed.safetensors");
    let enc = load(&w);
    let out = enc.encode(&exp["tokens"], &exp["mask"]).unwrap();
    assert_close("gated under a prefix", &out.hidden, &exp["gated"], TOL);
}

#[test]
fn bfloat16_weights_stay_close_to_float32() {
    let exp = expected();
    let w = open("gated_hf/model.safetensors").to(Device::Cpu, Kind::BFloat16);
    let enc = load(&w);
    let out = enc.encode(&exp["tokens"], &exp["mask"]).unwrap();
    assert_eq!(out.hidden.kind(), Kind::BFloat16);
    // With the residual stream and `wo` in float32, bf16 weights must do no worse than
    // transformers' own bf16 run (which rounds the stream at every block).
    let ours = common::relative_error(&out.hidden, &exp["gated"]);
    let theirs = common::relative_error(&exp["gated_bf16"], &exp["gated"]);
    println!("bf16 vs f32: ours {ours:.3e}, transformers {theirs:.3e}");
    assert!(ours < 3e-2, "bf16 drifted {ours:.3e} from float32");
    assert!(
        ours <= theirs * 1.5,
        "ours {ours:.3e} vs transformers {theirs:.3e}"
    );
}

#[test]
fn a_file_without_t5_is_not_taken_for_one() {
    let w = open("expected.safetensors");
    assert!(encoder_view(&w).is_none());
}

#[test]
fn a_sharded_text_encoder_folder_loads_the_same() {
    let exp = expected();
    let view = imagelab_engine::t5::open_encoder_dir(&reference().join("gated_sharded")).unwrap();
    let enc = T5Encoder::load(&view, &T5Config::detect(&view).unwrap()).unwrap();
    let out = enc.encode(&exp["tokens"], &exp["mask"]).unwrap();
    assert_close("gated, from 10 shards", &out.hidden, &exp["gated"], TOL);
    // A folder holding something else is said to hold no T5; an empty one names the index.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        reference().join("expected.safetensors"),
        other.path().join("model.safetensors"),
    )
    .unwrap();
    let err = imagelab_engine::t5::open_encoder_dir(other.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no T5 encoder tensors"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = imagelab_engine::t5::open_encoder_dir(empty.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors.index.json"), "{err}");
}
