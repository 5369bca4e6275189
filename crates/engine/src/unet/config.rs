//! UNet hyper-parameters read from a single-file checkpoint's tensor names and shapes (the
//! way ComfyUI's model detection does), so no YAML config is ever needed.

use crate::error::{EngineError, Result};
use crate::weights::Weights;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How many attention heads a transformer of a given width has.
///
/// SD 1.x was trained with a fixed 8 heads (`num_heads=8`); SD 2.x and SDXL with a fixed
/// head width of 64 (`num_head_channels=64`). Checkpoints do not record this (the q/k/v
/// matrices are the same for any split), so [`UNetConfig::detect`] picks it from the
/// family, and the field is public so a caller can override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRule {
    /// Always this many heads.
    Count(i64),
    /// Heads of this many channels each.
    Width(i64),
}

impl HeadRule {
    /// Heads for a transformer `channels` wide, or `None` when the rule does not divide it.
    pub fn heads(self, channels: i64) -> Option<i64> {
        let (heads, width) = match self {
            HeadRule::Count(n) => (n, if n > 0 { channels / n } else { 0 }),
            HeadRule::Width(d) => (if d > 0 { channels / d } else { 0 }, d),
        };
        (heads > 0 && width > 0 && heads * width == channels).then_some(heads)
    }
}

/// The model family, from the cross-attention context width and the label embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UNetFamily {
    /// Context 768 (CLIP-L).
    Sd1,
    /// Context 1024 (OpenCLIP-H).
    Sd2,
    /// Context 2048 (CLIP-L + OpenCLIP-G) with a 2816-wide label embedding.
    Sdxl,
    /// Context 1280 (OpenCLIP-G) with a 2560-wide label embedding.
    SdxlRefiner,
    /// Same architecture, other widths (test models, unusual fine-tunes).
    Other,
}

/// Everything needed to build the UNet.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub family: UNetFamily,
    /// 4, or 9 for inpainting models (latent + mask + masked-image latent).
    pub in_channels: i64,
    pub out_channels: i64,
    /// Width of the first level (320 for SD 1.x/2.x/SDXL).
    pub model_channels: i64,
    /// Width of the timestep embedding (4 × model_channels in every SD model).
    pub time_embed_dim: i64,
    /// Width of level `i` = `model_channels * channel_mult[i]`.
    pub channel_mult: Vec<i64>,
    /// Residual blocks per level on the way down (the way up has one more).
    pub num_res_blocks: Vec<usize>,
    /// Transformer layers after each residual block on the way down, in order (0 = none).
    pub input_depth: Vec<usize>,
    /// Transformer layers in the middle block.
    pub middle_depth: usize,
    /// Transformer layers in each output block, in order (0 = none).
    pub output_depth: Vec<usize>,
    /// Width of the text context fed to cross-attention.
    pub context_dim: i64,
    /// `proj_in`/`proj_out` are linear layers (SD 2.x, SDXL) rather than 1x1 convs (SD 1.x).
    pub linear_projection: bool,
    pub heads: HeadRule,
    /// Width of the extra conditioning vector `y` (SDXL: pooled text + size embeddings).
    pub adm_in_channels: Option<i64>,
}

/// Where detection reads tensor names and shapes: a [`Weights`] view, or a bare name → shape
/// map (a file header, or a test's description of a full-size model).
trait ShapeSource {
    fn label(&self) -> &str;
    fn shape(&self, name: &str) -> Option<Vec<i64>>;
    fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }
}

impl ShapeSource for Weights {
    fn label(&self) -> &str {
        Weights::label(self)
    }
    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        Weights::shape(self, name)
    }
}

struct ShapeMap<'a> {
    label: &'a str,
    shapes: &'a BTreeMap<String, Vec<i64>>,
}

impl ShapeSource for ShapeMap<'_> {
    fn label(&self) -> &str {
        self.label
    }
    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.shapes.get(name).cloned()
    }
}

fn unknown(w: &impl ShapeSource, reason: String) -> EngineError {
    EngineError::UnknownArchitecture {
        path: PathBuf::from(w.label()),
        reason,
    }
}

