//! Tiled VAE decode and encode for small cards: the image is processed in overlapping
//! tiles and the tiles are blended with feathered weights, so peak activation memory is
//! bounded by the tile, not the image.
//!
//! Tiles are laid out on the latent grid (so every pixel tile starts on a multiple of the
//! downscale factor). Along each axis a tile's weight ramps up linearly across the overlap
//! it shares with the tile before it and down across the overlap with the tile after it;
//! the weights at each position are then divided by their sum, so they add up to exactly 1
//! everywhere and a flat region stays flat across a seam. The 2-D weight of a tile is the
//! product of its two axis weights, which therefore also sums to 1 over all tiles.
//!
//! The result is an approximation: each tile's convolutions see zero padding at the tile
//! edge instead of the neighbours (the feathering hides that in the overlap), and the mid
//! block's self-attention attends within the tile rather than over the whole image.

use super::AutoencoderKl;
use crate::error::{EngineError, Result};
use tch::{Kind, Tensor};

/// The tiles along one axis: each tile's start and length, and its normalised weight at
/// every position it covers (in units of `scale` per grid cell).
#[derive(Debug, Clone, PartialEq)]
pub struct AxisTile {
    pub start: i64,
    pub len: i64,
    pub weights: Vec<f32>,
}

/// Tile starts on a grid of `size` cells: `0, stride, 2·stride, …`, the last one moved back
/// to end exactly at `size` (its overlap with the previous tile is then larger).
fn tile_starts(size: i64, tile: i64, overlap: i64) -> Vec<i64> {
    if size <= tile {
        return vec![0];
    }
    let stride = (tile - overlap).max(1);
    let mut starts = Vec::new();
    let mut start = 0;
    while start + tile < size {
        starts.push(start);
        start += stride;
    }
    starts.push(size - tile);
    starts
}

/// The tiles and their blending weights along an axis of `size` grid cells, with tiles of
/// `tile` cells overlapping by `overlap`, at `scale` samples per cell (the VAE's factor for
/// a decoded image, 1 for latents).
pub fn axis_tiles(size: i64, tile: i64, overlap: i64, scale: i64) -> Vec<AxisTile> {
    let tile = tile.min(size).max(1);
    let overlap = overlap.clamp(0, tile - 1);
    let starts = tile_starts(size, tile, overlap);
    let ramp = (overlap * scale).max(1) as f32;
    let len = tile * scale;
    let raw: Vec<Vec<f32>> = starts
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let has_before = i > 0;
            let has_after = i + 1 < starts.len();
            (0..len)
                .map(|x| {
                    // (x + ½)/ramp: strictly positive, so every position has some weight.
                    let up = if has_before {
                        ((x as f32 + 0.5) / ramp).min(1.0)
                    } else {
                        1.0
                    };
                    let down = if has_after {
                        (((len - x) as f32 - 0.5) / ramp).min(1.0)
                    } else {
                        1.0
                    };
                    up.min(down)
                })
                .collect()
        })
        .collect();
    let mut total = vec![0f32; (size * scale) as usize];
    for (start, w) in starts.iter().zip(&raw) {
        for (x, v) in w.iter().enumerate() {
            total[(start * scale) as usize + x] += v;
        }
    }
    starts
        .iter()
        .zip(raw)
        .map(|(&start, w)| AxisTile {
            start: start * scale,
            len,
            weights: w
                .iter()
                .enumerate()
                .map(|(x, v)| v / total[(start * scale) as usize + x])
                .collect(),
        })
        .collect()
}

fn check_tiling(tile: i64, overlap: i64) -> Result<()> {
    if tile < 1 || overlap < 0 || overlap >= tile {
        return Err(EngineError::Invalid {
            field: "vae tiling",
            value: format!("tile {tile}, overlap {overlap}"),
            expected: "a tile of at least 1 latent cell and an overlap smaller than it".into(),
        });
    }
    Ok(())
}

/// Runs `f` on every tile of `input` (`grid` input samples per grid cell; tiles of `tile`
/// cells overlapping by `overlap`), blending the outputs (`out_scale` output samples per
/// cell) with the feathered weights of [`axis_tiles`]. Returns fp32.
pub fn tiled_apply(
    input: &Tensor,
    grid: i64,
    tile: i64,
    overlap: i64,
    out_scale: i64,
    f: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    check_tiling(tile, overlap)?;
    let size = input.size();
    let (h, w) = (size[2] / grid, size[3] / grid);
    let rows = axis_tiles(h, tile, overlap, out_scale);
    let cols = axis_tiles(w, tile, overlap, out_scale);
    let in_rows = axis_tiles(h, tile, overlap, grid);
    let in_cols = axis_tiles(w, tile, overlap, grid);
    let mut out: Option<Tensor> = None;
    for (row, in_row) in rows.iter().zip(&in_rows) {
        for (col, in_col) in cols.iter().zip(&in_cols) {
            let piece = input.f_narrow(2, in_row.start, in_row.len)?.f_narrow(
                3,
                in_col.start,
                in_col.len,
            )?;
            let decoded = f(&piece)?.f_to_kind(Kind::Float)?;
            let device = decoded.device();
            let wy = Tensor::from_slice(&row.weights)
                .to_device(device)
                .view([1, 1, -1, 1]);
            let wx = Tensor::from_slice(&col.weights)
                .to_device(device)
                .view([1, 1, 1, -1]);
            let acc = out.get_or_insert_with(|| {
                let d = decoded.size();
                Tensor::zeros(
                    [d[0], d[1], h * out_scale, w * out_scale],
                    (Kind::Float, device),
                )
            });
            let mut target = acc
                .f_narrow(2, row.start, row.len)?
                .f_narrow(3, col.start, col.len)?;
            let _ = target.f_add_(&(decoded * wy * wx))?;
        }
    }
    out.ok_or_else(|| EngineError::Invalid {
        field: "vae tiling",
        value: format!("input of shape {size:?}"),
        expected: "a non-empty image".into(),
    })
}

impl AutoencoderKl {
    /// [`AutoencoderKl::decode`] in tiles of `tile` latent cells overlapping by `overlap`
    /// (for SD: 64 and 16 latent cells are 512 and 128 pixels). Returns fp32.
    pub fn decode_tiled(&self, latents: &Tensor, tile: i64, overlap: i64) -> Result<Tensor> {
        self.check_input("latents", latents, self.config.latent_channels, 1)?;
        let factor = self.config.downscale_factor();
        tiled_apply(latents, 1, tile, overlap, factor, &|piece| {
            self.decode(piece)
        })
    }

    /// [`AutoencoderKl::encode`] in tiles of `tile` latent cells (`tile × factor` pixels)
    /// overlapping by `overlap` latent cells. Returns fp32.
    pub fn encode_tiled(&self, images: &Tensor, tile: i64, overlap: i64) -> Result<Tensor> {
        let factor = self.config.downscale_factor();
        self.check_input("images", images, self.config.in_channels, factor)?;
        tiled_apply(images, factor, tile, overlap, 1, &|piece| {
            self.encode(piece)
        })
    }
}
