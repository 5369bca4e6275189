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

/// Cards without native bf16 (V100, T4) run T5 in fp16. In T5-XXL the feed-forward's gated
/// product outgrows fp16 (65504); here the test model's feed-forward is scaled until it does
/// (norm weights ×40, `wi` ×4), and fp16 weights must still give float32's output: the
/// product, `wo` and the residual stream are taken in float32.
#[test]
fn fp16_weights_hold_where_the_feed_forward_outgrows_fp16() {
    let exp = expected();
    let mut tensors: Vec<(String, Tensor)> =
        common::load_tensors(&reference().join("gated_hf/model.safetensors"))
            .into_iter()
            .collect();
    for (name, tensor) in &mut tensors {
        if name.ends_with("layer.1.layer_norm.weight") {
            *tensor = &*tensor * 40.0;
        } else if name.contains("DenseReluDense.wi_") {
            *tensor = &*tensor * 4.0;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loud.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let file = || Weights::from_file(WeightFile::open(&path).unwrap());
    let full = load(&file())
        .encode(&exp["tokens"], &exp["mask"])
        .unwrap()
        .hidden;
    let half = load(&file().to(Device::Cpu, Kind::Half))
        .encode(&exp["tokens"], &exp["mask"])
        .unwrap()
        .hidden;
    assert_eq!(half.kind(), Kind::Half);
    let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
    assert!(finite(&full), "the float32 output is not finite");
    assert!(finite(&half), "fp16 T5 overflowed");
    let err = common::relative_error(&half, &full);
    println!("fp16 vs f32 with a feed-forward past fp16's range: {err:.3e}");
    assert!(err < 2e-2, "fp16 drifted {err:.3e} from float32");
}

/// Offloaded T5 reads its blocks one at a time as the encoding reaches each (so T5-XXL's
/// 9.5 GB are never on the card at once): the output is the loaded encoder's, bit for bit.
#[test]
fn streamed_blocks_give_the_loaded_output() {
    let exp = expected();
    let view = encoder_view(&open("gated_hf/model.safetensors")).unwrap();
    let cfg = T5Config::detect(&view).unwrap();
    let loaded = T5Encoder::load(&view, &cfg).unwrap();
    let streamed = T5Encoder::streamed(&view, &cfg).unwrap();
    let a = loaded.encode(&exp["tokens"], &exp["mask"]).unwrap().hidden;
    let b = streamed
        .encode(&exp["tokens"], &exp["mask"])
        .unwrap()
        .hidden;
    assert!(a.equal(&b), "streamed blocks changed the output");
    assert_close("streamed", &b, &exp["gated"], TOL);
    T5Encoder::check_blocks(&view, &cfg).unwrap();
}
