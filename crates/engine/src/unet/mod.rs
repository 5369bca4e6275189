//! The Stable Diffusion UNet (SD 1.x, 2.x, SDXL) in the single-file (LDM) layout: weight
//! names are those under `model.diffusion_model.` in a single-file checkpoint; diffusers
//! folders are presented under the same names through [`diffusers_keys`].

mod blocks;
pub mod config;
pub mod diffusers_keys;

pub use config::{HeadRule, UNetConfig, UNetFamily};
pub use diffusers_keys::{diffusers_to_ldm_key, diffusers_unet_index, DiffusersLayout};

use crate::error::{EngineError, Result};
use crate::layers::{Conv2d, GroupNorm, Linear};
use crate::weights::Weights;
use blocks::{Downsample, ResBlock, SpatialTransformer, Upsample};
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

/// One step of a UNet block: the single-file layout's `input_blocks.N.M` entries.
#[derive(Debug)]
enum Layer {
    ConvIn(Conv2d),
    Res(ResBlock),
    Attn(SpatialTransformer),
    Down(Downsample),
    Up(Upsample),
}

/// The UNet with its weights loaded.
#[derive(Debug)]
pub struct UNet {
    cfg: UNetConfig,
    time_embed: (Linear, Linear),
    label_emb: Option<(Linear, Linear)>,
    input_blocks: Vec<Vec<Layer>>,
    middle_block: Vec<Layer>,
    output_blocks: Vec<Vec<Layer>>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
}

/// Loads the transformer at `prefix` if `depth > 0`.
fn transformer(
    w: &Weights,
    cfg: &UNetConfig,
    prefix: &str,
    channels: i64,
    depth: usize,
) -> Result<Option<Layer>> {
    if depth == 0 {
        return Ok(None);
    }
    let heads = cfg
        .heads
        .heads(channels)
        .ok_or_else(|| EngineError::Invalid {
            field: "UNet attention heads",
            value: format!("{:?}", cfg.heads),
            expected: format!("a split of the {channels} channels of {prefix}"),
        })?;
    let t = SpatialTransformer::load(
        &w.at(prefix),
        channels,
        depth,
        cfg.context_dim,
        heads,
        cfg.linear_projection,
    )?;
    Ok(Some(Layer::Attn(t)))
}

fn config_mismatch(what: &str) -> EngineError {
    EngineError::Invalid {
        field: "UNet config",
        value: what.to_string(),
        expected: "lists consistent with channel_mult and num_res_blocks".into(),
    }
}

