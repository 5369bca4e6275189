//! Writing generated images as PNGs that other tools understand: an A1111-style
//! `parameters` text chunk (read by A1111, Forge, Civitai and most image browsers) plus our
//! full job spec as JSON in an `imagelab` chunk. Files appear atomically and never replace
//! an existing file.

use crate::error::{EngineError, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The keyword of our own JSON chunk.
pub const SPEC_CHUNK: &str = "imagelab";
/// The keyword A1111-compatible readers look for.
pub const PARAMETERS_CHUNK: &str = "parameters";

/// Quotes a value the way A1111 does when it would break the `key: value, …` line.
fn a1111_value(value: &str) -> String {
    if value.contains([',', ':', '\n', '"']) {
        serde_json::to_string(value).unwrap_or_else(|_| value.replace([',', ':', '\n'], " "))
    } else {
        value.to_string()
    }
}

/// Builds the A1111 `parameters` text: prompt, `Negative prompt:` line, then `key: value`
/// pairs in the given order.
pub fn a1111_parameters(prompt: &str, negative: &str, fields: &[(&str, String)]) -> String {
    let mut text = prompt.to_string();
    if !negative.is_empty() {
        text.push_str("\nNegative prompt: ");
        text.push_str(negative);
    }
    let line: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}: {}", a1111_value(v)))
        .collect();
    text.push('\n');
    text.push_str(&line.join(", "));
    text
}

/// Encodes an 8-bit RGB image with text chunks into bytes. Latin-1 text goes into tEXt
/// chunks (what old readers expect), anything else into UTF-8 iTXt chunks.
pub fn encode_png(
    width: u32,
    height: u32,
    rgb: &[u8],
    texts: &[(&str, String)],
) -> Result<Vec<u8>> {
    let bad = |reason: String| EngineError::Output {
        path: PathBuf::from("<png>"),
        reason,
    };
    if rgb.len() != (width as usize) * (height as usize) * 3 {
        return Err(bad(format!(
            "{} bytes for a {width}x{height} RGB image",
            rgb.len()
        )));
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (keyword, text) in texts {
            let latin1 = text.chars().all(|c| (c as u32) < 256);
            let added = if latin1 {
                encoder.add_text_chunk(keyword.to_string(), text.clone())
            } else {
                encoder.add_itxt_chunk(keyword.to_string(), text.clone())
            };
            added.map_err(|e| bad(e.to_string()))?;
        }
        let mut writer = encoder.write_header().map_err(|e| bad(e.to_string()))?;
        writer
            .write_image_data(rgb)
            .map_err(|e| bad(e.to_string()))?;
        writer.finish().map_err(|e| bad(e.to_string()))?;
    }
    Ok(bytes)
}

fn output_error(path: &Path, reason: impl ToString) -> EngineError {
    EngineError::Output {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// `bytes` in a fsynced temporary file next to `path` (same folder, so it can be linked or
/// renamed into place atomically); the file is removed if it is never placed.
fn staged_next_to(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| output_error(path, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".imagelab-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| output_error(path, e))?;
    tmp.write_all(bytes).map_err(|e| output_error(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| output_error(path, e))?;
    Ok(tmp)
}

/// Writes `bytes` to `path` without ever replacing an existing file and without a partial
/// file being visible: a staged temporary file, then a hard link (which fails if `path`
/// exists); the temporary name goes away when the staged file is dropped.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = staged_next_to(path, bytes)?;
    std::fs::hard_link(tmp.path(), path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            output_error(
                path,
                "the file already exists; imagelab never overwrites an image",
            )
        } else {
            output_error(path, e)
        }
    })
}

/// Writes `bytes` to `path`, replacing a file of that name, never visible half-written
/// (staged temporary file, then rename). Only for names that belong to one job alone (the
/// queue's deterministic output names), so a retried job replaces its own earlier image
/// instead of adding a second one.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = staged_next_to(path, bytes)?;
    tmp.persist(path).map_err(|e| output_error(path, e.error))?;
    Ok(())
}

