//! The tensor names of LoRA files, in the layouts people have: kohya / A1111
//! (`lora_unet_…_to_q.lora_down.weight`, `lora_te1_…`, `….alpha`) and diffusers / PEFT
//! (`unet.….to_q.lora_A.weight`, `text_encoder_2.….lora_B.weight`, `….lora.down.weight`).
//!
//! Each name becomes the network it patches, the module path in dotted form, and which
//! part of the pair it is. Kohya flattens the module path with `_`, which is also inside
//! names like `to_q` and `transformer_blocks`; the words below are put back together
//! before the `_` that remain become dots.

/// The network a LoRA module patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    Unet,
    /// The pipeline's text encoder `n` (0: CLIP-L or the only one; 1: SDXL's OpenCLIP-G).
    TextEncoder(usize),
}

/// Which tensor of a module's LoRA a name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `[rank, in]` (or `[rank, in, kh, kw]` for a convolution): applied first.
    Down,
    /// `[out, rank]` (or `[out, rank, 1, 1]`).
    Up,
    /// The scalar that scales `up @ down` by `alpha / rank`.
    Alpha,
}

/// One parsed tensor name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraKey {
    pub network: Network,
    /// The module path, dotted: diffusers or LDM names for the UNet
    /// (`down_blocks.0.attentions.0.proj_in`, `input_blocks.4.1.proj_in`), transformers'
    /// names without the `text_model.` root for text encoders (`encoder.layers.0.mlp.fc1`).
    pub module: String,
    pub part: Part,
}

/// Words of diffusers', LDM's and transformers' module names that contain `_`.
const JOINED_WORDS: [&str; 40] = [
    "down_blocks",
    "up_blocks",
    "mid_block",
    "transformer_blocks",
    "to_q",
    "to_k",
    "to_v",
    "to_out",
    "proj_in",
    "proj_out",
    "time_emb_proj",
    "conv_shortcut",
    "time_embedding",
    "linear_1",
    "linear_2",
    "conv_in",
    "conv_out",
    "conv_norm_out",
    "add_embedding",
    "class_embedding",
    "input_blocks",
    "output_blocks",
    "middle_block",
    "in_layers",
    "out_layers",
    "emb_layers",
    "skip_connection",
    "time_embed",
    "label_emb",
    "text_model",
    "self_attn",
    "q_proj",
    "k_proj",
    "v_proj",
    "out_proj",
    "final_layer_norm",
    "layer_norm1",
    "layer_norm2",
    "text_projection",
    "token_embedding",
];

/// `down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q` →
/// `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`.
pub fn dotted(flat: &str) -> String {
    let pieces: Vec<&str> = flat.split('_').collect();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        // The longest joined word starting here (they are at most three pieces long).
        let joined = (2..=3).rev().find_map(|n| {
            let candidate = pieces.get(i..i + n)?.join("_");
            JOINED_WORDS
                .contains(&candidate.as_str())
                .then_some((candidate, n))
        });
        match joined {
            Some((word, n)) => {
                words.push(word);
                i += n;
            }
            None => {
                words.push(pieces[i].to_string());
                i += 1;
            }
        }
    }
    words.join(".")
}

fn kohya_part(suffix: &str) -> Option<Part> {
    match suffix {
        "lora_down.weight" => Some(Part::Down),
        "lora_up.weight" => Some(Part::Up),
        "alpha" => Some(Part::Alpha),
        _ => None,
    }
}

fn peft_part(suffix: &str) -> Option<Part> {
    match suffix {
        "lora_A.weight" | "lora.down.weight" | "lora_down.weight" => Some(Part::Down),
        "lora_B.weight" | "lora.up.weight" | "lora_up.weight" => Some(Part::Up),
        "alpha" => Some(Part::Alpha),
        _ => None,
    }
}

/// Text-encoder module paths without transformers' optional `text_model.` root.
fn text_module(path: &str) -> String {
    path.strip_prefix("text_model.").unwrap_or(path).to_string()
}

