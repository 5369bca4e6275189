//! Tiled VAE decode and encode against the untiled VAE, on the tiny 4-level (factor 8)
//! VAE of `pipeline_ref.py`, with and without its mid-block attention; and the blending
//! weights, which must add up to exactly 1 at every pixel.
//!
//! Tiling cannot be exact, even without attention: every GroupNorm normalises with the
//! statistics of the tile, not of the image, and convolutions see zero padding at tile
//! edges. The tolerances below are the measured errors with headroom (see the figures
//! printed with `--nocapture`); a single tile covering the image is bit-identical.
#![allow(clippy::unwrap_used)]

mod common;

use common::pipeline_models as reference_dir;

use imagelab_engine::vae::{
    axis_tiles, tiled_apply, vae_weights_from_file, AutoencoderKl, VaeConfig,
};
use imagelab_engine::weights::WeightFile;
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn load_vae(path: &Path) -> AutoencoderKl {
    let w = vae_weights_from_file(WeightFile::open(path).unwrap()).unwrap();
    AutoencoderKl::load(&w, &VaeConfig::detect(&w).unwrap()).unwrap()
}

/// The SD 1.x test VAE, and the same weights without the mid-block attention.
fn vaes() -> (AutoencoderKl, AutoencoderKl) {
    let full = reference_dir().join("sd1_vae.safetensors");
    let no_attn = reference_dir().join("sd1_vae_no_mid_attn.safetensors");
    if !no_attn.exists() {
        let kept: Vec<(String, Tensor)> = Tensor::read_safetensors(&full)
            .unwrap()
            .into_iter()
            .filter(|(name, _)| !name.contains("mid.attn_1"))
            .collect();
        // Tests run in parallel and may all get here: each writes its own file and
        // renames it into place, so no test ever reads a half-written one.
        let partial = no_attn.with_extension(format!("{:?}.partial", std::thread::current().id()));
        Tensor::write_safetensors(&kept, &partial).unwrap();
        std::fs::rename(&partial, &no_attn).unwrap();
    }
    let (a, b) = (load_vae(&full), load_vae(&no_attn));
    assert!(a.config().mid_attention && !b.config().mid_attention);
    (a, b)
}

fn latents() -> Tensor {
    tch::manual_seed(5);
    // 40×24 latent cells (320×192 pixels): several tiles each way, a clamped last tile.
    Tensor::randn([1, 4, 24, 40], (Kind::Float, Device::Cpu))
}

#[test]
fn one_tile_covering_everything_is_exact() {
    let (vae, _) = vaes();
    let z = latents();
    let whole = vae.decode(&z).unwrap();
    assert!(vae.decode_tiled(&z, 64, 8).unwrap().equal(&whole));
}

/// (max, mean) of |tiled − untiled| over the untiled output's standard deviation.
fn errors(tiled: &Tensor, whole: &Tensor) -> (f64, f64) {
    let spread = whole.std(true).double_value(&[]);
    let diff = (tiled - whole).abs();
    (
        diff.max().double_value(&[]) / spread,
        diff.mean(Kind::Float).double_value(&[]) / spread,
    )
}

// Measured on this random VAE (CPU, fp32), tiles of 32 latent cells overlapping by 16, on
// random latents (a worst case for GroupNorm, whose statistics then vary most between
// tiles): decode max 0.765σ / mean 0.0555σ without mid attention, 0.764σ / 0.0555σ with
// it; encode (tiles of 16 cells, overlap 8) max 0.443σ / mean 0.053σ both ways. The error
// is spread evenly over the image, not at the seams (by column it is flat), so GroupNorm's
// per-tile statistics dominate here, not the attention. Bounds are about twice these.
const DECODE_MAX: f64 = 1.5;
const DECODE_MEAN: f64 = 0.12;
const ENCODE_MAX: f64 = 1.0;
const ENCODE_MEAN: f64 = 0.12;

