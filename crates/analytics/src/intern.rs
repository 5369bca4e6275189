//! Interning group values to small integers, with a fast non-cryptographic hasher: the
//! streaming loop then counts pairs and configurations under integer keys instead of
//! building and hashing strings for every image. The keys are our own group values, not
//! attacker-chosen, so hash flooding is no concern here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (the rustc hasher): one multiply and rotate per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The values of one dimension, each given an id in order of first appearance.
#[derive(Debug, Default)]
pub struct Interner {
    by_text: FxMap<String, u32>,
    by_number: FxMap<u64, u32>,
    labels: Vec<String>,
}

impl Interner {
    /// The id of a text value.
    pub fn text(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.by_text.get(value) {
            return id;
        }
        let id = self.push(value.to_string());
        self.by_text.insert(value.to_string(), id);
        id
    }

    /// The id of a value known by a number (steps, a size, CFG bits); `label` is only
    /// called the first time.
    pub fn number(&mut self, key: u64, label: impl FnOnce() -> String) -> u32 {
        if let Some(&id) = self.by_number.get(&key) {
            return id;
        }
        let text = label();
        // Two numbers with the same label (cannot happen for our keys) share one id.
        let id = match self.by_text.get(&text) {
            Some(&id) => id,
            None => {
                let id = self.push(text.clone());
                self.by_text.insert(text, id);
                id
            }
        };
        self.by_number.insert(key, id);
        id
    }

    fn push(&mut self, label: String) -> u32 {
        let id = u32::try_from(self.labels.len()).unwrap_or(u32::MAX);
        self.labels.push(label);
        id
    }

    pub fn label(&self, id: u32) -> &str {
        self.labels.get(id as usize).map_or("", String::as_str)
    }
}