fn kohya(name: &str) -> Option<LoraKey> {
    let (stem, suffix) = name.split_once('.')?;
    let part = kohya_part(suffix)?;
    let (network, flat) = if let Some(flat) = stem.strip_prefix("lora_unet_") {
        (Network::Unet, flat)
    } else if let Some(flat) = stem.strip_prefix("lora_te1_") {
        (Network::TextEncoder(0), flat)
    } else if let Some(flat) = stem.strip_prefix("lora_te2_") {
        (Network::TextEncoder(1), flat)
    } else {
        (Network::TextEncoder(0), stem.strip_prefix("lora_te_")?)
    };
    let module = match network {
        Network::Unet => dotted(flat),
        Network::TextEncoder(_) => text_module(&dotted(flat)),
    };
    Some(LoraKey {
        network,
        module,
        part,
    })
}

fn peft(name: &str) -> Option<LoraKey> {
    let (network, rest) = if let Some(rest) = name.strip_prefix("unet.") {
        (Network::Unet, rest)
    } else if let Some(rest) = name.strip_prefix("text_encoder_2.") {
        (Network::TextEncoder(1), rest)
    } else {
        (Network::TextEncoder(0), name.strip_prefix("text_encoder.")?)
    };
    let (module, part) = [
        "lora_A.",
        "lora_B.",
        "lora.",
        "lora_down.",
        "lora_up.",
        "alpha",
    ]
    .iter()
    .find_map(|marker| {
        let at = rest.find(&format!(".{marker}"))?;
        Some((&rest[..at], peft_part(&rest[at + 1..])?))
    })?;
    let module = match network {
        Network::Unet => module.to_string(),
        Network::TextEncoder(_) => text_module(module),
    };
    Some(LoraKey {
        network,
        module,
        part,
    })
}

/// Parses one tensor name of a LoRA file; `None` for a name of no layout known here.
pub fn parse(name: &str) -> Option<LoraKey> {
    if name.starts_with("lora_") {
        kohya(name)
    } else {
        peft(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_names_get_their_dots_back() {
        for name in [
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
            "down_blocks.1.resnets.0.conv_shortcut",
            "up_blocks.2.attentions.1.transformer_blocks.0.ff.net.0.proj",
            "mid_block.resnets.1.time_emb_proj",
            "mid_block.attentions.0.proj_out",
            "input_blocks.4.1.transformer_blocks.1.attn2.to_out.0",
            "output_blocks.2.0.skip_connection",
            "middle_block.0.emb_layers.1",
            "time_embed.0",
            "label_emb.0.2",
            "text_model.encoder.layers.11.self_attn.out_proj",
            "text_model.encoder.layers.0.mlp.fc2",
            "up_blocks.0.upsamplers.0.conv",
        ] {
            assert_eq!(dotted(&name.replace('.', "_")), name);
        }
    }

    #[test]
    fn kohya_and_peft_names_parse_to_the_same_module() {
        let kohya_key = parse("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight");
        let peft_key = parse("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight");
        assert_eq!(kohya_key, peft_key);
        assert_eq!(kohya_key.unwrap().part, Part::Down);
        let te2 = parse("lora_te2_text_model_encoder_layers_3_self_attn_k_proj.alpha").unwrap();
        assert_eq!(te2.network, Network::TextEncoder(1));
        assert_eq!(te2.module, "encoder.layers.3.self_attn.k_proj");
        assert_eq!(te2.part, Part::Alpha);
        let te = parse("text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_B.weight").unwrap();
        assert_eq!(te.network, Network::TextEncoder(0));
        assert_eq!(te.module, "encoder.layers.1.mlp.fc1");
        assert_eq!(te.part, Part::Up);
        // transformers 5 saves CLIP without the `text_model.` root: the same module.
        let no_root = parse("text_encoder.encoder.layers.1.mlp.fc1.lora_B.weight").unwrap();
        assert_eq!(no_root, te);
        let old = parse("unet.mid_block.attentions.0.proj_in.lora.up.weight").unwrap();
        assert_eq!(
            (old.module.as_str(), old.part),
            ("mid_block.attentions.0.proj_in", Part::Up)
        );
    }

    #[test]
    fn unknown_names_are_not_guessed() {
        assert_eq!(parse("model.diffusion_model.input_blocks.0.0.weight"), None);
        assert_eq!(parse("lora_unet_x.hada_w1_a"), None);
        assert_eq!(parse("unet.down_blocks.0.resnets.0.conv1.weight"), None);
    }
}
