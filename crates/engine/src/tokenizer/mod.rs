//! Text to CLIP token ids: the BPE tokenizer on OpenAI's vocabulary (embedded), prompt
//! emphasis syntax, and ComfyUI-style 77-token chunking of long prompts.

mod bpe;
mod chunk;
mod weights;

#[cfg(test)]
mod tests;

pub use bpe::{ClipTokenizer, BOS, EOS, VOCAB_SIZE};
pub use chunk::{
    chunk_token_groups, EmbeddingLookup, NamedVectors, NoEmbeddings, Piece, PlacedVector,
    TokenChunk, CHUNK_CONTENT, CHUNK_LEN, PAD_CLIP_L, PAD_OPEN_CLIP, VECTOR_PLACEHOLDER,
};
pub use weights::{parse_weights, WeightedText, EMPHASIS};
