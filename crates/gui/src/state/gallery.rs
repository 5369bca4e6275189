//! The right panel's list: the images in `output/`, newest first. Listing 10,000 files
//! costs one `read_dir` and a `stat` each, so it runs off the main thread; new images
//! are put in front as they appear.

use std::path::Path;
use std::time::SystemTime;

/// Whether a file name in `output/` is an image the gallery shows: a PNG, not a hidden
/// or temporary file (images are written under a temporary name and linked into place).
pub fn is_gallery_image(name: &str) -> bool {
    !name.starts_with('.') && name.to_ascii_lowercase().ends_with(".png")
}

/// The gallery images in `dir` (top level only: `inputs/` holds init images), newest
/// first, ties by name. A missing folder is an empty gallery.
pub fn list_images(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(SystemTime, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !is_gallery_image(&name) {
                return None;
            }
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), name))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    found.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn images_are_listed_newest_first_without_hidden_or_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = SystemTime::now() - Duration::from_secs(100);
        for (i, name) in ["b.png", "a.png", "c.PNG"].iter().enumerate() {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(base + Duration::from_secs(10 * i as u64))
                .unwrap();
        }
        for other in [".job1.png.tmp", ".hidden.png", "notes.txt"] {
            std::fs::write(dir.path().join(other), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("inputs.png")).unwrap();
        assert_eq!(list_images(dir.path()), ["c.PNG", "a.png", "b.png"]);
        assert!(list_images(&dir.path().join("missing")).is_empty());
    }
}
