//! Turning prompts into the UNet's conditioning the way ComfyUI does for each family:
//! weighted 77-token chunks, encoded separately and concatenated, with each token's weight
//! applied as a push away from the empty prompt's encoding.

use crate::checkpoint::Family;
use crate::clip::{ClipOutput, ClipTextEncoder, LayerChoice};
use crate::error::Result;
use crate::tokenizer::{ClipTokenizer, TokenChunk};
use tch::{Device, Kind, Tensor};

/// CLIP-L pads with its end token; OpenCLIP (H and G) pads with token 0.
const CLIP_L_PAD: u32 = 49407;
const OPEN_CLIP_PAD: u32 = 0;

/// How one text encoder of a family is read out.
#[derive(Debug, Clone, Copy)]
pub struct EncoderReadout {
    pub pad_token: u32,
    pub layer: LayerChoice,
    /// Whether the final layer norm is applied to the chosen hidden layer.
    pub final_norm: bool,
}

/// The per-family readouts (ComfyUI's SD1/SD2/SDXL clip models), with clip skip applied:
/// `clip_skip` 1 is the last layer, 2 the penultimate; `None` keeps the family's default.
pub fn readouts(family: Family, clip_skip: Option<u32>) -> Vec<EncoderReadout> {
    let layer = |default: LayerChoice| match clip_skip {
        Some(1) => LayerChoice::Last,
        Some(n) => LayerChoice::FromEnd(n as usize),
        None => default,
    };
    match family {
        Family::Sd1 => vec![EncoderReadout {
            pad_token: CLIP_L_PAD,
            layer: layer(LayerChoice::Last),
            final_norm: true,
        }],
        Family::Sd2 => {
            vec![EncoderReadout {
                pad_token: OPEN_CLIP_PAD,
                layer: layer(LayerChoice::FromEnd(2)),
                final_norm: true,
            }]
        }
        Family::Sdxl => vec![
            EncoderReadout {
                pad_token: CLIP_L_PAD,
                layer: layer(LayerChoice::FromEnd(2)),
                final_norm: false,
            },
            EncoderReadout {
                pad_token: OPEN_CLIP_PAD,
                layer: layer(LayerChoice::FromEnd(2)),
                final_norm: false,
            },
        ],
    }
}

/// A prompt's conditioning: the cross-attention context and the pooled vector (SDXL).
#[derive(Debug)]
pub struct Conditioning {
    /// `[1, 77 * chunks, context width]`
    pub context: Tensor,
    /// `[1, pooled width]`: OpenCLIP-G's projected pooled output, first chunk (SDXL only).
    pub pooled: Option<Tensor>,
}

fn chunk_tensor(chunk: &TokenChunk, device: Device) -> Tensor {
    Tensor::from_slice(&chunk.tokens)
        .view([1, -1])
        .to_device(device)
}

/// Encodes one encoder's chunks and applies token weights: `z = (z − z_empty)·w + z_empty`.
fn encode_weighted(
    encoder: &ClipTextEncoder,
    readout: &EncoderReadout,
    chunks: &[TokenChunk],
    empty: &TokenChunk,
    device: Device,
) -> Result<(Tensor, ClipOutput)> {
    let mut hidden = Vec::with_capacity(chunks.len());
    let mut first: Option<ClipOutput> = None;
    let mut empty_hidden: Option<Tensor> = None;
    for chunk in chunks {
        let out = encoder.encode(
            &chunk_tensor(chunk, device),
            readout.layer,
            readout.final_norm,
        )?;
        let mut z = out.hidden.shallow_clone();
        if chunk.weights.iter().any(|&w| w != 1.0) {
            if empty_hidden.is_none() {
                let e = encoder.encode(
                    &chunk_tensor(empty, device),
                    readout.layer,
                    readout.final_norm,
                )?;
                empty_hidden = Some(e.hidden);
            }
            if let Some(zero) = &empty_hidden {
                let w = Tensor::from_slice(&chunk.weights)
                    .to_device(device)
                    .to_kind(z.kind())
                    .view([1, -1, 1]);
                z = (&z - zero) * w + zero;
            }
        }
        hidden.push(z);
        if first.is_none() {
            first = Some(out);
        }
    }
    let first = first.ok_or_else(|| crate::error::EngineError::Invalid {
        field: "prompt",
        value: "\"\"".into(),
        expected: "at least one token chunk".into(),
    })?;
    Ok((Tensor::cat(&hidden, 1), first))
}

/// Encodes `prompt` with the family's encoders. For SDXL the two encoders' chunk lists are
/// padded to the same count (ComfyUI does the same) and their hidden states concatenated
/// along the channel axis.
pub fn encode_prompt(
    family: Family,
    encoders: &[ClipTextEncoder],
    tokenizer: &ClipTokenizer,
    prompt: &str,
    clip_skip: Option<u32>,
    device: Device,
) -> Result<Conditioning> {
    let readouts = readouts(family, clip_skip);
    let mut contexts = Vec::new();
    let mut pooled = None;
    let chunk_lists: Vec<Vec<TokenChunk>> = readouts
        .iter()
        .map(|r| tokenizer.tokenize_weighted(prompt, r.pad_token))
        .collect();
    let most = chunk_lists.iter().map(Vec::len).max().unwrap_or(1);
    for ((encoder, readout), mut chunks) in encoders.iter().zip(&readouts).zip(chunk_lists) {
        let empty = tokenizer.tokenize_weighted("", readout.pad_token).remove(0);
        while chunks.len() < most {
            chunks.push(empty.clone());
        }
        let (context, first) = encode_weighted(encoder, readout, &chunks, &empty, device)?;
        contexts.push(context);
        // SDXL's pooled vector comes from its last encoder, OpenCLIP-G, projected.
        if family == Family::Sdxl {
            pooled = Some(first.projected.unwrap_or(first.pooled));
        }
    }
    let context = if contexts.len() == 1 {
        contexts.remove(0)
    } else {
        Tensor::cat(&contexts, 2)
    };
    Ok(Conditioning { context, pooled })
}
