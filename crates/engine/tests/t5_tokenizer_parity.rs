//! Parity of the T5 tokenizer with transformers' T5Tokenizer on a sentencepiece unigram
//! model trained at test time (tests/reference/t5_tokenizer_ref.py): from `spiece.model`
//! and from `tokenizer.json`, padded to 300 and truncated to 16 (keeping `</s>`), on
//! empty, cased, NFKC, non-ASCII, unknown-glyph and repeated-space prompts.
#![allow(clippy::unwrap_used)]

mod common;

use common::reference_once;
use imagelab_engine::t5::T5Tokenizer;
use imagelab_engine::EngineError;
use std::path::Path;
use std::sync::OnceLock;

fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    reference_once(&DIR, "t5_tokenizer_ref.py")
}

struct Case {
    text: String,
    ids: Vec<u32>,
    mask: Vec<u32>,
}

fn cases(length: usize) -> Vec<Case> {
    let text = std::fs::read_to_string(reference().join("expected.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let numbers = |v: &serde_json::Value| -> Vec<u32> {
        let list = v.as_array().unwrap();
        list.iter().map(|n| n.as_u64().unwrap() as u32).collect()
    };
    json[length.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| Case {
            text: row["text"].as_str().unwrap().to_string(),
            ids: numbers(&row["ids"]),
            mask: numbers(&row["mask"]),
        })
        .collect()
}

fn check(folder: &str, length: usize) {
    let tokenizer = T5Tokenizer::find(&reference().join(folder), length).unwrap();
    let cases = cases(length);
    assert_eq!(cases.len(), 10);
    for case in cases {
        let (ids, mask) = tokenizer.encode_ids(&case.text).unwrap();
        assert_eq!(
            ids, case.ids,
            "{folder}, length {length}: ids of {:?}",
            case.text
        );
        assert_eq!(
            mask, case.mask,
            "{folder}, length {length}: mask of {:?}",
            case.text
        );
    }
}

#[test]
fn spiece_model_gives_transformers_ids_padded_to_300() {
    check("spm", 300);
}

#[test]
fn spiece_model_truncates_keeping_the_end_token() {
    check("spm", 16);
    let tokenizer = T5Tokenizer::find(&reference().join("spm"), 16).unwrap();
    let long = "golden light over the misty mountain river ".repeat(5);
    let (ids, mask) = tokenizer.encode_ids(&long).unwrap();
    assert_eq!((ids.len(), ids[15], mask.iter().sum::<u32>()), (16, 1, 16));
}

#[test]
fn tokenizer_json_gives_the_same_ids() {
    check("json", 300);
    check("json", 16);
}

#[test]
fn the_batch_tensor_holds_each_prompts_ids_and_mask() {
    let tokenizer = T5Tokenizer::find(&reference().join("spm"), 300).unwrap();
    let (ids, mask) = tokenizer.encode(&["", "a photo of a cat"]).unwrap();
    assert_eq!(ids.size(), [2, 300]);
    let want = cases(300);
    let row: Vec<i64> = Vec::try_from(ids.get(1)).unwrap();
    assert_eq!(
        row,
        want[1]
            .ids
            .iter()
            .map(|&i| i64::from(i))
            .collect::<Vec<_>>()
    );
    assert_eq!(mask.sum(tch::Kind::Int64).int64_value(&[]), 1 + 11);
}

#[test]
fn a_broken_or_missing_tokenizer_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    match T5Tokenizer::find(dir.path(), 300) {
        Err(EngineError::BadTokenizer { path, reason }) => {
            assert_eq!(path, dir.path());
            assert!(reason.contains("spiece.model"), "{reason}");
        }
        other => panic!("expected BadTokenizer, got {other:?}"),
    }
    let broken = dir.path().join("spiece.model");
    std::fs::write(&broken, b"\xff\xff\xff not a protobuf").unwrap();
    let err = T5Tokenizer::find(dir.path(), 300).unwrap_err().to_string();
    assert!(err.contains(&broken.display().to_string()), "{err}");
    let json = dir.path().join("tokenizer.json");
    std::fs::remove_file(&broken).unwrap();
    std::fs::write(&json, b"{\"model\": 3}").unwrap();
    let err = T5Tokenizer::find(dir.path(), 300).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn word_by_word_tokenizing_as_comfyui_gives_the_same_ids_for_plain_prompts() {
    // The pipeline tokenizes each space-separated word alone (ComfyUI's way, so emphasis
    // can weight words); for prompts without emphasis syntax that must change nothing.
    for length in [300, 16] {
        let tokenizer = T5Tokenizer::find(&reference().join("spm"), length).unwrap();
        for case in cases(length) {
            let tokens = tokenizer.encode_weighted(&case.text).unwrap();
            let ids: Vec<u32> = Vec::<i64>::try_from(tokens.ids.flatten(0, -1))
                .unwrap()
                .into_iter()
                .map(|id| id as u32)
                .collect();
            assert_eq!(ids, case.ids, "length {length}: ids of {:?}", case.text);
            let real = case.mask.iter().filter(|&&m| m == 1).count();
            assert_eq!(tokens.weights, vec![1.0; real], "{:?}", case.text);
        }
    }
}
