//! CLIP's byte-level BPE tokenizer on OpenAI's vocabulary, matching transformers'
//! `CLIPTokenizer` (the tokenizers-backed one) id for id.
//!
//! What transformers does, and so what this does, in order:
//! 1. the literal special-token strings `<|startoftext|>` / `<|endoftext|>` (case-sensitive)
//!    are cut out of the raw text and become their ids;
//! 2. every other piece is normalised: Unicode NFC, each whitespace run becomes one space,
//!    then every character is lowercased on its own (so a final `Σ` becomes `σ`, not `ς`);
//! 3. pieces are split into words by the CLIP regex; the special-token alternatives of that
//!    regex never survive transformers' byte-level re-split, so they are left out here;
//! 4. each word's UTF-8 bytes become CLIP's printable byte characters, the last one with the
//!    `</w>` word-end suffix, and BPE merges them by rank.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, MutexGuard, OnceLock};

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::{EngineError, Result};

/// Number of ids in the CLIP vocabulary (SD 1.x/2.x, SDXL CLIP-L and OpenCLIP-G share it).
pub const VOCAB_SIZE: usize = 49408;
/// `<|startoftext|>`.
pub const BOS: u32 = 49406;
/// `<|endoftext|>`; also CLIP-L's padding token.
pub const EOS: u32 = 49407;

const BOS_TEXT: &str = "<|startoftext|>";
const EOS_TEXT: &str = "<|endoftext|>";
const WORD_END: &str = "</w>";
/// OpenAI CLIP keeps this many merge rules after the file's header line.
const N_MERGES: usize = 49152 - 256 - 2;
/// Ids below this are single byte characters (256 plain, then 256 with `</w>`).
const FIRST_MERGE_ID: u32 = 512;
/// The word cache is dropped when it grows past this, so a long-running worker fed endless
/// distinct prompts does not grow without bound.
const WORD_CACHE_LIMIT: usize = 50_000;
const WORD_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

static VOCAB_GZ: &[u8] = include_bytes!("../../data/bpe_simple_vocab_16e6.txt.gz");

/// The CLIP BPE tokenizer. Cheap to share: build it once ([`ClipTokenizer::shared`]).
pub struct ClipTokenizer {
    /// Byte value → id of its printable stand-in character.
    byte_ids: [u32; 256],
    /// Printable stand-in character → byte value, for decoding.
    char_bytes: HashMap<char, u8>,
    /// Pair of ids → merge rank; the merged token's id is `FIRST_MERGE_ID + rank`.
    merge_ranks: HashMap<(u32, u32), u32>,
    /// Id → token text in byte-character form (with `</w>` where it has one).
    tokens: Vec<String>,
    words: Regex,
    word_cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.tokens.len())
            .finish()
    }
}

/// CLIP's 256 printable stand-ins for bytes, in vocabulary order: the bytes that are already
/// printable keep their own character, the rest get U+0100 onwards in byte order.
fn byte_characters() -> Vec<(u8, char)> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut out: Vec<(u8, char)> = (0..=255u8)
        .filter(|&b| printable(b))
        .map(|b| (b, char::from(b)))
        .collect();
    let others = (0..=255u8).filter(|&b| !printable(b));
    for (b, code) in others.zip(256u32..) {
        // 256..=323 are all valid scalar values.
        out.push((b, char::from_u32(code).unwrap_or('\u{FFFD}')));
    }
    out
}

fn corrupt(reason: String) -> EngineError {
    EngineError::Invalid {
        field: "embedded CLIP vocabulary",
        value: "bpe_simple_vocab_16e6.txt.gz".into(),
        expected: reason,
    }
}

impl ClipTokenizer {
    /// Decompresses and indexes the embedded vocabulary (about 50 ms; prefer [`Self::shared`]).
    pub fn new() -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(VOCAB_GZ)
            .read_to_string(&mut text)
            .map_err(|e| corrupt(format!("a readable gzip text file ({e})")))?;

        let mut tokens: Vec<String> = Vec::with_capacity(VOCAB_SIZE);
        let mut byte_ids = [0u32; 256];
        let mut char_bytes = HashMap::with_capacity(256);
        for (id, (byte, ch)) in byte_characters().into_iter().enumerate() {
            byte_ids[usize::from(byte)] = id as u32;
            char_bytes.insert(ch, byte);
            tokens.push(ch.to_string());
        }
        for id in 0..256 {
            let with_end = format!("{}{WORD_END}", tokens[id]);
            tokens.push(with_end);
        }
        let mut ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();

