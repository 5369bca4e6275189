//! Splits a weighted prompt's tokens into CLIP's 77-token windows the way ComfyUI does, so
//! long prompts condition the model the same way they do there.
//!
//! Each chunk is BOS, up to 75 content tokens, EOS, then padding to 77. Tokens come in
//! groups, one per space-separated word of the prompt (and one per textual-inversion
//! embedding, whose vectors take token positions); a group that would straddle a chunk
//! boundary moves whole to the next chunk when it is shorter than 8 tokens, and is cut at
//! the boundary otherwise. Which pad token: CLIP-L (SD 1.x, and SDXL's first encoder) pads
//! with EOS ([`PAD_CLIP_L`]); OpenCLIP ViT-H (SD 2.x) and ViT-bigG (SDXL's second encoder)
//! pad with 0 ([`PAD_OPEN_CLIP`]) — ComfyUI's `pad_with_end=False` in sd2_clip.py and
//! sdxl_clip.py.

use super::bpe::{ClipTokenizer, BOS, EOS};
use super::weights::parse_weights;
use crate::error::Result;

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

/// The id written at a position an embedding vector fills. The vector replaces its token
/// embedding, so the id only has to be valid and below EOS (pooling looks for EOS).
pub const VECTOR_PLACEHOLDER: u32 = 0;

/// One position of a prompt: a vocabulary id, or row `row` of the prompt's embedding
/// number `embedding` (numbered by the [`EmbeddingLookup`] that found it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    Id(u32),
    Vector { embedding: usize, row: usize },
}

impl From<u32> for Piece {
    fn from(id: u32) -> Self {
        Piece::Id(id)
    }
}

/// An embedding vector's place in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedVector {
    pub position: usize,
    pub embedding: usize,
    pub row: usize,
}

/// One 77-token window of a prompt, with the emphasis weight of each position (1.0 for
/// BOS, EOS and padding) and the positions embedding vectors fill.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenChunk {
    pub tokens: Vec<i64>,
    pub weights: Vec<f32>,
    pub vectors: Vec<PlacedVector>,
}

impl TokenChunk {
    fn frame(content: &[(Piece, f32)], pad_token: u32) -> Self {
        let mut tokens = Vec::with_capacity(CHUNK_LEN);
        let mut weights = Vec::with_capacity(CHUNK_LEN);
        let mut vectors = Vec::new();
        tokens.push(i64::from(BOS));
        weights.push(1.0);
        for &(piece, weight) in content {
            let id = match piece {
                Piece::Id(id) => id,
                Piece::Vector { embedding, row } => {
                    vectors.push(PlacedVector {
                        position: tokens.len(),
                        embedding,
                        row,
                    });
                    VECTOR_PLACEHOLDER
                }
            };
            tokens.push(i64::from(id));
            weights.push(weight);
        }
        tokens.push(i64::from(EOS));
        weights.push(1.0);
        tokens.resize(CHUNK_LEN, i64::from(pad_token));
        weights.resize(CHUNK_LEN, 1.0);
        Self {
            tokens,
            weights,
            vectors,
        }
    }

    /// Whether any position has a weight other than 1 (ComfyUI then encodes an empty prompt
    /// as well, to interpolate against).
    pub fn is_weighted(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }
}

/// Packs groups of (token, weight) into chunks; always at least one (an empty prompt is
/// BOS, EOS and padding).
pub fn chunk_token_groups<P: Copy + Into<Piece>>(
    groups: &[Vec<(P, f32)>],
    pad_token: u32,
) -> Vec<TokenChunk> {
    let mut chunks = Vec::new();
    let mut current: Vec<(Piece, f32)> = Vec::with_capacity(CHUNK_CONTENT);
    for group in groups {
        let group: Vec<(Piece, f32)> = group.iter().map(|&(p, w)| (p.into(), w)).collect();
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

/// An embedding a prompt word names.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedVectors {
    /// The embedding's number in this prompt (what [`Piece::Vector`] refers to).
    pub embedding: usize,
    /// How many vectors (token positions) it fills.
    pub count: usize,
    /// Text after the name in the same word (`embedding:name,` leaves `,`), tokenized as text.
    pub rest: String,
}

/// Decides which prompt words are textual-inversion embeddings.
pub trait EmbeddingLookup {
    /// `Some` when `word` names an embedding, `None` for plain text; an error when it
    /// asks for one that cannot be used (missing, a pickle, a broken file).
    fn lookup(&mut self, word: &str) -> Result<Option<NamedVectors>>;
}

/// A prompt without embeddings: every word is text.
pub struct NoEmbeddings;

impl EmbeddingLookup for NoEmbeddings {
    fn lookup(&mut self, _word: &str) -> Result<Option<NamedVectors>> {
        Ok(None)
    }
}

impl ClipTokenizer {
    /// Parses emphasis syntax, tokenizes each word (or takes an embedding's vectors where
    /// `embeddings` finds one) and packs the result into 77-token chunks padded with
    /// `pad_token` ([`PAD_CLIP_L`] or [`PAD_OPEN_CLIP`]). Words are split at spaces and
    /// newlines only, as ComfyUI splits them.
    pub fn tokenize_with(
        &self,
        prompt: &str,
        pad_token: u32,
        embeddings: &mut dyn EmbeddingLookup,
    ) -> Result<Vec<TokenChunk>> {
        let mut groups: Vec<Vec<(Piece, f32)>> = Vec::new();
        for segment in parse_weights(prompt) {
            let weight = segment.weight;
            for word in segment.text.split([' ', '\n']).filter(|w| !w.is_empty()) {
                let text = match embeddings.lookup(word)? {
                    Some(found) => {
                        groups.push(
                            (0..found.count)
                                .map(|row| {
                                    let embedding = found.embedding;
                                    (Piece::Vector { embedding, row }, weight)
                                })
                                .collect(),
                        );
                        found.rest
                    }
                    None => word.to_string(),
                };
                let ids = self.encode(&text);
                if !ids.is_empty() {
                    groups.push(ids.into_iter().map(|t| (Piece::Id(t), weight)).collect());
                }
            }
        }
        Ok(chunk_token_groups(&groups, pad_token))
    }

    /// [`ClipTokenizer::tokenize_with`] for a prompt without embeddings.
    pub fn tokenize_weighted(&self, prompt: &str, pad_token: u32) -> Vec<TokenChunk> {
        // NoEmbeddings never fails; the fallback only satisfies the types.
        self.tokenize_with(prompt, pad_token, &mut NoEmbeddings)
            .unwrap_or_else(|_| chunk_token_groups::<u32>(&[], pad_token))
    }
}
