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

/// A file whose tensor data starts `misalign` bytes past an 8-byte boundary.
fn f32_file_with_offset(path: &Path, values: &[f32], misalign: usize) {
    let n = values.len() * 4;
    let json = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{}],"data_offsets":[0,{n}]}}}}"#,
        values.len()
    );
    let mut header = json.into_bytes();
    // Pad with spaces so 8 + header length ≡ misalign (mod 8).
    while (8 + header.len()) % 8 != misalign {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    for v in values {
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cpu_tensors_own_their_storage_and_outlive_the_map() {
    let dir = tempfile::tempdir().unwrap();
    for misalign in [0, 1, 2, 4] {
        let path = dir.path().join(format!("m{misalign}.safetensors"));
        f32_file_with_offset(&path, &[1.0, 2.0, 3.0], misalign);
        for kind in [Kind::Float, Kind::Half, Kind::BFloat16] {
            let w = Weights::from_file(WeightFile::open(&path).unwrap()).to(Device::Cpu, kind);
            let mut t = w.get("w").unwrap();
            assert_eq!(t.kind(), kind);
            drop(w); // the map is gone; the tensor must not point into it
                     // Writing would fault on the read-only map if the tensor aliased it.
            let _ = t.f_add_scalar_(1.0).unwrap();
            let got: Vec<f32> = Vec::try_from(&t.to_kind(Kind::Float)).unwrap();
            assert_eq!(got, [2.0, 3.0, 4.0], "misalign {misalign}, {kind:?}");
        }
    }
}

#[test]
fn counted_views_add_the_loaded_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    f32_file_with_offset(&path, &[0.0; 10], 0);
    let (w, ledger) = Weights::from_file(WeightFile::open(&path).unwrap())
        .to(Device::Cpu, Kind::Half)
        .counted();
    let _ = w.get("w").unwrap();
    assert_eq!(ledger.load(Ordering::Relaxed), 20);
    let _ = w.at("").get_opt("missing").unwrap();
    assert_eq!(ledger.load(Ordering::Relaxed), 20);
}
