//! The Stable Diffusion UNet (SD 1.x, 2.x, SDXL) in the single-file (LDM) layout: weight
//! names are those under `model.diffusion_model.` in a single-file checkpoint; diffusers
//! folders are presented under the same names through [`diffusers_keys`].

mod blocks;
pub mod config;
pub mod diffusers_keys;
mod forward;
mod plan;

pub use config::{HeadRule, UNetConfig, UNetFamily};
pub use diffusers_keys::{diffusers_to_ldm_key, diffusers_unet_index, DiffusersLayout};

pub use blocks::BlockOptions;
pub use forward::UNetInput;

use crate::error::Result;
use crate::layers::{Conv2d, GroupNorm, Linear};
use crate::weights::Weights;
use blocks::load_conv;
use plan::{build_block, Layer, LayerSpec, UNetPlan};
use tch::{Kind, Tensor};

/// Sinusoidal embedding of (possibly fractional) timesteps `t` `[n]` → `[n, dim]`, laid out
/// `[cos | sin]` with frequencies `10000^(-i/half)` (LDM's `timestep_embedding`, diffusers'
/// `flip_sin_to_cos=True, downscale_freq_shift=0`). Always computed in fp32; the operation
/// order follows diffusers so fp32 rounding matches it too.
pub fn timestep_embedding(t: &Tensor, dim: i64) -> Tensor {
    let half = dim / 2;
    let exponent = Tensor::arange(half, (Kind::Float, t.device())) * (-(10000f64.ln()));
    let freqs = (exponent / half as f64).exp();
    let args = t.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let emb = Tensor::cat(&[args.cos(), args.sin()], -1);
    if dim % 2 == 1 {
        emb.pad([0, 1], "constant", Some(0.0))
    } else {
        emb
    }
}

/// `pooled` followed by a 256-wide sinusoidal embedding of each number, the same for every
/// batch row: the vector SDXL's `label_emb` takes.
fn pooled_with_numbers(pooled: &Tensor, numbers: &[f32]) -> Tensor {
    let count = numbers.len() as i64;
    let ids = Tensor::from_slice(numbers).to_device(pooled.device());
    let batch = pooled.size()[0];
    let embedded = timestep_embedding(&ids, 256)
        .reshape([1, count * 256])
        .expand([batch, count * 256], false);
    Tensor::cat(
        &[pooled.shallow_clone(), embedded.to_kind(pooled.kind())],
        1,
    )
}

/// SDXL's conditioning vector `y`: the pooled text embedding followed by 256-wide
/// embeddings of original height, original width, crop top, crop left, target height and
/// target width (the order of diffusers' `add_time_ids` and ComfyUI's `encode_adm`).
/// `pooled` may be any width (1280 for SDXL's OpenCLIP-G), giving `[B, width + 1536]`.
pub fn sdxl_vector(
    pooled: &Tensor,
    original_hw: (i64, i64),
    crop_tl: (i64, i64),
    target_hw: (i64, i64),
) -> Tensor {
    let numbers = [
        original_hw.0,
        original_hw.1,
        crop_tl.0,
        crop_tl.1,
        target_hw.0,
        target_hw.1,
    ];
    pooled_with_numbers(pooled, &numbers.map(|v| v as f32))
}

/// The SDXL refiner's `y`: pooled text, then original height, original width, crop top,
/// crop left and the aesthetic score (diffusers' `requires_aesthetics_score` time ids;
/// ComfyUI uses 6.0 for the positive prompt and 2.5 for the negative), `[B, width + 1280]`.
pub fn sdxl_refiner_vector(
    pooled: &Tensor,
    original_hw: (i64, i64),
    crop_tl: (i64, i64),
    aesthetic_score: f64,
) -> Tensor {
    let numbers = [
        original_hw.0 as f32,
        original_hw.1 as f32,
        crop_tl.0 as f32,
        crop_tl.1 as f32,
        aesthetic_score as f32,
    ];
    pooled_with_numbers(pooled, &numbers)
}

/// How a loaded UNet computes and where its block weights live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UNetOptions {
    pub blocks: BlockOptions,
    /// Sequential offload: keep only the small layers (embeddings, `out`) on the device
    /// and copy each block's weights there from the memory-mapped file when the block
    /// runs, freeing them after. The page cache is the host copy; nothing else is held.
    pub stream_blocks: bool,
}

/// The blocks of the down path, the middle and the up path.
#[derive(Debug)]
enum Blocks {
    /// Built once at load and kept on the device.
    Resident {
        input: Vec<Vec<Layer>>,
        middle: Vec<Layer>,
        output: Vec<Vec<Layer>>,
    },
    /// Built from `weights` each time they run (sequential offload).
    Streamed { weights: Weights, plan: UNetPlan },
}

/// The UNet with its weights loaded.
#[derive(Debug)]
pub struct UNet {
    cfg: UNetConfig,
    options: UNetOptions,
    time_embed: (Linear, Linear),
    label_emb: Option<(Linear, Linear)>,
    blocks: Blocks,
    plan: UNetPlan,
    out_norm: GroupNorm,
    out_conv: Conv2d,
}

impl UNet {
    /// Loads every weight of `cfg`'s architecture from `w` (a view at `model.diffusion_model`).
    pub fn load(w: &Weights, cfg: &UNetConfig) -> Result<UNet> {
        UNet::load_with(w, cfg, UNetOptions::default())
    }

    /// [`UNet::load`] with fused projections, channels-last, sliced attention or
    /// sequential offload as `options` asks.
    pub fn load_with(w: &Weights, cfg: &UNetConfig, options: UNetOptions) -> Result<UNet> {
        let plan = UNetPlan::of(cfg)?;
        let (mc, ted) = (cfg.model_channels, cfg.time_embed_dim);
        let opts = options.blocks;
        let time_embed = (
            Linear::load(w, "time_embed.0", mc, ted)?,
            Linear::load(w, "time_embed.2", ted, ted)?,
        );
        let label_emb = match cfg.adm_in_channels {
            Some(adm) => Some((
                Linear::load(w, "label_emb.0.0", adm, ted)?,
                Linear::load(w, "label_emb.0.2", ted, ted)?,
            )),
            None => None,
        };
        let blocks = if options.stream_blocks {
            // Build each block once now, so a truncated or mismatched file fails the load
            // and not a step; only one block is on the device at a time. Streamed blocks
            // are not counted as resident bytes.
            let weights = w.uncounted();
            for specs in plan.blocks() {
                drop(build_block(specs, &weights, cfg, opts)?);
            }
            Blocks::Streamed {
                weights,
                plan: plan.clone(),
            }
        } else {
            let build_all = |blocks: &[Vec<LayerSpec>]| -> Result<Vec<Vec<Layer>>> {
                blocks
                    .iter()
                    .map(|specs| build_block(specs, w, cfg, opts))
                    .collect()
            };
            Blocks::Resident {
                input: build_all(&plan.input_blocks)?,
                middle: build_block(&plan.middle_block, w, cfg, opts)?,
                output: build_all(&plan.output_blocks)?,
            }
        };
        Ok(UNet {
            cfg: cfg.clone(),
            options,
            time_embed,
            label_emb,
            blocks,
            plan,
            out_norm: GroupNorm::load(w, "out.0", mc, 32, 1e-5)?,
            out_conv: load_conv(w, "out.2", mc, cfg.out_channels, 3, 1, 1, opts)?,
        })
    }

    pub fn options(&self) -> UNetOptions {
        self.options
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }
}
