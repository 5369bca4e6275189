//! Where a LoRA module lands: the name of the weight it patches in a loaded network, in the
//! names the network's registry uses (single-file LDM names relative to
//! `model.diffusion_model.` for the UNet; the encoder's own layout for text encoders).

use crate::clip::ClipLayout;
use crate::unet::diffusers_keys::{diffusers_to_ldm_key, DiffusersLayout};
use crate::unet::UNetConfig;

/// The diffusers block structure of a UNet, from its configuration, for renaming
/// diffusers-named LoRA modules to the single-file names the UNet was loaded under.
pub fn diffusers_layout(cfg: &UNetConfig) -> DiffusersLayout {
    let levels = cfg.num_res_blocks.len();
    let up_resnets: Vec<usize> = (0..levels)
        .map(|i| cfg.num_res_blocks[levels - 1 - i] + 1)
        .collect();
    let up_attentions = (0..levels)
        .map(|i| {
            let first: usize = up_resnets[..i].iter().sum();
            cfg.output_depth.get(first).is_some_and(|&depth| depth > 0)
        })
        .collect();
    DiffusersLayout {
        down_resnets: cfg.num_res_blocks.clone(),
        up_resnets,
        up_attentions,
    }
}

/// The UNet weight a module patches, for LDM (`input_blocks.…`, as kohya names SDXL) and
/// diffusers (`down_blocks.…`, as kohya names SD 1.x and PEFT names both) module paths.
pub fn unet_weight(module: &str, layout: &DiffusersLayout) -> Option<String> {
    const LDM_ROOTS: [&str; 6] = [
        "input_blocks.",
        "middle_block.",
        "output_blocks.",
        "time_embed.",
        "label_emb.",
        "out.",
    ];
    let name = format!("{module}.weight");
    if LDM_ROOTS.iter().any(|root| module.starts_with(root)) {
        Some(name)
    } else {
        diffusers_to_ldm_key(&name, layout)
    }
}

/// The text-encoder weight a module (transformers' name without `text_model.`) patches.
/// open_clip's fused `in_proj` is registered by its loader as `q_proj` / `k_proj` / `v_proj`.
pub fn text_weight(module: &str, layout: ClipLayout) -> Option<String> {
    match layout {
        ClipLayout::HuggingFace | ClipLayout::HuggingFaceNoRoot => {
            Some(format!("{}{module}.weight", layout.hf_root()))
        }
        ClipLayout::OpenClip => {
            let rest = module.strip_prefix("encoder.layers.")?;
            let (layer, tail) = rest.split_once('.')?;
            let open_clip = match tail {
                "self_attn.q_proj" => "attn.q_proj",
                "self_attn.k_proj" => "attn.k_proj",
                "self_attn.v_proj" => "attn.v_proj",
                "self_attn.out_proj" => "attn.out_proj",
                "mlp.fc1" => "mlp.c_fc",
                "mlp.fc2" => "mlp.c_proj",
                _ => return None,
            };
            Some(format!("transformer.resblocks.{layer}.{open_clip}.weight"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_modules_map_to_its_names() {
        let g = |m| text_weight(m, ClipLayout::OpenClip);
        assert_eq!(
            g("encoder.layers.7.self_attn.v_proj").as_deref(),
            Some("transformer.resblocks.7.attn.v_proj.weight")
        );
        assert_eq!(
            g("encoder.layers.0.mlp.fc2").as_deref(),
            Some("transformer.resblocks.0.mlp.c_proj.weight")
        );
        assert_eq!(g("final_layer_norm"), None);
        assert_eq!(
            text_weight("encoder.layers.1.mlp.fc1", ClipLayout::HuggingFace).as_deref(),
            Some("text_model.encoder.layers.1.mlp.fc1.weight")
        );
    }

    #[test]
    fn ldm_and_diffusers_module_names_reach_the_same_weight() {
        // SD 1.x: four levels, two resnets each, attention in the first three.
        let layout = DiffusersLayout {
            down_resnets: vec![2, 2, 2, 2],
            up_resnets: vec![3, 3, 3, 3],
            up_attentions: vec![false, true, true, true],
        };
        let via_diffusers = unet_weight(
            "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k",
            &layout,
        );
        let via_ldm = unet_weight("input_blocks.5.1.transformer_blocks.0.attn2.to_k", &layout);
        assert_eq!(via_diffusers, via_ldm);
        assert_eq!(
            unet_weight("up_blocks.1.resnets.2.conv1", &layout).as_deref(),
            Some("output_blocks.5.0.in_layers.2.weight")
        );
        assert_eq!(unet_weight("down_blocks.9.resnets.0.conv1", &layout), None);
    }
}
