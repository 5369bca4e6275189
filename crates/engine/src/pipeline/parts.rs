//! The two parts of a pipeline that differ by family — the denoising network (the SD UNet
//! or PixArt's DiT) and the text conditioning (the CLIP encoders or T5) — behind one
//! shape each, so noise, sigmas, samplers, CFG, the VAE and the PNG stay shared.

use super::conditioning::{encode_prompt, Conditioning};
use super::denoiser::{GuidanceInput, Network};
use super::modes::OnDemand;
use super::t5_text::T5Text;
use crate::checkpoint::Family;
use crate::clip::ClipTextEncoder;
use crate::embedding::PromptEmbeddings;
use crate::error::Result;
use crate::pixart::PixArtTransformer;
use crate::t5::T5Encoder;
use crate::tokenizer::ClipTokenizer;
use crate::unet::UNet;
use tch::Device;

/// The loaded denoising network.
pub(super) enum DenoiserNet {
    UNet(Box<UNet>),
    PixArt(Box<PixArtTransformer>),
}

impl DenoiserNet {
    pub fn network(&self) -> Network<'_> {
        match self {
            DenoiserNet::UNet(unet) => Network::UNet(unet),
            DenoiserNet::PixArt(dit) => Network::PixArt(dit),
        }
    }

    /// The multiple the latent sides must be: PixArt's patches are 2 latents wide.
    pub fn latent_multiple(&self) -> u32 {
        match self {
            DenoiserNet::UNet(_) => 1,
            DenoiserNet::PixArt(dit) => dit.config().patch.max(1) as u32,
        }
    }
}

/// The loaded text conditioning: the encoders (possibly offloaded) and their tokenizer.
pub(super) enum TextConditioning {
    Clip {
        encoders: OnDemand<Vec<ClipTextEncoder>>,
        tokenizer: &'static ClipTokenizer,
    },
    T5 {
        encoder: OnDemand<T5Encoder>,
        text: Box<T5Text>,
    },
}

/// The encoders while they are on their device (for one or several prompts).
pub(super) enum Encoders<'a> {
    Clip(&'a [ClipTextEncoder], &'static ClipTokenizer),
    T5(&'a T5Encoder, &'a T5Text),
}

impl TextConditioning {
    /// Runs `f` with the encoders on their device (built there first when offloaded), so
    /// the prompt and the negative share one visit.
    pub fn visit<R>(&self, f: impl FnOnce(Encoders<'_>) -> Result<R>) -> Result<R> {
        match self {
            TextConditioning::Clip {
                encoders,
                tokenizer,
            } => encoders.with(|e| f(Encoders::Clip(e, tokenizer))),
            TextConditioning::T5 { encoder, text } => encoder.with(|e| f(Encoders::T5(e, text))),
        }
    }

    /// Both prompts' T5 guidance on `device` when both are cached, so an offloaded T5 is
    /// not built for nothing; `None` otherwise (and always for CLIP).
    pub fn cached_pair(
        &self,
        prompts: [&str; 2],
        device: Device,
    ) -> Option<Result<(GuidanceInput, GuidanceInput)>> {
        let TextConditioning::T5 { text, .. } = self else {
            return None;
        };
        if !prompts.iter().all(|p| text.contains(p)) {
            return None;
        }
        let [a, b] = prompts.map(|p| text.cached_guidance(p, device));
        let (Some(a), Some(b)) = (a, b) else {
            return None;
        };
        Some(a.and_then(|a| Ok((a, b?))))
    }

    /// How often the offloaded text encoders were built for a use (0 when resident).
    pub fn encoder_builds(&self) -> u64 {
        match self {
            TextConditioning::Clip { encoders, .. } => encoders.builds(),
            TextConditioning::T5 { encoder, .. } => encoder.builds(),
        }
    }

    /// The CLIP tokenizer, for the families that have one (embeddings are CLIP's).
    pub fn clip_tokenizer(&self) -> Option<&'static ClipTokenizer> {
        match self {
            TextConditioning::Clip { tokenizer, .. } => Some(tokenizer),
            TextConditioning::T5 { .. } => None,
        }
    }
}

/// What a prompt (its `<lora:…>` tags already removed) is encoded with.
pub(super) struct PromptInput<'a, 'b> {
    pub family: Family,
    pub clip_skip: Option<u32>,
    pub embeddings: &'a mut PromptEmbeddings<'b>,
    pub text_device: Device,
}

impl Encoders<'_> {
    /// The context (and SDXL's pooled output) on the text device. T5's mask is dropped
    /// here: [`Encoders::guidance`] keeps it.
    pub fn conditioning(&self, prompt: &str, input: PromptInput<'_, '_>) -> Result<Conditioning> {
        match self {
            Encoders::Clip(encoders, tokenizer) => encode_prompt(
                input.family,
                encoders,
                tokenizer,
                prompt,
                input.clip_skip,
                input.embeddings,
                input.text_device,
            ),
            Encoders::T5(encoder, text) => Ok(Conditioning {
                context: text.guidance(encoder, prompt, input.text_device)?.context,
                pooled: None,
            }),
        }
    }

    /// T5's guidance (context and mask) moved to `device`; `None` for CLIP, whose
    /// conditioning the pipeline turns into guidance itself (SDXL's size vector).
    pub fn t5_guidance(&self, prompt: &str, device: Device) -> Result<Option<GuidanceInput>> {
        match self {
            Encoders::Clip(..) => Ok(None),
            Encoders::T5(encoder, text) => text.guidance(encoder, prompt, device).map(Some),
        }
    }
}
