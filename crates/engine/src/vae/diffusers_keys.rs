//! Presents a VAE file under the single-file (LDM) tensor names whatever its layout: a full
//! checkpoint (`first_stage_model.` prefix), a bare LDM VAE file, or a diffusers-layout file
//! (`encoder.down_blocks.0.resnets.0…`), the last through a key mapping, never a copy.

use crate::error::{EngineError, Result};
use crate::weights::{WeightFile, Weights};
use std::collections::HashMap;
use std::sync::Arc;

/// Prefix of the VAE inside single-file checkpoints.
pub const CHECKPOINT_VAE_PREFIX: &str = "first_stage_model";

/// Names that are the same in both layouts.
const SHARED_TOP_LEVEL: [&str; 6] = [
    "encoder.conv_in.",
    "encoder.conv_out.",
    "decoder.conv_in.",
    "decoder.conv_out.",
    "quant_conv.",
    "post_quant_conv.",
];

/// The LDM name of a diffusers-layout VAE tensor, or `None` when `key` is not one.
///
/// `num_up_blocks` is the number of decoder levels: diffusers numbers `up_blocks` from the
/// lowest resolution, LDM numbers `up` from the highest, so `up_blocks.i` is
/// `up.{num_up_blocks - 1 - i}`. Both the current attention names (`to_q`, `to_out.0`,
/// `group_norm`) and the older ones (`query`, `proj_attn`) are understood.
pub fn diffusers_to_ldm_key(key: &str, num_up_blocks: usize) -> Option<String> {
    if SHARED_TOP_LEVEL.iter().any(|p| key.starts_with(p)) {
        return Some(key.to_string());
    }
    if let Some(rest) = key.strip_prefix("encoder.conv_norm_out.") {
        return Some(format!("encoder.norm_out.{rest}"));
    }
    if let Some(rest) = key.strip_prefix("decoder.conv_norm_out.") {
        return Some(format!("decoder.norm_out.{rest}"));
    }
    let (half, rest) = key.split_once('.')?;
    if half != "encoder" && half != "decoder" {
        return None;
    }
    let parts: Vec<&str> = rest.split('.').collect();
    let mapped = match (half, parts.as_slice()) {
        ("encoder", ["down_blocks", level, "resnets", block, tail @ ..]) => {
            format!("down.{level}.block.{block}.{}", resnet_tail(tail)?)
        }
        ("encoder", ["down_blocks", level, "downsamplers", "0", "conv", param]) => {
            format!("down.{level}.downsample.conv.{param}")
        }
        ("decoder", ["up_blocks", level, "resnets", block, tail @ ..]) => {
            format!(
                "up.{}.block.{block}.{}",
                reverse_level(level, num_up_blocks)?,
                resnet_tail(tail)?
            )
        }
        ("decoder", ["up_blocks", level, "upsamplers", "0", "conv", param]) => {
            format!(
                "up.{}.upsample.conv.{param}",
                reverse_level(level, num_up_blocks)?
            )
        }
        (_, ["mid_block", "resnets", index @ ("0" | "1"), tail @ ..]) => {
            let number = if *index == "0" { 1 } else { 2 };
            format!("mid.block_{number}.{}", resnet_tail(tail)?)
        }
        (_, ["mid_block", "attentions", "0", tail @ ..]) => {
            format!("mid.attn_1.{}", attention_tail(tail)?)
        }
        _ => return None,
    };
    Some(format!("{half}.{mapped}"))
}

/// `norm1.weight`, `conv_shortcut.bias`, … inside a residual block.
fn resnet_tail(tail: &[&str]) -> Option<String> {
    match tail {
        [module @ ("norm1" | "conv1" | "norm2" | "conv2"), param] => {
            Some(format!("{module}.{param}"))
        }
        ["conv_shortcut", param] => Some(format!("nin_shortcut.{param}")),
        _ => None,
    }
}

/// `to_q.weight`, `to_out.0.bias`, `group_norm.weight`, … inside the mid attention.
fn attention_tail(tail: &[&str]) -> Option<String> {
    let (module, param) = match tail {
        [module, param] => (*module, *param),
        ["to_out", "0", param] => ("proj_out", *param),
        _ => return None,
    };
    let ldm = match module {
        "group_norm" => "norm",
        "to_q" | "query" => "q",
        "to_k" | "key" => "k",
        "to_v" | "value" => "v",
        "proj_out" | "proj_attn" => "proj_out",
        _ => return None,
    };
    Some(format!("{ldm}.{param}"))
}

fn reverse_level(level: &str, num_up_blocks: usize) -> Option<usize> {
    let level: usize = level.parse().ok()?;
    num_up_blocks.checked_sub(level + 1)
}

/// The layout a VAE file was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeLayout {
    /// A full checkpoint: LDM names under `first_stage_model.`.
    Checkpoint,
    /// A standalone LDM VAE: the same names without the prefix.
    BareLdm,
    /// A diffusers `AutoencoderKL` state dict.
    Diffusers,
}

/// Which layout a file with these tensor names is in, if it holds a VAE at all.
pub fn detect_layout<'a>(mut names: impl Iterator<Item = &'a String> + Clone) -> Option<VaeLayout> {
    let prefix = format!("{CHECKPOINT_VAE_PREFIX}.");
    if names.clone().any(|n| n.starts_with(&prefix)) {
        Some(VaeLayout::Checkpoint)
    } else if names
        .clone()
        .any(|n| n.starts_with("encoder.down_blocks.") || n.starts_with("decoder.up_blocks."))
    {
        Some(VaeLayout::Diffusers)
    } else if names.any(|n| n.starts_with("encoder.down.") || n.starts_with("decoder.up.")) {
        Some(VaeLayout::BareLdm)
    } else {
        None
    }
}

/// The VAE in `file` as a view at the LDM names (`encoder.conv_in.weight`, …), whatever
/// the file's layout. Diffusers tensors that have no LDM counterpart are left out.
pub fn vae_weights_from_file(file: Arc<WeightFile>) -> Result<Weights> {
    let shapes = file.shapes();
    match detect_layout(shapes.keys()) {
        Some(VaeLayout::Checkpoint) => Ok(Weights::from_file(file).at(CHECKPOINT_VAE_PREFIX)),
        Some(VaeLayout::BareLdm) => Ok(Weights::from_file(file)),
        Some(VaeLayout::Diffusers) => {
            let num_up_blocks = shapes
                .keys()
                .filter_map(|k| k.strip_prefix("decoder.up_blocks.")?.split('.').next()?.parse::<usize>().ok())
                .max()
                .map_or(0, |highest| highest + 1);
            let index: HashMap<String, (Arc<WeightFile>, String)> = shapes
                .keys()
                .filter_map(|k| Some((diffusers_to_ldm_key(k, num_up_blocks)?, (file.clone(), k.clone()))))
                .collect();
            Ok(Weights::from_mapping(file.path().display().to_string(), index))
        }
        None => Err(EngineError::UnknownArchitecture {
            path: file.path().to_path_buf(),
            reason: format!(
                "no VAE tensors: expected names under {CHECKPOINT_VAE_PREFIX}., encoder.down./decoder.up. \
                 (LDM) or encoder.down_blocks./decoder.up_blocks. (diffusers)"
            ),
        }),
    }
}
