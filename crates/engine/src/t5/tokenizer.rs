//! T5's sentencepiece unigram tokenizer, built the way transformers' `T5Tokenizer` builds
//! it (so ids match it): the model's precompiled NFKC map, whitespace split, `▁` before
//! every word, unigram pieces plus the 100 `<extra_id_N>` sentinels, `</s>` appended, then
//! truncated (keeping `</s>`) and padded to a fixed length with a mask.

use crate::error::{EngineError, Result};
use prost::Message;
use std::path::{Path, PathBuf};
use tch::Tensor;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::utils::padding::{PaddingDirection, PaddingParams, PaddingStrategy};
use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy};
use tokenizers::{AddedToken, Tokenizer};

/// PixArt-Σ's caption length in tokens.
pub const PIXART_TOKENS: usize = 300;
/// T5's fixed ids: `<pad>` 0, `</s>` 1, `<unk>` 2.
const PAD_ID: u32 = 0;
const EOS_ID: u32 = 1;
const UNK_ID: usize = 2;
const SENTINELS: usize = 100;
/// sentencepiece's `TrainerSpec.model_type` for a unigram model.
const UNIGRAM: i32 = 1;

/// The parts of sentencepiece's `ModelProto` the tokenizer needs (prost skips the rest).
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<Piece>,
    #[prost(message, optional, tag = "2")]
    trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    normalizer_spec: Option<NormalizerSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct Piece {
    #[prost(string, optional, tag = "1")]
    piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    score: Option<f32>,
}

