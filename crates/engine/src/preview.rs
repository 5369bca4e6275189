//! Cheap previews of a job in progress: the 4 latent channels projected linearly to RGB
//! (per family, plus a bias), at latent resolution (1/8 of the image, shrunk to at most
//! `max_side` pixels), as a base64'd PNG that fits in one JSON line. No VAE runs, so a
//! preview costs microseconds, not a decode.
//!
//! The factors are the published empirical ones, not our own fit: ComfyUI's
//! `comfy/latent_formats.py` (`SD15.latent_rgb_factors`, which SD 2.x shares, and
//! `SDXL.latent_rgb_factors` with `latent_rgb_factors_bias`). As there, they apply to the
//! latent the UNet sees (VAE latent × scale factor) and give RGB in [-1, 1].

use crate::checkpoint::Family;
use crate::error::{EngineError, Result};
use base64::Engine as _;
use imagelab_core::events::Preview;
use tch::{Device, Kind, Tensor};

/// The long side of the previews the worker sends.
pub const PREVIEW_MAX_SIDE: u32 = 128;

/// `factors[channel][r, g, b]` and `bias[r, g, b]` of a family's latent-to-RGB projection.
pub fn latent_rgb_factors(family: Family) -> ([[f32; 3]; 4], [f32; 3]) {
    match family {
        Family::Sd1 | Family::Sd2 => (
            [
                [0.3512, 0.2297, 0.3227],
                [0.3250, 0.4974, 0.2350],
                [-0.2829, 0.1762, 0.2721],
                [-0.2120, -0.2616, -0.7177],
            ],
            [0.0, 0.0, 0.0],
        ),
        // PixArt-Σ decodes with the SDXL VAE.
        Family::Sdxl | Family::PixArtSigma => (
            [
                [0.3651, 0.4232, 0.4341],
                [-0.2533, -0.0042, 0.1068],
                [0.1076, 0.1111, -0.0362],
                [-0.3165, -0.2492, -0.2188],
            ],
            [0.1084, -0.0175, -0.0011],
        ),
    }
}

/// The size a `width`×`height` picture takes with its long side at most `max_side`
/// (aspect kept, never below 1 pixel, never enlarged).
pub fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side || max_side == 0 {
        return (width, height);
    }
    let scale = |side: u32| ((side as u64 * max_side as u64).div_ceil(long as u64) as u32).max(1);
    (scale(width), scale(height))
}

/// The first image of `latent` (`[B, 4, h, w]` or `[4, h, w]`, any device and float kind)
/// as 8-bit RGB: `(width, height, pixels)`, row-major, 3 bytes a pixel.
pub fn latent_to_rgb8(
    family: Family,
    latent: &Tensor,
    max_side: u32,
) -> Result<(u32, u32, Vec<u8>)> {
    let x0 = latent.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
    let x0 = if x0.dim() == 4 { x0.f_get(0)? } else { x0 };
    let shape = x0.size();
    let [4, h, w] = shape[..] else {
        return Err(EngineError::Invalid {
            field: "latent",
            value: format!("{shape:?}"),
            expected: "a 4-channel latent [B, 4, h, w] for a preview".into(),
        });
    };
    let (factors, bias) = latent_rgb_factors(family);
    let factors = Tensor::from_slice(factors.as_flattened()).view([4, 3]);
    let bias = Tensor::from_slice(&bias).view([3, 1, 1]);
    let rgb = factors
        .transpose(0, 1)
        .matmul(&x0.reshape([4, h * w]))
        .view([3, h, w])
        + bias;
    let (nw, nh) = fit(w as u32, h as u32, max_side);
    // Area averaging: every latent pixel counts, so a shrunk preview does not alias.
    let rgb = if (nw as i64, nh as i64) == (w, h) {
        rgb
    } else {
        rgb.unsqueeze(0)
            .adaptive_avg_pool2d([nh as i64, nw as i64])
            .squeeze_dim(0)
    };
    let bytes = ((rgb + 1.0) * 127.5)
        .clamp(0.0, 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous();
    let pixels = Vec::<u8>::try_from(bytes.flatten(0, -1))?;
    Ok((nw, nh, pixels))
}

/// [`latent_to_rgb8`] as the PNG preview the worker sends.
pub fn latent_preview(family: Family, latent: &Tensor, max_side: u32) -> Result<Preview> {
    let (width, height, pixels) = latent_to_rgb8(family, latent, max_side)?;
    let png = crate::png_out::encode_png(width, height, &pixels, &[])?;
    Ok(Preview {
        width,
        height,
        png_base64: base64::engine::general_purpose::STANDARD.encode(png),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decode(preview: &Preview) -> (u32, u32, Vec<u8>) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&preview.png_base64)
            .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    #[test]
    fn previews_are_decodable_pngs_of_latent_size() {
        let _rng = crate::sampling::global_generator_lock();
        let latent = Tensor::randn([2, 4, 16, 24], (Kind::Float, Device::Cpu));
        let preview = latent_preview(Family::Sd1, &latent, PREVIEW_MAX_SIDE).unwrap();
        assert_eq!((preview.width, preview.height), (24, 16));
        let (w, h, pixels) = decode(&preview);
        assert_eq!((w, h, pixels.len()), (24, 16, 24 * 16 * 3));
        // A 1024×2048 SDXL image: a 128×256 latent, shrunk to 64×128.
        let big = Tensor::randn([1, 4, 256, 128], (Kind::Float, Device::Cpu));
        let preview = latent_preview(Family::Sdxl, &big, PREVIEW_MAX_SIDE).unwrap();
        assert_eq!((preview.width, preview.height), (64, 128));
        assert_eq!(decode(&preview).2.len(), 64 * 128 * 3);
    }

    #[test]
    fn a_constant_latent_maps_to_the_colour_the_factors_give() {
        for family in [Family::Sd1, Family::Sdxl] {
            let value = [0.8f32, -0.3, 0.5, 1.2];
            let latent = Tensor::from_slice(&value)
                .view([1, 4, 1, 1])
                .expand([1, 4, 8, 8], false);
            let (_, _, pixels) = latent_to_rgb8(family, &latent, 128).unwrap();
            let (factors, bias) = latent_rgb_factors(family);
            let expected: Vec<u8> = (0..3)
                .map(|k| {
                    let v: f32 = (0..4).map(|c| value[c] * factors[c][k]).sum::<f32>() + bias[k];
                    ((v + 1.0) * 127.5).clamp(0.0, 255.0).round() as u8
                })
                .collect();
            for pixel in pixels.chunks(3) {
                assert_eq!(pixel, &expected[..], "{family:?}");
            }
        }
        // Channel 0 alone at 1.0 is that channel's SD 1.x row: (0.3512, 0.2297, 0.3227)
        // → ((v + 1) × 127.5) rounded.
        let one = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0]).view([1, 4, 1, 1]);
        let (_, _, pixels) = latent_to_rgb8(Family::Sd1, &one, 128).unwrap();
        assert_eq!(pixels, [172, 157, 169]);
    }

    #[test]
    fn sizes_fit_the_long_side_and_bad_latents_are_refused() {
        assert_eq!(fit(64, 64, 128), (64, 64));
        assert_eq!(fit(256, 128, 128), (128, 64));
        assert_eq!(fit(300, 7, 128), (128, 3));
        assert_eq!(fit(1000, 1, 128), (128, 1));
        let three = Tensor::zeros([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        assert!(latent_to_rgb8(Family::Sd1, &three, 128).is_err());
    }
}
