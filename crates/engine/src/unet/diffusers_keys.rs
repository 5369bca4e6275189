//! Renames a diffusers-layout UNet (`unet/diffusion_pytorch_model.safetensors`) to the
//! single-file (LDM) names, so one loader and one config detector serve both layouts.
//!
//! The block numbering depends on how many resnets each diffusers block has and on whether
//! an up block has attentions (its upsampler is then the third entry of the LDM output
//! block, not the second); both are read from the names themselves, so `config.json` is
//! not needed.

use crate::error::{EngineError, Result};
use crate::weights::WeightFile;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The block structure of a diffusers UNet, read from its tensor names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffusersLayout {
    /// Resnets in each `down_blocks.i`.
    pub down_resnets: Vec<usize>,
    /// Resnets in each `up_blocks.i`.
    pub up_resnets: Vec<usize>,
    /// Whether each `up_blocks.i` has attentions.
    pub up_attentions: Vec<bool>,
}

/// Parses `prefix.<block>.<kind>.<index>.<rest>` into numbers and names.
fn split_block<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str, usize, &'a str)> {
    let tail = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut parts = tail.splitn(4, '.');
    let block = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let index = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    Some((block, kind, index, rest))
}

impl DiffusersLayout {
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> DiffusersLayout {
        let mut layout = DiffusersLayout::default();
        let grow = |v: &mut Vec<usize>, block: usize, index: usize| {
            if v.len() <= block {
                v.resize(block + 1, 0);
            }
            v[block] = v[block].max(index + 1);
        };
        for name in names {
            if let Some((block, "resnets", index, _)) = split_block(name, "down_blocks") {
                grow(&mut layout.down_resnets, block, index);
            }
            if let Some((block, kind, index, _)) = split_block(name, "up_blocks") {
                if layout.up_attentions.len() <= block {
                    layout.up_attentions.resize(block + 1, false);
                }
                match kind {
                    "resnets" => grow(&mut layout.up_resnets, block, index),
                    "attentions" => layout.up_attentions[block] = true,
                    _ => {}
                }
            }
        }
        layout.up_resnets.resize(layout.up_attentions.len(), 0);
        layout
    }

    /// LDM index of the first input block of down block `block`.
    fn first_input(&self, block: usize) -> usize {
        1 + self
            .down_resnets
            .iter()
            .take(block)
            .map(|n| n + 1)
            .sum::<usize>()
    }

    fn first_output(&self, block: usize) -> usize {
        self.up_resnets.iter().take(block).sum()
    }
}

/// Renames the part of a resnet key after `resnets.N.`.
fn resnet_rest(rest: &str) -> Option<String> {
    let (layer, param) = rest.split_once('.')?;
    let ldm = match layer {
        "norm1" => "in_layers.0",
        "conv1" => "in_layers.2",
        "time_emb_proj" => "emb_layers.1",
        "norm2" => "out_layers.0",
        "conv2" => "out_layers.3",
        "conv_shortcut" => "skip_connection",
        _ => return None,
    };
    Some(format!("{ldm}.{param}"))
}

