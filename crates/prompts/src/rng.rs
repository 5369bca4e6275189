//! The portable random source behind random mode: ChaCha8 seeded from the prompt seed.
//!
//! We deliberately do not use `rand`'s distributions (`gen_range`, `WeightedIndex`): their
//! algorithms may change between `rand` versions, which would silently change every
//! recorded prompt. ChaCha8's stream is fixed by its specification, and the reductions below
//! are plain integer and IEEE-754 arithmetic, identical on every platform.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded stream of random choices. The same seed always gives the same choices.
#[derive(Debug, Clone)]
pub struct PromptRng {
    inner: ChaCha8Rng,
}

impl PromptRng {
    pub fn new(seed: u64) -> PromptRng {
        PromptRng {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A number in `0..n` (`n` > 0), by the multiply-shift reduction (bias below 2^-40
    /// for any list a template can hold).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An index picked with probability proportional to `weights[i]`; `None` when no
    /// weight is positive.
    pub fn weighted(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
        if total <= 0.0 {
            return None;
        }
        let mut target = self.unit() * total;
        let mut last_positive = None;
        for (index, weight) in weights.iter().enumerate() {
            if *weight <= 0.0 {
                continue;
            }
            if target < *weight {
                return Some(index);
            }
            target -= weight;
            last_positive = Some(index);
        }
        // Rounding can leave `target` a hair above the last weight.
        last_positive
    }
}

/// Mixes a run seed and an index into a prompt seed (SplitMix64's finalizer), so prompt
/// number `index` of a run can be regenerated from the seed it recorded alone.
pub fn derive_seed(run_seed: u64, index: u64) -> u64 {
    let mut z = run_seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
