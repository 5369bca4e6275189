//! PixArt-Σ's text conditioning (`pipeline::t5_text`): a prompt through the T5 tokenizer
//! and encoder of the reference tests, and the cache of recent prompts that lets a
//! repeated prompt skip T5.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, reference_once};
use imagelab_engine::pipeline::t5_text::{PromptCacheStats, T5Text};
use imagelab_engine::t5::{encoder_view, T5Config, T5Encoder, T5Tokenizer};
use imagelab_engine::weights::{WeightFile, Weights};
use std::path::Path;
use std::sync::OnceLock;
use tch::Device;

fn tokenizer_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    reference_once(&DIR, "t5_tokenizer_ref.py")
}

fn encoder() -> T5Encoder {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = reference_once(&DIR, "t5_ref.py");
    let file = WeightFile::open(&dir.join("gated_hf/model.safetensors")).unwrap();
    let view = encoder_view(&Weights::from_file(file)).unwrap();
    T5Encoder::load(&view, &T5Config::detect(&view).unwrap()).unwrap()
}

fn text(capacity: usize) -> T5Text {
    let tokenizer = T5Tokenizer::find(&tokenizer_dir().join("spm"), 300).unwrap();
    T5Text::new(tokenizer, capacity)
}

const PROMPT: &str = "A Photo Of A Cat, cinematic";

#[test]
fn a_prompt_becomes_the_encoders_output_with_its_mask() {
    let encoder = encoder();
    let text = text(4);
    let got = text.guidance(&encoder, PROMPT, Device::Cpu).unwrap();
    let tokenizer = T5Tokenizer::find(&tokenizer_dir().join("spm"), 300).unwrap();
    let (ids, mask) = tokenizer.encode(&[PROMPT]).unwrap();
    let want = tch::no_grad(|| encoder.encode(&ids, &mask)).unwrap().hidden;
    assert_eq!(got.context.size(), [1, 300, 64]);
    assert_close("context", &got.context, &want, 0.0);
    assert!(got.mask.unwrap().equal(&mask));
    assert!(got.vector.is_none());
    // Cased text is kept as is: the lower-cased prompt is another conditioning.
    let lower = text
        .guidance(&encoder, &PROMPT.to_lowercase(), Device::Cpu)
        .unwrap();
    assert!(common::relative_error(&lower.context, &want) > 1e-2);
}

#[test]
fn a_repeated_prompt_skips_t5_and_gives_the_same_context() {
    let encoder = encoder();
    let text = text(4);
    let first = text.guidance(&encoder, PROMPT, Device::Cpu).unwrap();
    let again = text.guidance(&encoder, PROMPT, Device::Cpu).unwrap();
    assert_eq!(text.stats(), PromptCacheStats { hits: 1, misses: 1 });
    assert!(again.context.equal(&first.context));
    assert!(again.mask.unwrap().equal(&first.mask.unwrap()));
}

#[test]
fn the_least_recently_used_prompt_leaves_a_full_cache() {
    let encoder = encoder();
    let text = text(2);
    for prompt in ["one", "two", "one", "three"] {
        text.guidance(&encoder, prompt, Device::Cpu).unwrap();
    }
    // "one" was used after "two", so "two" left when "three" came.
    assert_eq!(text.stats(), PromptCacheStats { hits: 1, misses: 3 });
    text.guidance(&encoder, "one", Device::Cpu).unwrap();
    assert_eq!(text.stats().hits, 2);
    text.guidance(&encoder, "two", Device::Cpu).unwrap();
    assert_eq!(text.stats().misses, 4);
    // Without room, nothing is kept.
    let none = self::text(0);
    none.guidance(&encoder, "one", Device::Cpu).unwrap();
    none.guidance(&encoder, "one", Device::Cpu).unwrap();
    assert_eq!(none.stats(), PromptCacheStats { hits: 0, misses: 2 });
}
