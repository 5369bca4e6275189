//! Reading a safetensors file's header without libtorch: the 8-byte little-endian length,
//! then the JSON table of tensor names, dtypes, shapes and byte ranges. The daemon uses it
//! to tell model families apart without loading a model; the engine shares the classifier
//! built on it (see [`crate::family`]).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Headers above this are refused before any allocation: the safetensors format itself
/// caps them at 100 MB, and a real SDXL checkpoint's header is a few hundred kilobytes.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A file that is not a readable safetensors file; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct HeaderError {
    pub path: PathBuf,
    pub reason: String,
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TensorEntry {
    /// `F32`, `F16`, `BF16`, `I64`, …
    pub dtype: String,
    pub shape: Vec<i64>,
    /// Byte range relative to the end of the header.
    pub data_offsets: (u64, u64),
}

/// A parsed header: every tensor, and where the data section starts in the file.
#[derive(Debug, Clone, Default)]
pub struct SafetensorsHeader {
    pub tensors: BTreeMap<String, TensorEntry>,
    /// The file's `__metadata__` strings (often empty).
    pub metadata: BTreeMap<String, String>,
    /// Offset of the data section: 8 + header length.
    pub data_start: u64,
}

impl SafetensorsHeader {
    /// Every tensor name with its shape (what the family classifier reads).
    pub fn shapes(&self) -> BTreeMap<String, Vec<i64>> {
        self.tensors
            .iter()
            .map(|(name, entry)| (name.clone(), entry.shape.clone()))
            .collect()
    }
}

fn error(path: &Path, reason: impl Into<String>) -> HeaderError {
    HeaderError {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and checks the header of `path`: a sane length that fits the file, valid JSON,
/// and every tensor's byte range inside the file.
pub fn read_header(path: &Path) -> Result<SafetensorsHeader, HeaderError> {
    let io = |e: std::io::Error| error(path, format!("cannot read: {e}"));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        error(
            path,
            format!("not a safetensors file: {file_len} bytes is too short for a header"),
        )
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(error(
            path,
            format!(
                "not a safetensors file: it declares a {header_len}-byte header in a {file_len}-byte file"
            ),
        ));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact(&mut json).map_err(io)?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&json).map_err(|e| {
        error(
            path,
            format!("not a safetensors file: bad header JSON: {e}"),
        )
    })?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut header = SafetensorsHeader {
        data_start,
        ..SafetensorsHeader::default()
    };
    for (name, value) in raw {
        if name == "__metadata__" {
            header.metadata = serde_json::from_value(value)
                .map_err(|e| error(path, format!("bad __metadata__: {e}")))?;
            continue;
        }
        let entry: TensorEntry = serde_json::from_value(value)
            .map_err(|e| error(path, format!("bad header entry for tensor {name}: {e}")))?;
        let (start, end) = entry.data_offsets;
        if start > end || end > data_len {
            return Err(error(
                path,
                format!("tensor {name} lies past the end of the file (truncated?)"),
            ));
        }
        header.tensors.insert(name, entry);
    }
    Ok(header)
}

/// Reads one small floating-point tensor's values (F32, F16 or BF16) as f64: enough for
/// probes such as the SD 2.x v-prediction test, never for weights.
pub fn read_floats(
    path: &Path,
    header: &SafetensorsHeader,
    name: &str,
) -> Result<Vec<f64>, HeaderError> {
    let entry = header
        .tensors
        .get(name)
        .ok_or_else(|| error(path, format!("no tensor {name}")))?;
    let width = match entry.dtype.as_str() {
        "F32" => 4,
        "F16" | "BF16" => 2,
        other => {
            return Err(error(
                path,
                format!("tensor {name} is {other}, not a float"),
            ))
        }
    };
    let (start, end) = entry.data_offsets;
    let numel: i64 = entry.shape.iter().product();
    if end - start != numel as u64 * width || end - start > 64 << 20 {
        return Err(error(
            path,
            format!(
                "tensor {name}: {} bytes for shape {:?}",
                end - start,
                entry.shape
            ),
        ));
    }
    let io = |e: std::io::Error| error(path, format!("cannot read tensor {name}: {e}"));
    let mut file = std::fs::File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(header.data_start + start))
        .map_err(io)?;
    let mut bytes = vec![0u8; (end - start) as usize];
    file.read_exact(&mut bytes).map_err(io)?;
    let values = match entry.dtype.as_str() {
        "F32" => bytes
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        _ => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
    };
    Ok(values)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a safetensors file by hand: `(name, dtype, shape, little-endian bytes)`.
    pub(crate) fn write(path: &Path, tensors: &[(&str, &str, Vec<i64>, Vec<u8>)]) {
        let mut table = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let start = data.len();
            data.extend_from_slice(bytes);
            table.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let json = serde_json::to_vec(&table).unwrap();
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&json);
        file.extend_from_slice(&data);
        std::fs::write(path, file).unwrap();
    }

    #[test]
    fn a_header_is_read_with_shapes_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let f32s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f16s: Vec<u8> = [half::f16::from_f32(0.25)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write(
            &path,
            &[
                ("a.b", "F32", vec![2], f32s),
                ("c", "F16", vec![1, 1], f16s),
            ],
        );
        let header = read_header(&path).unwrap();
        assert_eq!(header.shapes()["a.b"], vec![2]);
        assert_eq!(header.shapes()["c"], vec![1, 1]);
        assert_eq!(read_floats(&path, &header, "a.b").unwrap(), vec![1.5, -2.0]);
        assert_eq!(read_floats(&path, &header, "c").unwrap(), vec![0.25]);
    }

    #[test]
    fn absurd_lengths_and_junk_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.safetensors");
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, &bytes).unwrap();
        let err = read_header(&path).unwrap_err().to_string();
        assert!(
            err.contains("junk.safetensors") && err.contains("header"),
            "{err}"
        );
        std::fs::write(&path, b"x").unwrap();
        let err = read_header(&path).unwrap_err().to_string();
        assert!(
            err.contains("junk.safetensors") && err.contains("too short"),
            "{err}"
        );
        let mut bytes = 4u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{no}");
        std::fs::write(&path, &bytes).unwrap();
        let err = read_header(&path).unwrap_err().to_string();
        assert!(err.contains("bad header JSON"), "{err}");
    }

    #[test]
    fn a_truncated_data_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.safetensors");
        write(&path, &[("a", "F32", vec![4], vec![0; 16])]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = read_header(&path).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
