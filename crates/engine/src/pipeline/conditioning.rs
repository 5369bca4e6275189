//! Turning prompts into the UNet's conditioning the way ComfyUI does for each family:
//! weighted 77-token chunks, encoded separately and concatenated, with each token's weight
//! applied as a push away from the empty prompt's encoding. Textual-inversion embeddings
//! named in the prompt fill token positions with their vectors.

use crate::checkpoint::Family;
use crate::clip::{ClipOutput, ClipRole, ClipTextEncoder, LayerChoice};
use crate::embedding::PromptEmbeddings;
use crate::error::Result;
use crate::tokenizer::{ClipTokenizer, TokenChunk};
use tch::{Device, Tensor};

/// CLIP-L pads with its end token; OpenCLIP (H and G) pads with token 0 (ComfyUI's
/// `pad_with_end` is false for them).
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

/// The roles of a family's encoders, in checkpoint order.
pub fn roles(family: Family) -> &'static [ClipRole] {
    match family {
        Family::Sd1 => &[ClipRole::Sd1ClipL],
        Family::Sd2 => &[ClipRole::Sd2OpenClipH],
        Family::Sdxl => &[ClipRole::SdxlClipL, ClipRole::SdxlOpenClipG],
        // Conditioned on T5, not CLIP.
        Family::PixArtSigma => &[],
    }
}

/// The readout of one encoder: the family's default (see `clip::families`), or the user's
/// clip skip (1 = last layer, 2 = penultimate, …), which keeps the family's final-norm rule.
pub fn readout(
    role: ClipRole,
    encoder: &ClipTextEncoder,
    clip_skip: Option<u32>,
) -> EncoderReadout {
    let defaults = role.settings(encoder.config());
    let layer = match clip_skip {
        None => defaults.layer,
        Some(0 | 1) => LayerChoice::Last,
        Some(n) => LayerChoice::FromEnd(n as usize),
    };
    let pad_token = match role {
        ClipRole::Sd1ClipL | ClipRole::SdxlClipL => CLIP_L_PAD,
        _ => OPEN_CLIP_PAD,
    };
    EncoderReadout {
        pad_token,
        layer,
        final_norm: defaults.final_norm_on_hidden,
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

/// One chunk's embedding vectors for `encoder`, as `(position, vector)`.
fn chunk_vectors(
    chunk: &TokenChunk,
    role: ClipRole,
    encoder: &ClipTextEncoder,
    embeddings: &PromptEmbeddings<'_>,
) -> Result<Vec<(i64, Tensor)>> {
    let width = encoder.config().hidden;
    chunk
        .vectors
        .iter()
        .map(|v| {
            let vector = embeddings.vector(v.embedding, v.row, role, width)?;
            Ok((v.position as i64, vector))
        })
        .collect()
}

/// Encodes one encoder's chunks and applies token weights: `z = (z − z_empty)·w + z_empty`.
fn encode_weighted(
    encoder: &ClipTextEncoder,
    role: ClipRole,
    readout: &EncoderReadout,
    chunks: &[TokenChunk],
    empty: &TokenChunk,
    embeddings: &PromptEmbeddings<'_>,
    device: Device,
) -> Result<(Tensor, ClipOutput)> {
    let mut hidden = Vec::with_capacity(chunks.len());
    let mut first: Option<ClipOutput> = None;
    let mut empty_hidden: Option<Tensor> = None;
    for chunk in chunks {
        let out = encoder.encode_with_vectors(
            &chunk_tensor(chunk, device),
            &chunk_vectors(chunk, role, encoder, embeddings)?,
            readout.layer,
            readout.final_norm,
        )?;
        let mut z = out.hidden.shallow_clone();
        if chunk.is_weighted() {
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
/// along the channel axis. `embeddings` finds the embeddings the prompt names.
pub fn encode_prompt(
    family: Family,
    encoders: &[ClipTextEncoder],
    tokenizer: &ClipTokenizer,
    prompt: &str,
    clip_skip: Option<u32>,
    embeddings: &mut PromptEmbeddings<'_>,
    device: Device,
) -> Result<Conditioning> {
    let readouts: Vec<EncoderReadout> = roles(family)
        .iter()
        .zip(encoders)
        .map(|(role, encoder)| readout(*role, encoder, clip_skip))
        .collect();
    let mut contexts = Vec::new();
    let mut pooled = None;
    let chunk_lists: Vec<Vec<TokenChunk>> = readouts
        .iter()
        .map(|r| tokenizer.tokenize_with(prompt, r.pad_token, embeddings))
        .collect::<Result<_>>()?;
    let most = chunk_lists.iter().map(Vec::len).max().unwrap_or(1);
    let parts = encoders.iter().zip(roles(family)).zip(&readouts);
    for (((encoder, role), readout), mut chunks) in parts.zip(chunk_lists) {
        let empty = tokenizer.tokenize_weighted("", readout.pad_token).remove(0);
        while chunks.len() < most {
            chunks.push(empty.clone());
        }
        let (context, first) =
            encode_weighted(encoder, *role, readout, &chunks, &empty, embeddings, device)?;
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
