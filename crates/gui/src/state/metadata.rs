//! An image's settings, read from its PNG text chunks with the analytics readers
//! (imagelab's own `imagelab` chunk, A1111's `parameters`, ComfyUI's `prompt`), and the
//! lines the details pane shows.

use imagelab_analytics::{pngmeta, ImageRecord};
use std::path::Path;

/// The image's settings, or a message naming the file and what is missing.
pub fn read_record(path: &Path) -> Result<ImageRecord, String> {
    let texts = pngmeta::read_texts(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pngmeta::record_from_texts(&path.display().to_string(), &texts).ok_or_else(|| {
        format!(
            "{}: no generation settings in it (not made by imagelab, A1111 or ComfyUI?)",
            path.display()
        )
    })
}

/// "Label: value" lines for what the record holds.
pub fn detail_lines(record: &ImageRecord) -> Vec<(String, String)> {
    let mut lines = vec![("Prompt".to_string(), record.prompt.clone())];
    if !record.negative.is_empty() {
        lines.push(("Negative".into(), record.negative.clone()));
    }
    let mut push = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            lines.push((label.to_string(), v));
        }
    };
    push("Model", record.model.clone());
    push(
        "Size",
        record
            .width
            .zip(record.height)
            .map(|(w, h)| format!("{w} × {h}")),
    );
    push("Sampler", record.sampler.clone());
    push("Scheduler", record.scheduler.clone());
    push("Steps", record.steps.map(|s| s.to_string()));
    push("CFG", record.cfg.map(|c| format!("{c}")));
    push("Seed", record.seed.map(|s| s.to_string()));
    push("Style", record.profile.clone());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_with_text(path: &Path, key: &str, value: &str) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 1, 1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.add_text_chunk(key.into(), value.into()).unwrap();
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[0, 0, 0]).unwrap();
    }

    #[test]
    fn an_a1111_image_gives_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        png_with_text(
            &path,
            "parameters",
            "a red fox\nNegative prompt: blurry\nSteps: 30, Sampler: Euler a, CFG scale: 6.5, Seed: 42, Size: 832x1216, Model: dream",
        );
        let record = read_record(&path).unwrap();
        assert_eq!(record.prompt, "a red fox");
        assert_eq!(record.seed, Some(42));
        let lines = detail_lines(&record);
        assert!(
            lines.contains(&("Size".into(), "832 × 1216".into())),
            "{lines:?}"
        );
        assert!(lines.contains(&("Negative".into(), "blurry".into())));
    }

    #[test]
    fn an_image_without_settings_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.png");
        png_with_text(&path, "Software", "gimp");
        let error = read_record(&path).unwrap_err();
        assert!(error.contains("plain.png") && error.contains("no generation settings"));
        let missing = read_record(&dir.path().join("nope.png")).unwrap_err();
        assert!(missing.contains("nope.png"), "{missing}");
    }
}
