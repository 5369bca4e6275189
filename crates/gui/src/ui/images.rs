//! Image decoding for the screen, done off the main thread: files scaled for the viewer,
//! thumbnails (cached on disk by path, size and modification time) and the event
//! stream's previews. Only [`texture`] runs on the main thread: it wraps decoded pixels.

use base64::Engine as _;
use imagelab_core::events::Preview;
use std::path::{Path, PathBuf};

/// The longest side of a thumbnail, in pixels (HiDPI-sharp at the panel's 128 px).
pub const THUMBNAIL_SIDE: u32 = 256;
/// The viewer never needs more than this: bigger images are scaled down once.
const VIEW_MAX_SIDE: u32 = 2048;

/// Decoded RGBA pixels, ready to become a texture.
#[derive(Clone)]
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for Rgba {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rgba({}×{})", self.width, self.height)
    }
}

fn to_rgba(image: image::DynamicImage, max_side: u32) -> Rgba {
    let image = if image.width().max(image.height()) > max_side {
        image.resize(max_side, max_side, image::imageops::FilterType::Triangle)
    } else {
        image
    };
    let rgba = image.into_rgba8();
    Rgba {
        width: rgba.width(),
        height: rgba.height(),
        pixels: rgba.into_raw(),
    }
}

/// An image file for the viewer, or a message naming it.
pub fn decode_for_view(path: &Path) -> Result<Rgba, String> {
    let image = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(to_rgba(image, VIEW_MAX_SIDE))
}

/// A preview frame from the event stream.
pub fn decode_preview(preview: &Preview) -> Option<Rgba> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(preview.png_base64.as_bytes())
        .ok()?;
    let image = image::load_from_memory(&bytes).ok()?;
    Some(to_rgba(image, VIEW_MAX_SIDE))
}

/// Where thumbnails are kept: `$XDG_CACHE_HOME/imagelab/thumbnails`, else
/// `~/.cache/imagelab/thumbnails`.
pub fn thumbnail_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("imagelab").join("thumbnails")
}

/// The cache file of `path` as it is now: a changed or replaced image gets a new key.
fn cache_key(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{}|{}|{}", path.display(), meta.len(), mtime.as_nanos());
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    Some(format!("{hash:016x}.png"))
}

/// The thumbnail of `path`: from the disk cache when it is there, else made and saved.
pub fn thumbnail(path: &Path, cache_dir: &Path) -> Result<Rgba, String> {
    let cached = cache_key(path).map(|key| cache_dir.join(key));
    if let Some(image) = cached.as_ref().and_then(|c| image::open(c).ok()) {
        return Ok(to_rgba(image, THUMBNAIL_SIDE));
    }
    let image = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let small = to_rgba(image, THUMBNAIL_SIDE);
    if let Some(cached) = cached {
        // A cache that cannot be written only costs the decode next time.
        let _ = std::fs::create_dir_all(cache_dir);
        let tmp = cached.with_extension("tmp");
        let saved = image::save_buffer_with_format(
            &tmp,
            &small.pixels,
            small.width,
            small.height,
            image::ExtendedColorType::Rgba8,
            image::ImageFormat::Png,
        );
        if saved.is_ok() {
            let _ = std::fs::rename(&tmp, &cached);
        }
    }
    Ok(small)
}

/// Pixels as a texture (main thread only).
pub fn texture(rgba: &Rgba) -> gtk::gdk::MemoryTexture {
    let bytes = gtk::glib::Bytes::from(&rgba.pixels[..]);
    gtk::gdk::MemoryTexture::new(
        rgba.width as i32,
        rgba.height as i32,
        gtk::gdk::MemoryFormat::R8g8b8a8,
        &bytes,
        rgba.width as usize * 4,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, width: u32, height: u32) {
        let pixels = vec![200u8; (width * height * 3) as usize];
        image::save_buffer(path, &pixels, width, height, image::ExtendedColorType::Rgb8).unwrap();
    }

    #[test]
    fn thumbnails_are_scaled_and_cached_by_file_state() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let image = dir.path().join("a.png");
        write_png(&image, 1024, 512);
        let thumb = thumbnail(&image, &cache).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 128));
        assert_eq!(thumb.pixels.len(), 256 * 128 * 4);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        // The cached copy answers the second time; a rewritten image gets its own entry.
        assert_eq!(thumbnail(&image, &cache).unwrap().pixels, thumb.pixels);
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_png(&image, 640, 640);
        assert_eq!(thumbnail(&image, &cache).unwrap().width, 256);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    }

    #[test]
    fn broken_files_are_named_and_previews_decode() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        assert!(thumbnail(&bad, dir.path()).unwrap_err().contains("bad.png"));
        let good = dir.path().join("p.png");
        write_png(&good, 8, 8);
        let preview = Preview {
            width: 8,
            height: 8,
            png_base64: base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(&good).unwrap()),
        };
        assert_eq!(decode_preview(&preview).unwrap().width, 8);
    }
}