        let mut merge_ranks = HashMap::with_capacity(N_MERGES);
        let mut lines = text.split('\n').skip(1);
        for rank in 0..N_MERGES as u32 {
            let line = lines
                .next()
                .ok_or_else(|| corrupt(format!("at least {N_MERGES} merges")))?;
            let mut parts = line.split(' ');
            let (Some(left), Some(right), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(corrupt(format!(
                    "merge line {} to be two tokens: {line:?}",
                    rank + 2
                )));
            };
            let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) else {
                return Err(corrupt(format!("merge {line:?} to join known tokens")));
            };
            let merged = format!("{left}{right}");
            let id = FIRST_MERGE_ID + rank;
            if ids.insert(merged.clone(), id).is_some() {
                return Err(corrupt(format!("merge {line:?} to make a new token")));
            }
            merge_ranks.insert((l, r), rank);
            tokens.push(merged);
        }
        tokens.push(BOS_TEXT.to_string());
        tokens.push(EOS_TEXT.to_string());
        debug_assert_eq!(tokens.len(), VOCAB_SIZE);

        let words =
            Regex::new(WORD_PATTERN).map_err(|e| corrupt(format!("a valid word pattern ({e})")))?;
        Ok(Self {
            byte_ids,
            char_bytes,
            merge_ranks,
            tokens,
            words,
            word_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The process-wide tokenizer, built on first use.
    pub fn shared() -> Result<&'static ClipTokenizer> {
        static SHARED: OnceLock<ClipTokenizer> = OnceLock::new();
        if let Some(tokenizer) = SHARED.get() {
            return Ok(tokenizer);
        }
        let built = ClipTokenizer::new()?;
        Ok(SHARED.get_or_init(|| built))
    }

    /// Token ids of `text`, without BOS/EOS framing (transformers' ids minus the first and last).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next_special = [
                (rest.find(BOS_TEXT), BOS, BOS_TEXT),
                (rest.find(EOS_TEXT), EOS, EOS_TEXT),
            ]
            .into_iter()
            .filter_map(|(pos, id, s)| pos.map(|p| (p, id, s.len())))
            .min();
            match next_special {
                Some((pos, id, len)) => {
                    self.encode_plain(&rest[..pos], &mut out);
                    out.push(id);
                    rest = &rest[pos + len..];
                }
                None => {
                    self.encode_plain(rest, &mut out);
                    rest = "";
                }
            }
        }
        out
    }

    /// Text of `ids`: word ends become spaces, the result is trimmed, BOS/EOS and ids outside
    /// the vocabulary are skipped, and invalid UTF-8 (a character cut between tokens) is
    /// replaced with U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if id == BOS || id == EOS {
                continue;
            }
            let Some(token) = self.tokens.get(id as usize) else {
                continue;
            };
            let (body, word_end) = match token.strip_suffix(WORD_END) {
                Some(body) => (body, true),
                None => (token.as_str(), false),
            };
            bytes.extend(
                body.chars()
                    .filter_map(|c| self.char_bytes.get(&c).copied()),
            );
            if word_end {
                bytes.push(b' ');
            }
        }
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// The vocabulary entry of `id` in CLIP's byte-character form, e.g. `cat</w>`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let normalized = normalize(text);
        let mut cache = self.lock_cache();
        if cache.len() > WORD_CACHE_LIMIT {
            cache.clear();
        }
        for word in self.words.find_iter(&normalized) {
            let word = word.as_str();
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let ids = self.bpe(word);
            out.extend_from_slice(&ids);
            cache.insert(word.to_string(), ids);
        }
    }

    fn lock_cache(&self) -> MutexGuard<'_, HashMap<String, Vec<u32>>> {
        // A panic elsewhere while holding the lock cannot leave a wrong entry behind (entries
        // are inserted whole), so a poisoned cache is still good.
        self.word_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Merges one word: always the lowest-ranked adjacent pair, every occurrence left to right.
    fn bpe(&self, word: &str) -> Vec<u32> {
        let bytes = word.as_bytes();
        let mut symbols: Vec<u32> = bytes
            .iter()
            .map(|&b| self.byte_ids[usize::from(b)])
            .collect();
        if let Some(last) = symbols.last_mut() {
            *last += 256;
        }
        loop {
            let best = symbols
                .windows(2)
                .filter_map(|pair| {
                    self.merge_ranks
                        .get(&(pair[0], pair[1]))
                        .map(|&rank| (rank, pair[0], pair[1]))
                })
                .min();
            let Some((rank, left, right)) = best else {
                break;
            };
            let merged = FIRST_MERGE_ID + rank;
            let mut next = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            symbols = next;
        }
        symbols
    }
}

/// NFC, whitespace runs → one space, per-character lowercase (transformers' normaliser).
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.nfc() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.extend(c.to_lowercase());
            in_space = false;
        }
    }
    out
}