/// What the transformer at `prefix` looks like, if there is one.
struct TransformerShape {
    depth: usize,
    channels: i64,
    context_dim: i64,
    linear: bool,
}

fn transformer_at(w: &impl ShapeSource, prefix: &str) -> Result<Option<TransformerShape>> {
    let Some(proj_in) = w.shape(&format!("{prefix}.proj_in.weight")) else {
        return Ok(None);
    };
    let depth = (0..)
        .take_while(|k| w.contains(&format!("{prefix}.transformer_blocks.{k}.norm1.weight")))
        .count();
    let to_k = format!("{prefix}.transformer_blocks.0.attn2.to_k.weight");
    let context = w.shape(&to_k).filter(|s| s.len() == 2);
    match (depth, context) {
        (d, Some(ctx)) if d > 0 => Ok(Some(TransformerShape {
            depth,
            channels: proj_in[0],
            context_dim: ctx[1],
            linear: proj_in.len() == 2,
        })),
        _ => Err(unknown(
            w,
            format!("{prefix} has proj_in but no cross-attention transformer layers ({to_k})"),
        )),
    }
}

/// Output width of the residual block at `prefix`, if there is one.
fn resblock_width(w: &impl ShapeSource, prefix: &str) -> Option<i64> {
    w.shape(&format!("{prefix}.out_layers.3.weight"))
        .and_then(|s| s.first().copied())
}

impl UNetConfig {
    /// Reads the configuration from `w`, a view at `model.diffusion_model`.
    pub fn detect(w: &Weights) -> Result<UNetConfig> {
        UNetConfig::detect_in(w)
    }

    /// The same from bare shapes, named relative to `model.diffusion_model.` (for example
    /// from [`crate::weights::WeightFile::shapes`] with the prefix stripped); `label` names
    /// the source in errors.
    pub fn detect_from_shapes(
        label: &str,
        shapes: &BTreeMap<String, Vec<i64>>,
    ) -> Result<UNetConfig> {
        UNetConfig::detect_in(&ShapeMap { label, shapes })
    }