#[derive(Clone, PartialEq, Message)]
struct TrainerSpec {
    #[prost(int32, optional, tag = "3")]
    model_type: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct NormalizerSpec {
    #[prost(bytes = "vec", optional, tag = "2")]
    precompiled_charsmap: Option<Vec<u8>>,
}

/// Writes a made-up unigram `spiece.model` of `pieces` pieces (`<pad>`, `</s>`, `<unk>`,
/// then `▁a`, `▁b`, … `▁ba`, …) with no normalizer: for benchmarks on random weights,
/// where T5 needs a tokenizer of the right size and the ids need not mean anything.
pub fn write_synthetic_spiece(path: &Path, pieces: usize) -> Result<()> {
    let word = |mut i: usize| {
        let mut letters = Vec::new();
        loop {
            letters.push(b'a' + (i % 26) as u8);
            i /= 26;
            if i == 0 {
                break;
            }
        }
        letters.reverse();
        format!("▁{}", String::from_utf8_lossy(&letters))
    };
    let specials = ["<pad>", "</s>", "<unk>"].map(String::from);
    let proto = ModelProto {
        pieces: specials
            .into_iter()
            .chain((0..pieces.saturating_sub(3)).map(word))
            .enumerate()
            .map(|(i, piece)| Piece {
                piece: Some(piece),
                score: Some(if i < 3 { 0.0 } else { -1.0 - i as f32 / 1000.0 }),
            })
            .collect(),
        trainer_spec: Some(TrainerSpec {
            model_type: Some(UNIGRAM),
        }),
        normalizer_spec: None,
    };
    std::fs::write(path, proto.encode_to_vec()).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A prompt's tokens with their emphasis ([`T5Tokenizer::encode_weighted`]).
#[derive(Debug)]
pub struct WeightedTokens {
    /// `[1, length]` ids, padded.
    pub ids: Tensor,
    /// `[1, length]`, 1 for the real tokens.
    pub mask: Tensor,
    /// One weight per real token, `</s>` (1.0) last.
    pub weights: Vec<f32>,
}

/// A loaded T5 tokenizer producing `length` ids per prompt.
#[derive(Debug, Clone)]
pub struct T5Tokenizer {
    inner: Tokenizer,
    source: PathBuf,
    length: usize,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::BadTokenizer {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl T5Tokenizer {
    /// The tokenizer in `dir`: its `spiece.model`, else its `tokenizer.json`.
    pub fn find(dir: &Path, length: usize) -> Result<T5Tokenizer> {
        let spiece = dir.join("spiece.model");
        let json = dir.join("tokenizer.json");
        if spiece.is_file() {
            T5Tokenizer::from_spiece(&spiece, length)
        } else if json.is_file() {
            T5Tokenizer::from_tokenizer_json(&json, length)
        } else {
            Err(bad(dir, "neither spiece.model nor tokenizer.json is there"))
        }
    }

    /// Builds the tokenizer from a sentencepiece unigram model, as transformers converts one.
    pub fn from_spiece(path: &Path, length: usize) -> Result<T5Tokenizer> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let proto = ModelProto::decode(bytes.as_slice())
            .map_err(|e| bad(path, format!("not a sentencepiece model ({e})")))?;
        let model_type = proto.trainer_spec.as_ref().and_then(|t| t.model_type);
        if model_type.unwrap_or(UNIGRAM) != UNIGRAM {
            return Err(bad(path, "a BPE sentencepiece model; T5's is unigram"));
        }
        if proto.pieces.len() <= UNK_ID {
            return Err(bad(path, format!("only {} pieces", proto.pieces.len())));
        }
        let mut vocab: Vec<(String, f64)> = proto
            .pieces
            .iter()
            .map(|p| {
                (
                    p.piece.clone().unwrap_or_default(),
                    f64::from(p.score.unwrap_or(0.0)),
                )
            })
            .collect();
        vocab.extend(
            (0..SENTINELS)
                .rev()
                .map(|i| (format!("<extra_id_{i}>"), 0.0)),
        );
        let specials: Vec<String> = [0, 1, 2].iter().map(|&i| vocab[i].0.clone()).collect();
        let model = Unigram::from(vocab, Some(UNK_ID), false).map_err(|e| bad(path, e))?;
        let mut inner = Tokenizer::new(model);
        let charsmap = proto
            .normalizer_spec
            .and_then(|n| n.precompiled_charsmap)
            .filter(|m| !m.is_empty());
        if let Some(map) = charsmap {
            inner.with_normalizer(Some(Precompiled::from(&map).map_err(|e| bad(path, e))?));
        }
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            WhitespaceSplit.into(),
            Metaspace::new('▁', PrependScheme::Always, true).into(),
        ])));
        let eos = &specials[EOS_ID as usize];
        let template = TemplateProcessing::builder()
            .try_single(format!("$A {eos}"))
            .map_err(|e| bad(path, e))?
            .special_tokens(vec![(eos.clone(), EOS_ID)])
            .build()
            .map_err(|e| bad(path, e))?;
        inner.with_post_processor(Some(template));
        let added: Vec<AddedToken> = specials
            .iter()
            .cloned()
            .chain((0..SENTINELS).map(|i| format!("<extra_id_{i}>")))
            .map(|t| AddedToken::from(t, true))
            .collect();
        inner.add_special_tokens(&added);
        T5Tokenizer::with_lengths(inner, path, length)
    }

    /// Loads a `tokenizer.json` (which carries its own normalizer and `</s>` template).
    pub fn from_tokenizer_json(path: &Path, length: usize) -> Result<T5Tokenizer> {
        let inner = Tokenizer::from_file(path).map_err(|e| bad(path, e))?;
        T5Tokenizer::with_lengths(inner, path, length)
    }

    fn with_lengths(mut inner: Tokenizer, path: &Path, length: usize) -> Result<T5Tokenizer> {
        let truncation = TruncationParams {
            max_length: length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        inner
            .with_truncation(Some(truncation))
            .map_err(|e| bad(path, e))?;
        let pad_token = inner
            .id_to_token(PAD_ID)
            .ok_or_else(|| bad(path, "no token with id 0 (<pad>)"))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: PAD_ID,
            pad_type_id: 0,
            pad_token,
        }));
        Ok(T5Tokenizer {
            inner,
            source: path.to_path_buf(),
            length,
        })
    }

    /// The file the tokenizer was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn length(&self) -> usize {
        self.length
    }

    /// `text`'s ids and mask, `length` each: the prompt as given (T5 is cased; nothing is
    /// lower-cased or stripped), `</s>`, then padding.
    pub fn encode_ids(&self, text: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| bad(&self.source, format!("cannot tokenize {text:?}: {e}")))?;
        Ok((
            encoding.get_ids().to_vec(),
            encoding.get_attention_mask().to_vec(),
        ))
    }

    /// A prompt with ComfyUI's emphasis syntax (`(word:1.3)`, `(word)`), tokenized as
    /// ComfyUI does for T5: the syntax removed, each space-separated word tokenized on its
    /// own, `</s>` appended, then truncated to `length` (keeping `</s>`) and padded. Returns
    /// `[1, length]` ids and mask and the weight of each real token (`</s>` included).
    pub fn encode_weighted(&self, prompt: &str) -> Result<WeightedTokens> {
        let mut ids = Vec::new();
        let mut weights = Vec::new();
        for segment in crate::tokenizer::parse_weights(prompt) {
            let text = segment.text.replace('\n', " ");
            for word in text.split(' ').filter(|w| !w.is_empty()) {
                let encoding = self
                    .inner
                    .encode(word, false)
                    .map_err(|e| bad(&self.source, format!("cannot tokenize {word:?}: {e}")))?;
                // The tokenizer pads every encoding: keep the word's own pieces.
                let pieces: Vec<u32> = encoding
                    .get_ids()
                    .iter()
                    .zip(encoding.get_attention_mask())
                    .filter(|(_, &real)| real == 1)
                    .map(|(&id, _)| id)
                    .collect();
                weights.extend(std::iter::repeat_n(segment.weight, pieces.len()));
                ids.extend(pieces);
            }
        }
        ids.truncate(self.length.saturating_sub(1));
        weights.truncate(ids.len());
        ids.push(EOS_ID);
        weights.push(1.0);
        let real = ids.len();
        let mut mask = vec![1i64; real];
        mask.resize(self.length, 0);
        let mut padded: Vec<i64> = ids.into_iter().map(i64::from).collect();
        padded.resize(self.length, i64::from(PAD_ID));
        let shape = [1, self.length as i64];
        Ok(WeightedTokens {
            ids: Tensor::from_slice(&padded).view(shape),
            mask: Tensor::from_slice(&mask).view(shape),
            weights,
        })
    }

    /// `[batch, length]` int64 ids and mask for `texts`, on the CPU.
    pub fn encode(&self, texts: &[&str]) -> Result<(Tensor, Tensor)> {
        let mut ids = Vec::with_capacity(texts.len() * self.length);
        let mut mask = Vec::with_capacity(texts.len() * self.length);
        for text in texts {
            let (i, m) = self.encode_ids(text)?;
            ids.extend(i.into_iter().map(i64::from));
            mask.extend(m.into_iter().map(i64::from));
        }
        let shape = [texts.len() as i64, self.length as i64];
        Ok((
            Tensor::from_slice(&ids).view(shape),
            Tensor::from_slice(&mask).view(shape),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_spiece_model_loads_with_t5s_special_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spiece.model");
        write_synthetic_spiece(&path, 300).unwrap();
        let tokenizer = T5Tokenizer::from_spiece(&path, 8).unwrap();
        // "▁a" is the first piece after the three specials, "▁ba" the 27th.
        let (ids, mask) = tokenizer.encode_ids("ba a").unwrap();
        assert_eq!(ids, [29, 3, EOS_ID, 0, 0, 0, 0, 0]);
        assert_eq!(mask, [1, 1, 1, 0, 0, 0, 0, 0]);
    }
}
