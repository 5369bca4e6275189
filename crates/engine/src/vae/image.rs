//! Conversion between VAE-space image tensors (`[B, 3, H, W]` in `[-1, 1]`) and 8-bit RGB
//! pixels, with ComfyUI's arithmetic so our PNGs match its bytes.

use crate::error::{EngineError, Result};
use tch::{Device, Kind, Tensor};

/// ComfyUI's pixel value for a VAE output `x`: `clamp((x + 1) / 2, 0, 1)` (its
/// `VAE.process_output`), then `np.clip(255. * i, 0, 255).astype(np.uint8)` (its
/// `SaveImage`), which truncates rather than rounds (diffusers rounds). All in f32, in the
/// same order, so the bytes are the same. NaN becomes 0.
fn to_byte(x: f32) -> u8 {
    let unit = ((x + 1.0) / 2.0).clamp(0.0, 1.0);
    // `as` truncates toward zero and saturates, exactly numpy's cast for values in range.
    (255.0 * unit).clamp(0.0, 255.0) as u8
}

/// The next f32 above `x` (`f32::next_up` is newer than our minimum Rust).
fn next_up(x: f32) -> f32 {
    if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

/// The VAE-space value for each byte. ComfyUI feeds `v / 255 * 2 - 1` (its `LoadImage`
/// then `VAE.process_input`); for 63 of the 256 bytes that f32 value comes back one lower
/// through the truncating [`to_byte`], so for those we step up by the few ulps (~1e-7,
/// invisible to the VAE) that make `rgb8 → tensor → rgb8` exact.
fn byte_to_unit_table() -> [f32; 256] {
    let mut table = [0f32; 256];
    for (byte, slot) in table.iter_mut().enumerate() {
        let mut x = (byte as f32 / 255.0) * 2.0 - 1.0;
        while usize::from(to_byte(x)) < byte {
            x = next_up(x);
        }
        *slot = x;
    }
    table
}

/// Images `[B, 3, H, W]` in `[-1, 1]` (any device and float kind) to `(width, height,
/// rgb)` per image, `rgb` row-major interleaved `RGBRGB…`.
pub fn tensor_to_rgb8(images: &Tensor) -> Result<Vec<(u32, u32, Vec<u8>)>> {
    let size = images.size();
    let invalid = |expected: &str| EngineError::Invalid {
        field: "image tensor",
        value: format!("of shape {size:?} and kind {:?}", images.kind()),
        expected: expected.to_string(),
    };
    let [batch, 3, height, width] = size[..] else {
        return Err(invalid("[batch, 3, height, width]"));
    };
    let (Ok(w32), Ok(h32)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(invalid("a width and height that fit in u32"));
    };
    if !images.is_floating_point() {
        return Err(invalid("a floating-point tensor"));
    }
    // [B, 3, H, W] -> [B, H, W, 3] so each image's bytes come out interleaved.
    let hwc = images
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_permute([0, 2, 3, 1])?
        .f_contiguous()?;
    let values = Vec::<f32>::try_from(hwc.f_flatten(0, -1)?)?;
    let per_image = (height * width * 3) as usize;
    let out = (0..batch as usize)
        .map(|b| {
            let bytes = values[b * per_image..(b + 1) * per_image]
                .iter()
                .map(|&x| to_byte(x))
                .collect();
            (w32, h32, bytes)
        })
        .collect();
    Ok(out)
}

/// Interleaved 8-bit RGB (`width * height * 3` bytes, row-major) to a `[1, 3, H, W]` f32
/// tensor in `[-1, 1]` on the CPU, as ComfyUI prepares an image for VAE encoding.
pub fn rgb8_to_tensor(width: u32, height: u32, rgb: &[u8]) -> Result<Tensor> {
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected || expected == 0 {
        return Err(EngineError::Invalid {
            field: "RGB image",
            value: format!("of {} bytes for {width}x{height}", rgb.len()),
            expected: format!("{expected} bytes (width * height * 3), at least one pixel"),
        });
    }
    let table = byte_to_unit_table();
    let values: Vec<f32> = rgb.iter().map(|&b| table[usize::from(b)]).collect();
    let hwc =
        Tensor::f_from_slice(&values)?.f_reshape([1, i64::from(height), i64::from(width), 3])?;
    Ok(hwc.f_permute([0, 3, 1, 2])?.f_contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_survives_the_round_trip() {
        let table = byte_to_unit_table();
        for (byte, &x) in table.iter().enumerate() {
            assert_eq!(usize::from(to_byte(x)), byte, "byte {byte} via {x}");
            let comfy = (byte as f32 / 255.0) * 2.0 - 1.0;
            assert!(
                (x - comfy).abs() <= 1e-6,
                "byte {byte}: {x} strays from ComfyUI's {comfy}"
            );
        }
    }

    #[test]
    fn output_truncates_like_comfyui() {
        // 255 * 0.5 = 127.5 truncates to 127 (rounding would give 128).
        assert_eq!(to_byte(0.0), 127);
        assert_eq!(to_byte(-2.0), 0);
        assert_eq!(to_byte(2.0), 255);
        assert_eq!(to_byte(f32::NAN), 0);
    }
}