impl UNet {
    /// Loads every weight of `cfg`'s architecture from `w` (a view at `model.diffusion_model`).
    pub fn load(w: &Weights, cfg: &UNetConfig) -> Result<UNet> {
        let levels = cfg.channel_mult.len();
        if levels == 0 || cfg.num_res_blocks.len() != levels {
            return Err(config_mismatch("num_res_blocks"));
        }
        let total_res: usize = cfg.num_res_blocks.iter().sum();
        if cfg.input_depth.len() != total_res {
            return Err(config_mismatch("input_depth"));
        }
        if cfg.output_depth.len() != total_res + levels {
            return Err(config_mismatch("output_depth"));
        }
        let (mc, ted) = (cfg.model_channels, cfg.time_embed_dim);
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

        let mut input_blocks = vec![vec![Layer::ConvIn(Conv2d::load(
            w,
            "input_blocks.0.0",
            cfg.in_channels,
            mc,
            3,
            1,
            1,
        )?)]];
        // Widths of the tensors the down path hands to the up path, in push order.
        let mut skip_widths = vec![mc];
        let mut width = mc;
        let mut depths = cfg.input_depth.iter();
        for (level, (&mult, &blocks)) in
            cfg.channel_mult.iter().zip(&cfg.num_res_blocks).enumerate()
        {
            for _ in 0..blocks {
                let prefix = format!("input_blocks.{}", input_blocks.len());
                let out = mc * mult;
                let mut block = vec![Layer::Res(ResBlock::load(
                    &w.at(&format!("{prefix}.0")),
                    width,
                    out,
                    ted,
                )?)];
                width = out;
                let depth = depths.next().copied().unwrap_or(0);
                block.extend(transformer(w, cfg, &format!("{prefix}.1"), width, depth)?);
                input_blocks.push(block);
                skip_widths.push(width);
            }
            if level + 1 < levels {
                let prefix = format!("input_blocks.{}.0", input_blocks.len());
                input_blocks.push(vec![Layer::Down(Downsample::load(&w.at(&prefix), width)?)]);
                skip_widths.push(width);
            }
        }

        let mut middle_block = vec![Layer::Res(ResBlock::load(
            &w.at("middle_block.0"),
            width,
            width,
            ted,
        )?)];
        middle_block.extend(transformer(
            w,
            cfg,
            "middle_block.1",
            width,
            cfg.middle_depth,
        )?);
        middle_block.push(Layer::Res(ResBlock::load(
            &w.at("middle_block.2"),
            width,
            width,
            ted,
        )?));

        let mut output_blocks = Vec::new();
        let mut depths = cfg.output_depth.iter();
        for (level, (&mult, &blocks)) in cfg
            .channel_mult
            .iter()
            .zip(&cfg.num_res_blocks)
            .enumerate()
            .rev()
        {
            for i in 0..=blocks {
                let prefix = format!("output_blocks.{}", output_blocks.len());
                let skip = skip_widths
                    .pop()
                    .ok_or_else(|| config_mismatch("more output blocks than skips"))?;
                let out = mc * mult;
                let mut block = vec![Layer::Res(ResBlock::load(
                    &w.at(&format!("{prefix}.0")),
                    width + skip,
                    out,
                    ted,
                )?)];
                width = out;
                let depth = depths.next().copied().unwrap_or(0);
                block.extend(transformer(w, cfg, &format!("{prefix}.1"), width, depth)?);
                if level > 0 && i == blocks {
                    // The upsampler follows the transformer when there is one: `.2`, else `.1`.
                    let up_prefix = format!("{prefix}.{}", block.len());
                    block.push(Layer::Up(Upsample::load(&w.at(&up_prefix), width)?));
                }
                output_blocks.push(block);
            }
        }

        Ok(UNet {
            cfg: cfg.clone(),
            time_embed,
            label_emb,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: GroupNorm::load(w, "out.0", mc, 32, 1e-5)?,
            out_conv: Conv2d::load(w, "out.2", mc, cfg.out_channels, 3, 1, 1)?,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Predicts the model output (noise or v) for latents `x` `[B, in, H, W]` at
    /// `timesteps` `[B]` (or one value for the whole batch; fractional values allowed),
    /// with text `context` `[B, T, context_dim]` and, for SDXL, `y` `[B, adm_in_channels]`.
    pub fn forward(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Tensor> {
        let invalid = |field: &'static str, value: String, expected: String| EngineError::Invalid {
            field,
            value,
            expected,
        };
        let size = x.size();
        if size.len() != 4 || size[1] != self.cfg.in_channels {
            return Err(invalid(
                "UNet input",
                format!("{size:?}"),
                format!("[batch, {}, h, w]", self.cfg.in_channels),
            ));
        }
        let batch = size[0];
        let ctx = context.size();
        if ctx.len() != 3 || ctx[0] != batch || ctx[2] != self.cfg.context_dim {
            return Err(invalid(
                "UNet context",
                format!("{ctx:?}"),
                format!("[{batch}, tokens, {}]", self.cfg.context_dim),
            ));
        }
        let t = match timesteps.numel() {
            1 => timesteps.reshape([1]).expand([batch], false),
            n if n as i64 == batch => timesteps.reshape([batch]),
            _ => {
                return Err(invalid(
                    "UNet timesteps",
                    format!("{:?}", timesteps.size()),
                    format!("[{batch}] or one value"),
                ))
            }
        };

        let t_emb = timestep_embedding(&t, self.cfg.model_channels).to_kind(x.kind());
        let mut emb = self
            .time_embed
            .1
            .forward(&self.time_embed.0.forward(&t_emb).silu());
        match (&self.label_emb, y, self.cfg.adm_in_channels) {
            (Some((first, second)), Some(y), Some(adm)) => {
                if y.size() != [batch, adm] {
                    return Err(invalid(
                        "UNet y",
                        format!("{:?}", y.size()),
                        format!("[{batch}, {adm}]"),
                    ));
                }
                emb += second.forward(&first.forward(&y.to_kind(x.kind())).silu());
            }
            (None, None, _) => {}
            (Some(_), None, _) | (Some(_), Some(_), None) => {
                return Err(invalid(
                    "UNet y",
                    "none".into(),
                    "a conditioning vector (SDXL: see sdxl_vector)".into(),
                ))
            }
            (None, Some(_), _) => {
                return Err(invalid(
                    "UNet y",
                    "a vector".into(),
                    "none for this model".into(),
                ))
            }
        }
        let emb_act = emb.silu();
        let context = context.to_kind(x.kind());

        let run = |layers: &[Layer], mut h: Tensor, up_target: Option<(i64, i64)>| -> Tensor {
            for layer in layers {
                h = match layer {
                    Layer::ConvIn(conv) => conv.forward(&h),
                    Layer::Res(res) => res.forward(&h, &emb_act),
                    Layer::Attn(attn) => attn.forward(&h, &context),
                    Layer::Down(down) => down.forward(&h),
                    Layer::Up(up) => up.forward(&h, up_target),
                };
            }
            h
        };

        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.shallow_clone();
        for block in &self.input_blocks {
            h = run(block, h, None);
            skips.push(h.shallow_clone());
        }
        h = run(&self.middle_block, h, None);
        for block in &self.output_blocks {
            let skip = skips
                .pop()
                .ok_or_else(|| config_mismatch("more output blocks than skips"))?;
            h = Tensor::cat(&[h, skip], 1);
            // An upsampler must reach the size of the next skip it will be joined with.
            let target = skips.last().map(|s| (s.size()[2], s.size()[3]));
            h = run(block, h, target);
        }
        Ok(self.out_conv.forward(&self.out_norm.forward(&h).silu()))
    }
}
