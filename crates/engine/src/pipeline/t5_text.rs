//! PixArt-Σ's text conditioning: a prompt through T5's tokenizer and encoder to a context
//! with its token mask, with a small cache of recent prompts, so a night run's repeated
//! negative prompt or a re-run prompt skips T5 (4.76 B parameters) entirely.

use super::denoiser::GuidanceInput;
use crate::error::{EngineError, Result};
use crate::t5::{T5Encoder, T5Tokenizer};
use std::cell::RefCell;
use std::collections::VecDeque;
use tch::{Device, Tensor};

/// ComfyUI's emphasis for T5: each weighted token's output moved away from (or towards)
/// the output for an all-`<pad>` prompt of the same length, `(z − z_empty)·w + z_empty`.
fn emphasise(encoder: &T5Encoder, context: &Tensor, weights: &[f32]) -> Result<Tensor> {
    let real = weights.len() as i64;
    let empty_ids = Tensor::zeros([1, real], (tch::Kind::Int64, tch::Device::Cpu));
    let all = empty_ids.ones_like();
    let empty = encoder
        .encode(&empty_ids, &all)?
        .hidden
        .to_kind(tch::Kind::Float);
    let w = Tensor::from_slice(weights)
        .view([1, real, 1])
        .to_device(context.device());
    let head = context.narrow(1, 0, real).to_kind(tch::Kind::Float);
    let weighted = ((head - &empty) * w + &empty).to_kind(context.kind());
    let rest = context.narrow(1, real, context.size()[1] - real);
    Ok(Tensor::cat(&[weighted, rest], 1))
}

/// Prompts kept by default: a night run's negative, a handful of recent prompts.
pub const DEFAULT_CACHED_PROMPTS: usize = 8;

/// How often the cache answered, for tests and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptCacheStats {
    pub hits: u64,
    pub misses: u64,
}

struct Entry {
    prompt: String,
    context: Tensor,
    mask: Tensor,
}

/// The tokenizer and the cache of encoded prompts (most recent last).
pub struct T5Text {
    tokenizer: T5Tokenizer,
    capacity: usize,
    recent: RefCell<VecDeque<Entry>>,
    stats: RefCell<PromptCacheStats>,
}

impl T5Text {
    pub fn new(tokenizer: T5Tokenizer, capacity: usize) -> T5Text {
        T5Text {
            tokenizer,
            capacity,
            recent: RefCell::new(VecDeque::new()),
            stats: RefCell::default(),
        }
    }

    pub fn stats(&self) -> PromptCacheStats {
        *self.stats.borrow()
    }

    /// The guidance for `prompt` (`[1, tokens, d_model]` context, `[1, tokens]` mask) on
    /// `device`, from the cache or by running `encoder`. The prompt is encoded as given —
    /// T5 is cased, and nothing is lower-cased or stripped — but for ComfyUI's emphasis
    /// syntax, which weights its words as ComfyUI does.
    pub fn guidance(
        &self,
        encoder: &T5Encoder,
        prompt: &str,
        device: Device,
    ) -> Result<GuidanceInput> {
        let (context, mask) = match self.cached(prompt) {
            Some(found) => found,
            None => self.encode_and_keep(encoder, prompt)?,
        };
        Ok(GuidanceInput {
            context: context.f_to_device(device)?,
            vector: None,
            mask: Some(mask.f_to_device(device)?),
        })
    }

    /// The guidance for `prompt` on `device` if it is cached (no encoder needed).
    pub fn cached_guidance(&self, prompt: &str, device: Device) -> Option<Result<GuidanceInput>> {
        let (context, mask) = self.cached(prompt)?;
        Some((|| {
            Ok(GuidanceInput {
                context: context.f_to_device(device)?,
                vector: None,
                mask: Some(mask.f_to_device(device)?),
            })
        })())
    }

    /// Whether `prompt`'s encoding is kept (counts neither a hit nor a miss).
    pub fn contains(&self, prompt: &str) -> bool {
        self.recent.borrow().iter().any(|e| e.prompt == prompt)
    }

    fn cached(&self, prompt: &str) -> Option<(Tensor, Tensor)> {
        let mut recent = self.recent.borrow_mut();
        let Some(at) = recent.iter().position(|e| e.prompt == prompt) else {
            self.stats.borrow_mut().misses += 1;
            return None;
        };
        let entry = recent.remove(at)?;
        let found = (entry.context.shallow_clone(), entry.mask.shallow_clone());
        recent.push_back(entry);
        self.stats.borrow_mut().hits += 1;
        Some(found)
    }

    fn encode_and_keep(&self, encoder: &T5Encoder, prompt: &str) -> Result<(Tensor, Tensor)> {
        let tokens = self.tokenizer.encode_weighted(prompt)?;
        let (ids, mask) = (&tokens.ids, &tokens.mask);
        let vocab = encoder.config().vocab;
        let largest = ids.max().int64_value(&[]);
        if largest >= vocab {
            return Err(EngineError::Incompatible {
                what: "tokenizer",
                path: self.tokenizer.source().to_path_buf(),
                reason: format!(
                    "it gives token id {largest}; the T5 encoder has {vocab} embeddings"
                ),
            });
        }
        let mut context = tch::no_grad(|| encoder.encode(ids, mask))?.hidden;
        if tokens.weights.iter().any(|&w| w != 1.0) {
            context = tch::no_grad(|| emphasise(encoder, &context, &tokens.weights))?;
        }
        let mask = mask.shallow_clone();
        if self.capacity > 0 {
            let mut recent = self.recent.borrow_mut();
            if recent.len() == self.capacity {
                recent.pop_front();
            }
            recent.push_back(Entry {
                prompt: prompt.to_string(),
                context: context.shallow_clone(),
                mask: mask.shallow_clone(),
            });
        }
        Ok((context, mask))
    }
}
