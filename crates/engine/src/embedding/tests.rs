//! Unit tests of embedding files and of finding them in prompts.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::tokenizer::EmbeddingLookup;
use std::rc::Rc;

fn write(path: &Path, tensors: &[(&str, &[i64])]) {
    let owned: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(name, shape)| {
            (
                name.to_string(),
                Tensor::randn(*shape, (Kind::Float, Device::Cpu)),
            )
        })
        .collect();
    Tensor::write_safetensors(&owned, path).unwrap();
}

#[test]
fn reads_each_layout_and_checks_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let sd1 = dir.path().join("a.safetensors");
    write(&sd1, &[("emb_params", &[2, 8])]);
    let e = Embedding::open(&sd1).unwrap();
    assert_eq!((e.name.as_str(), e.count()), ("a", 2));
    assert_eq!(
        e.vectors_for(ClipRole::Sd1ClipL, 8).unwrap().size(),
        vec![2, 8]
    );
    let wrong = e
        .vectors_for(ClipRole::Sd1ClipL, 16)
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("a.safetensors") && wrong.contains("width 16"),
        "{wrong}"
    );
    assert!(e.vectors_for(ClipRole::SdxlClipL, 8).is_err());

    let a1111 = dir.path().join("b.safetensors");
    write(&a1111, &[("string_to_param.*", &[8])]);
    assert_eq!(Embedding::open(&a1111).unwrap().count(), 1);

    let sdxl = dir.path().join("c.safetensors");
    write(&sdxl, &[("clip_l", &[3, 8]), ("clip_g", &[3, 16])]);
    let e = Embedding::open(&sdxl).unwrap();
    assert_eq!(
        e.vectors_for(ClipRole::SdxlOpenClipG, 16).unwrap().size(),
        vec![3, 16]
    );
    let on_sd1 = e
        .vectors_for(ClipRole::Sd1ClipL, 8)
        .unwrap_err()
        .to_string();
    assert!(on_sd1.contains("for sdxl"), "{on_sd1}");
}

#[test]
fn refuses_what_is_not_an_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let uneven = dir.path().join("uneven.safetensors");
    write(&uneven, &[("clip_l", &[3, 8]), ("clip_g", &[2, 16])]);
    let err = Embedding::open(&uneven).unwrap_err().to_string();
    assert!(
        err.contains("uneven.safetensors") && err.contains("clip_g 2"),
        "{err}"
    );
    let two = dir.path().join("two.safetensors");
    write(&two, &[("x", &[1, 8]), ("y", &[1, 8])]);
    let err = Embedding::open(&two).unwrap_err().to_string();
    assert!(err.contains("found x, y"), "{err}");
    let huge = dir.path().join("huge.safetensors");
    write(&huge, &[("emb_params", &[76, 8])]);
    assert!(Embedding::open(&huge)
        .unwrap_err()
        .to_string()
        .contains("[76, 8]"));
    let broken = dir.path().join("broken.safetensors");
    std::fs::write(&broken, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap();
    assert!(Embedding::open(&broken)
        .unwrap_err()
        .to_string()
        .contains("broken"));
}

#[test]
fn prompts_name_embeddings_explicitly_or_bare() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Ink.safetensors"),
        &[("emb_params", &[2, 8])],
    );
    std::fs::write(dir.path().join("old.pt"), b"\x80\x02pickle").unwrap();
    let mut library = EmbeddingLibrary::new(Some(dir.path().to_path_buf()));
    let mut found = library.for_prompt();
    let ink = found.lookup("embedding:ink.safetensors,").unwrap().unwrap();
    assert_eq!((ink.embedding, ink.count, ink.rest.as_str()), (0, 2, ","));
    let bare = found.lookup("INK").unwrap().unwrap();
    assert_eq!((bare.embedding, bare.rest.as_str()), (0, ""));
    assert_eq!(found.lookup("inkwell").unwrap(), None);
    assert_eq!(found.used().len(), 1);
    let missing = found.lookup("embedding:nope").unwrap_err().to_string();
    assert!(
        missing.contains("nope") && missing.contains("available: Ink, old"),
        "{missing}"
    );
    let pickle = found.lookup("embedding:old").unwrap_err().to_string();
    assert!(pickle.contains("pickle"), "{pickle}");
    let first = found.used()[0].clone();
    // A second prompt reuses the file read for the first.
    let mut again = library.for_prompt();
    again.lookup("ink").unwrap();
    assert!(Rc::ptr_eq(&first, &again.used()[0]));

    let mut none = EmbeddingLibrary::new(None);
    let mut found = none.for_prompt();
    assert_eq!(found.lookup("ink").unwrap(), None);
    let err = found.lookup("embedding:ink").unwrap_err().to_string();
    assert!(err.contains("no") && err.contains("folder"), "{err}");
}
