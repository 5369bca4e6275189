//! Splits a weighted prompt's tokens into CLIP's 77-token windows the way ComfyUI does, so
//! long prompts condition the model the same way they do there.
//!
//! Each chunk is BOS, up to 75 content tokens, EOS, then padding to 77. Tokens come in
//! groups, one per weighted segment of the prompt; a group that would straddle a chunk
//! boundary moves whole to the next chunk when it is shorter than 8 tokens, and is cut at
//! the boundary otherwise. Which pad token: CLIP-L (SD 1.x, and SDXL's first encoder) pads
//! with EOS ([`PAD_CLIP_L`]); OpenCLIP ViT-H (SD 2.x) and ViT-bigG (SDXL's second encoder)
//! pad with 0 ([`PAD_OPEN_CLIP`]) — ComfyUI's `pad_with_end=False` in sd2_clip.py and
//! sdxl_clip.py.

use super::bpe::{ClipTokenizer, BOS, EOS};
use super::weights::parse_weights;

/// Tokens per chunk, BOS and EOS included (CLIP's context length).
pub const CHUNK_LEN: usize = 77;
/// Prompt tokens per chunk.
pub const CHUNK_CONTENT: usize = CHUNK_LEN - 2;
/// Pad token of CLIP-L (SD 1.x; SDXL's `clip_l`).
pub const PAD_CLIP_L: u32 = EOS;
/// Pad token of OpenCLIP ViT-H / ViT-bigG (SD 2.x; SDXL's `clip_g`).
pub const PAD_OPEN_CLIP: u32 = 0;
/// Groups at least this long may be cut at a chunk boundary (ComfyUI's `max_word_length`).
const SPLITTABLE_GROUP_LEN: usize = 8;

/// One 77-token window of a prompt, with the emphasis weight of each position (1.0 for
/// BOS, EOS and padding).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenChunk {
    pub tokens: Vec<i64>,
    pub weights: Vec<f32>,
}

impl TokenChunk {
    fn frame(content: &[(u32, f32)], pad_token: u32) -> Self {
        let mut tokens = Vec::with_capacity(CHUNK_LEN);
        let mut weights = Vec::with_capacity(CHUNK_LEN);
        tokens.push(i64::from(BOS));
        weights.push(1.0);
        for &(token, weight) in content {
            tokens.push(i64::from(token));
            weights.push(weight);
        }
        tokens.push(i64::from(EOS));
        weights.push(1.0);
        tokens.resize(CHUNK_LEN, i64::from(pad_token));
        weights.resize(CHUNK_LEN, 1.0);
        Self { tokens, weights }
    }

    /// Whether any position has a weight other than 1 (ComfyUI then encodes an empty prompt
    /// as well, to interpolate against).
    pub fn is_weighted(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }
}

/// Packs groups of (token, weight) into chunks; always at least one (an empty prompt is
/// BOS, EOS and padding).
pub fn chunk_token_groups(groups: &[Vec<(u32, f32)>], pad_token: u32) -> Vec<TokenChunk> {
    let mut chunks = Vec::new();
    let mut current: Vec<(u32, f32)> = Vec::with_capacity(CHUNK_CONTENT);
    for group in groups {
        let splittable = group.len() >= SPLITTABLE_GROUP_LEN;
        let mut rest = group.as_slice();
        while !rest.is_empty() {
            let room = CHUNK_CONTENT - current.len();
            if rest.len() <= room {
                current.extend_from_slice(rest);
                break;
            }
            if splittable {
                let (head, tail) = rest.split_at(room);
                current.extend_from_slice(head);
                rest = tail;
            }
            chunks.push(TokenChunk::frame(&current, pad_token));
            current.clear();
        }
    }
    chunks.push(TokenChunk::frame(&current, pad_token));
    chunks
}

impl ClipTokenizer {
    /// Parses emphasis syntax, tokenizes each segment and packs the result into 77-token
    /// chunks padded with `pad_token` ([`PAD_CLIP_L`] or [`PAD_OPEN_CLIP`]).
    pub fn tokenize_weighted(&self, prompt: &str, pad_token: u32) -> Vec<TokenChunk> {
        let groups: Vec<Vec<(u32, f32)>> = parse_weights(prompt)
            .into_iter()
            .map(|segment| {
                self.encode(&segment.text)
                    .into_iter()
                    .map(|t| (t, segment.weight))
                    .collect()
            })
            .collect();
        chunk_token_groups(&groups, pad_token)
    }
}