/// Writes into `dir` under the first free name `{stem}_{NNNNN}.png` and returns it.
pub fn write_numbered(dir: &Path, stem: &str, bytes: &[u8]) -> Result<PathBuf> {
    let mut n = next_free_index(dir, stem);
    loop {
        let path = dir.join(format!("{stem}_{n:05}.png"));
        match write_new_file(&path, bytes) {
            Ok(()) => return Ok(path),
            // Someone (another worker) took this name between our scan and our link.
            Err(_) if path.exists() => n += 1,
            Err(e) => return Err(e),
        }
    }
}

fn next_free_index(dir: &Path, stem: &str) -> u32 {
    let prefix = format!("{stem}_");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|name| {
                    name.strip_prefix(&prefix)?
                        .strip_suffix(".png")?
                        .parse::<u32>()
                        .ok()
                })
                .max()
                .map_or(1, |m| m + 1)
        })
        .unwrap_or(1)
}

/// Reads the text chunks (tEXt, zTXt and iTXt) of a PNG file.
pub fn read_png_texts(path: &Path) -> Result<BTreeMap<String, String>> {
    let io = |e: std::io::Error| EngineError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let bad = |reason: String| EngineError::Output {
        path: path.to_path_buf(),
        reason,
    };
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_ignore_text_chunk(false);
    let reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
    let info = reader.info();
    let mut texts = BTreeMap::new();
    for chunk in &info.uncompressed_latin1_text {
        texts.insert(chunk.keyword.clone(), chunk.text.clone());
    }
    for chunk in &info.compressed_latin1_text {
        if let Ok(text) = chunk.get_text() {
            texts.insert(chunk.keyword.clone(), text);
        }
    }
    for chunk in &info.utf8_text {
        if let Ok(text) = chunk.get_text() {
            texts.insert(chunk.keyword.clone(), text);
        }
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parameters_text_quotes_values_like_a1111() {
        let text = a1111_parameters(
            "a cat",
            "blurry",
            &[("Steps", "20".into()), ("Model", "my, model".into())],
        );
        assert_eq!(
            text,
            "a cat\nNegative prompt: blurry\nSteps: 20, Model: \"my, model\""
        );
        let no_negative = a1111_parameters("a cat", "", &[("Seed", "1".into())]);
        assert_eq!(no_negative, "a cat\nSeed: 1");
    }

    #[test]
    fn chunks_round_trip_including_unicode() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_png(
            2,
            1,
            &[255, 0, 0, 0, 255, 0],
            &[
                ("parameters", "a café ☕".into()),
                ("imagelab", "{\"seed\":1}".into()),
            ],
        )
        .unwrap();
        let path = dir.path().join("x.png");
        write_new_file(&path, &bytes).unwrap();
        let texts = read_png_texts(&path).unwrap();
        assert_eq!(texts["parameters"], "a café ☕");
        assert_eq!(texts["imagelab"], "{\"seed\":1}");
    }

    #[test]
    fn never_overwrites_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        write_new_file(&path, b"first").unwrap();
        let err = write_new_file(&path, b"second").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let a = write_numbered(dir.path(), "img", b"a").unwrap();
        let b = write_numbered(dir.path(), "img", b"b").unwrap();
        assert_eq!(a.file_name().unwrap(), "img_00001.png");
        assert_eq!(b.file_name().unwrap(), "img_00002.png");
    }

    #[test]
    fn job_outputs_replace_their_own_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job0000000001_000.png");
        write_replacing(&path, b"first attempt").unwrap();
        write_replacing(&path, b"retry").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"retry");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary files left"
        );
    }

    #[test]
    fn wrong_buffer_size_is_an_error() {
        assert!(encode_png(2, 2, &[0; 5], &[]).is_err());
    }
}
