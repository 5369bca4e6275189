//! Unit tests of the safetensors reader: pickle refusal, odd headers, truncation.
#![allow(clippy::unwrap_used)]
use super::*;

fn safetensors_with_header_len(len: u64) -> Vec<u8> {
    let json = b"{}";
    let mut header = json.to_vec();
    header.resize(len as usize, b' ');
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend(header);
    bytes
}

#[test]
fn a_header_length_starting_with_0x80_is_not_a_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    std::fs::write(&path, safetensors_with_header_len(0x1780)).unwrap();
    let file = WeightFile::open(&path).unwrap();
    assert!(file.shapes().is_empty());
}

#[test]
fn pickle_and_zip_content_is_refused_whatever_the_name() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("a.safetensors", &b"\x80\x02}q\x00.........."[..]),
        ("b.safetensors", b"PK\x03\x04zipzipzipzip"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = WeightFile::open(&path).unwrap_err();
        assert!(matches!(err, EngineError::PickleRefused { .. }), "{err}");
    }
    for ext in ["ckpt", "pt", "pth", "bin"] {
        let err = refuse_pickle(Path::new(&format!("m.{ext}")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("never unpickles") && err.contains("safetensors"),
            "{err}"
        );
    }
}

#[test]
fn truncated_files_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    Tensor::write_safetensors(
        &[("w", Tensor::zeros([64], (Kind::Float, Device::Cpu)))],
        &path,
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let err = WeightFile::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("t.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
}