/// The single-file name (relative to `model.diffusion_model.`) of diffusers UNet tensor
/// `name`, or `None` for a name this layout does not have.
pub fn diffusers_to_ldm_key(name: &str, layout: &DiffusersLayout) -> Option<String> {
    const DIRECT: [(&str, &str); 9] = [
        ("conv_in.", "input_blocks.0.0."),
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        // SDXL's size/pooled embedding and SD 2.x unCLIP's class embedding are both `label_emb`.
        ("add_embedding.linear_1.", "label_emb.0.0."),
        ("add_embedding.linear_2.", "label_emb.0.2."),
        ("class_embedding.linear_1.", "label_emb.0.0."),
        ("class_embedding.linear_2.", "label_emb.0.2."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
    ];
    for (from, to) in DIRECT {
        if let Some(param) = name.strip_prefix(from) {
            return Some(format!("{to}{param}"));
        }
    }
    if let Some((block, kind, index, rest)) = split_block(name, "down_blocks") {
        let resnets = *layout.down_resnets.get(block)?;
        let first = layout.first_input(block);
        return match kind {
            "resnets" if index < resnets => Some(format!(
                "input_blocks.{}.0.{}",
                first + index,
                resnet_rest(rest)?
            )),
            "attentions" if index < resnets => {
                Some(format!("input_blocks.{}.1.{rest}", first + index))
            }
            "downsamplers" if index == 0 && block + 1 < layout.down_resnets.len() => {
                let param = rest.strip_prefix("conv.")?;
                Some(format!("input_blocks.{}.0.op.{param}", first + resnets))
            }
            _ => None,
        };
    }
    if let Some(tail) = name.strip_prefix("mid_block.") {
        let (kind, tail) = tail.split_once('.')?;
        let (index, rest) = tail.split_once('.')?;
        return match (kind, index) {
            ("resnets", "0") => Some(format!("middle_block.0.{}", resnet_rest(rest)?)),
            ("attentions", "0") => Some(format!("middle_block.1.{rest}")),
            ("resnets", "1") => Some(format!("middle_block.2.{}", resnet_rest(rest)?)),
            _ => None,
        };
    }
    if let Some((block, kind, index, rest)) = split_block(name, "up_blocks") {
        let resnets = *layout.up_resnets.get(block)?;
        let first = layout.first_output(block);
        return match kind {
            "resnets" if index < resnets => Some(format!(
                "output_blocks.{}.0.{}",
                first + index,
                resnet_rest(rest)?
            )),
            "attentions" if index < resnets => {
                Some(format!("output_blocks.{}.1.{rest}", first + index))
            }
            "upsamplers" if index == 0 && resnets > 0 && block + 1 < layout.up_resnets.len() => {
                let param = rest.strip_prefix("conv.")?;
                let slot = if layout.up_attentions.get(block) == Some(&true) {
                    2
                } else {
                    1
                };
                Some(format!(
                    "output_blocks.{}.{slot}.conv.{param}",
                    first + resnets - 1
                ))
            }
            _ => None,
        };
    }
    None
}

/// Indexes every tensor of a diffusers UNet file under `prefix` + its single-file name
/// (pass `"model.diffusion_model."` to sit beside a single-file checkpoint's other parts),
/// ready for [`crate::weights::Weights::from_mapping`]. Fails naming the first tensor
/// that has no single-file counterpart.
pub fn diffusers_unet_index(
    file: &Arc<WeightFile>,
    prefix: &str,
) -> Result<HashMap<String, (Arc<WeightFile>, String)>> {
    let shapes: BTreeMap<String, Vec<i64>> = file.shapes();
    let layout = DiffusersLayout::from_names(shapes.keys().map(String::as_str));
    let mut index = HashMap::with_capacity(shapes.len());
    for name in shapes.keys() {
        let ldm = diffusers_to_ldm_key(name, &layout).ok_or_else(|| {
            EngineError::UnknownArchitecture {
                path: file.path().to_path_buf(),
                reason: format!(
                    "diffusers UNet tensor {name} has no single-file (LDM) counterpart"
                ),
            }
        })?;
        if let Some((_, previous)) =
            index.insert(format!("{prefix}{ldm}"), (file.clone(), name.clone()))
        {
            return Err(EngineError::UnknownArchitecture {
                path: file.path().to_path_buf(),
                reason: format!("diffusers UNet tensors {previous} and {name} both map to {ldm}"),
            });
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SD 1.5's layout: 4 down blocks of 2 resnets, 4 up blocks of 3, no attention in the
    /// first up block; the expected names are those of the published single-file checkpoint.
    #[test]
    fn sd15_names_map_to_the_single_file_ones() {
        let layout = DiffusersLayout {
            down_resnets: vec![2, 2, 2, 2],
            up_resnets: vec![3, 3, 3, 3],
            up_attentions: vec![false, true, true, true],
        };
        let cases = [
            ("conv_in.weight", "input_blocks.0.0.weight"),
            (
                "down_blocks.0.attentions.1.proj_in.weight",
                "input_blocks.2.1.proj_in.weight",
            ),
            (
                "down_blocks.0.downsamplers.0.conv.bias",
                "input_blocks.3.0.op.bias",
            ),
            (
                "down_blocks.1.resnets.0.conv_shortcut.weight",
                "input_blocks.4.0.skip_connection.weight",
            ),
            (
                "down_blocks.3.resnets.1.conv2.weight",
                "input_blocks.11.0.out_layers.3.weight",
            ),
            (
                "mid_block.resnets.1.time_emb_proj.bias",
                "middle_block.2.emb_layers.1.bias",
            ),
            (
                "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
                "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight",
            ),
            (
                "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.2.1.conv.weight",
            ),
            (
                "up_blocks.1.upsamplers.0.conv.weight",
                "output_blocks.5.2.conv.weight",
            ),
            (
                "up_blocks.3.resnets.2.norm1.weight",
                "output_blocks.11.0.in_layers.0.weight",
            ),
            (
                "up_blocks.3.attentions.2.proj_out.bias",
                "output_blocks.11.1.proj_out.bias",
            ),
            ("conv_norm_out.weight", "out.0.weight"),
        ];
        for (diffusers, ldm) in cases {
            assert_eq!(
                diffusers_to_ldm_key(diffusers, &layout).as_deref(),
                Some(ldm),
                "{diffusers}"
            );
        }
        for unknown in [
            "up_blocks.3.upsamplers.0.conv.weight",
            "down_blocks.4.resnets.0.conv1.weight",
            "encoder_hid_proj.weight",
        ] {
            assert_eq!(diffusers_to_ldm_key(unknown, &layout), None, "{unknown}");
        }
    }
}