    fn detect_in(w: &impl ShapeSource) -> Result<UNetConfig> {
        let conv_in = w
            .shape("input_blocks.0.0.weight")
            .filter(|s| s.len() == 4)
            .ok_or_else(|| {
                unknown(
                    w,
                    "no UNet input convolution input_blocks.0.0.weight".into(),
                )
            })?;
        let (model_channels, in_channels) = (conv_in[0], conv_in[1]);
        if model_channels <= 0 || in_channels <= 0 {
            return Err(unknown(
                w,
                format!("input_blocks.0.0.weight has shape {conv_in:?}"),
            ));
        }
        let conv_out = w
            .shape("out.2.weight")
            .filter(|s| s.len() == 4)
            .ok_or_else(|| unknown(w, "no UNet output convolution out.2.weight".into()))?;
        let time_embed_dim = w
            .shape("time_embed.0.weight")
            .filter(|s| s.len() == 2 && s[1] == model_channels)
            .map(|s| s[0])
            .ok_or_else(|| unknown(w, "no timestep embedding time_embed.0.weight".into()))?;
        if w.contains("label_emb.weight") {
            return Err(unknown(
                w,
                "class-label embedding label_emb.weight (e.g. the x4 upscaler) is not supported"
                    .into(),
            ));
        }
        let adm_in_channels = w
            .shape("label_emb.0.0.weight")
            .and_then(|s| s.get(1).copied());

        let mut transformers = Vec::new();
        let mut note = |t: &Option<TransformerShape>| {
            if let Some(t) = t {
                transformers.push((t.channels, t.context_dim, t.linear));
            }
        };

        // Down path: residual blocks (each maybe followed by a transformer), one `op`
        // downsampler closing every level but the last.
        let (mut levels, mut input_depth) = (Vec::<(i64, usize)>::new(), Vec::new());
        let (mut width, mut blocks_in_level) = (model_channels, 0usize);
        let mut n = 1;
        loop {
            let prefix = format!("input_blocks.{n}");
            if w.contains(&format!("{prefix}.0.op.weight")) {
                if blocks_in_level == 0 {
                    return Err(unknown(
                        w,
                        format!("{prefix} downsamples a level without residual blocks"),
                    ));
                }
                levels.push((width, blocks_in_level));
                blocks_in_level = 0;
            } else if let Some(out) = resblock_width(w, &format!("{prefix}.0")) {
                if blocks_in_level > 0 && out != width {
                    return Err(unknown(
                        w,
                        format!("{prefix} changes width inside a level ({width} → {out})"),
                    ));
                }
                width = out;
                blocks_in_level += 1;
                let t = transformer_at(w, &format!("{prefix}.1"))?;
                input_depth.push(t.as_ref().map_or(0, |t| t.depth));
                note(&t);
            } else {
                break;
            }
            n += 1;
        }
        if blocks_in_level == 0 {
            return Err(unknown(
                w,
                format!("input_blocks.{n} should be a residual block (no input_blocks.{n}.0.out_layers.3.weight)"),
            ));
        }
        levels.push((width, blocks_in_level));

        let mut channel_mult = Vec::new();
        for &(level_width, _) in &levels {
            if level_width % model_channels != 0 {
                return Err(unknown(
                    w,
                    format!("level width {level_width} is not a multiple of {model_channels}"),
                ));
            }
            channel_mult.push(level_width / model_channels);
        }
        let num_res_blocks: Vec<usize> = levels.iter().map(|&(_, count)| count).collect();

        for k in [0, 2] {
            if resblock_width(w, &format!("middle_block.{k}")) != Some(width) {
                return Err(unknown(
                    w,
                    format!("middle_block.{k} is not a residual block {width} wide"),
                ));
            }
        }
        let middle = transformer_at(w, "middle_block.1")?.ok_or_else(|| {
            unknown(
                w,
                "middle block without a transformer (middle_block.1.proj_in) is not supported"
                    .into(),
            )
        })?;
        let middle_depth = middle.depth;
        note(&Some(middle));

        let expected_outputs: usize = num_res_blocks.iter().map(|b| b + 1).sum();
        let mut output_depth = Vec::new();
        while let Some(_out) = resblock_width(w, &format!("output_blocks.{}.0", output_depth.len()))
        {
            let t = transformer_at(w, &format!("output_blocks.{}.1", output_depth.len()))?;
            output_depth.push(t.as_ref().map_or(0, |t| t.depth));
            note(&t);
        }
        if output_depth.len() != expected_outputs {
            return Err(unknown(
                w,
                format!(
                    "{} output blocks, but {} input residual blocks imply {expected_outputs}",
                    output_depth.len(),
                    input_depth.len()
                ),
            ));
        }

        let (_, context_dim, linear_projection) = transformers[0];
        if let Some(&(c, ctx, lin)) = transformers
            .iter()
            .find(|&&(_, ctx, lin)| ctx != context_dim || lin != linear_projection)
        {
            return Err(unknown(
                w,
                format!("transformers disagree: context {context_dim}/linear {linear_projection} vs {ctx}/{lin} at width {c}"),
            ));
        }
        let family = match (context_dim, adm_in_channels) {
            (768, None) => UNetFamily::Sd1,
            (1024, None) => UNetFamily::Sd2,
            (2048, Some(2816)) => UNetFamily::Sdxl,
            (1280, Some(2560)) => UNetFamily::SdxlRefiner,
            _ => UNetFamily::Other,
        };
        // SD 1.x is the only family with conv projections and the only one with a fixed
        // head count; keying the rule on the projection (rather than on context 768) makes
        // it hold for any width, including small test models built like each family.
        let heads = if linear_projection {
            HeadRule::Width(64)
        } else {
            HeadRule::Count(8)
        };
        if let Some(&(c, _, _)) = transformers
            .iter()
            .find(|&&(c, _, _)| heads.heads(c).is_none())
        {
            return Err(unknown(
                w,
                format!("attention width {c} cannot be split into heads by {heads:?}"),
            ));
        }

        Ok(UNetConfig {
            family,
            in_channels,
            out_channels: conv_out[0],
            model_channels,
            time_embed_dim,
            channel_mult,
            num_res_blocks,
            input_depth,
            middle_depth,
            output_depth,
            context_dim,
            linear_projection,
            heads,
            adm_in_channels,
        })
    }
}