#[test]
fn tiled_decode_is_close_to_untiled() {
    let (with_attn, no_attn) = vaes();
    let z = latents();
    for (label, vae) in [
        ("no mid attention", &no_attn),
        ("mid attention", &with_attn),
    ] {
        let whole = vae.decode(&z).unwrap();
        let tiled = vae.decode_tiled(&z, 32, 16).unwrap();
        assert_eq!(tiled.size(), whole.size());
        let (max, mean) = errors(&tiled, &whole);
        eprintln!("decode, {label}: max {max:.3}σ, mean {mean:.4}σ");
        assert!(
            max < DECODE_MAX && mean < DECODE_MEAN,
            "decode {label}: {max} {mean}"
        );
    }
}

#[test]
fn tiled_encode_is_close_to_untiled() {
    let (with_attn, no_attn) = vaes();
    tch::manual_seed(6);
    let images = Tensor::rand([1, 3, 192, 320], (Kind::Float, Device::Cpu)) * 2 - 1;
    for (label, vae) in [
        ("no mid attention", &no_attn),
        ("mid attention", &with_attn),
    ] {
        let whole = vae.encode(&images).unwrap();
        let tiled = vae.encode_tiled(&images, 16, 8).unwrap();
        assert_eq!(tiled.size(), whole.size());
        let (max, mean) = errors(&tiled, &whole);
        eprintln!("encode, {label}: max {max:.3}σ, mean {mean:.4}σ");
        assert!(
            max < ENCODE_MAX && mean < ENCODE_MEAN,
            "encode {label}: {max} {mean}"
        );
    }
}

/// With a local, per-pixel stand-in for the VAE, tiling is exact up to rounding: what is
/// left of the real VAE's error is its non-locality (GroupNorm, attention, padding), not
/// the blending.
#[test]
fn tiling_a_local_function_is_exact() {
    let z = latents();
    let local = |x: &Tensor| -> imagelab_engine::Result<Tensor> {
        Ok(
            x.upsample_nearest2d([x.size()[2] * 8, x.size()[3] * 8], None, None)
                .tanh()
                * 3.0,
        )
    };
    let whole = local(&z).unwrap();
    for (tile, overlap) in [(8, 4), (16, 8), (12, 3), (7, 1)] {
        let tiled = tiled_apply(&z, 1, tile, overlap, 8, &local).unwrap();
        let err = (&tiled - &whole).abs().max().double_value(&[]);
        assert!(err < 1e-5, "tile {tile} overlap {overlap}: {err}");
    }
}

#[test]
fn blending_weights_sum_to_one_everywhere() {
    for size in [1, 7, 16, 24, 40, 64, 100, 128] {
        for tile in [1, 4, 8, 16, 32, 64] {
            for overlap in [0, 1, 2, 4, 8, 16] {
                for scale in [1, 8] {
                    let tiles = axis_tiles(size, tile, overlap, scale);
                    let mut sum = vec![0f64; (size * scale) as usize];
                    for t in &tiles {
                        assert_eq!(t.weights.len() as i64, t.len);
                        assert!(t.start >= 0 && t.start + t.len <= size * scale);
                        for (x, w) in t.weights.iter().enumerate() {
                            assert!(*w > 0.0);
                            sum[t.start as usize + x] += *w as f64;
                        }
                    }
                    for (x, s) in sum.iter().enumerate() {
                        assert!(
                            (s - 1.0).abs() < 1e-6,
                            "size {size} tile {tile} overlap {overlap} scale {scale}: {s} at {x}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn blending_weights_feather_across_the_overlap() {
    // 24 cells in tiles of 16 overlapping by 8: tiles at 0 and 8, seam region 8..16.
    let tiles = axis_tiles(24, 16, 8, 1);
    assert_eq!(tiles.iter().map(|t| t.start).collect::<Vec<_>>(), [0, 8]);
    let first = &tiles[0].weights;
    assert_eq!(first[..8], [1.0; 8]);
    // Strictly decreasing through the overlap: no step, so no visible seam.
    assert!(first[8..].windows(2).all(|w| w[1] < w[0]));
}

#[test]
fn bad_tiling_is_an_error() {
    let (vae, _) = vaes();
    let z = latents();
    assert!(vae.decode_tiled(&z, 8, 8).is_err());
    assert!(vae.decode_tiled(&z, 0, 0).is_err());
}
