//! Assembling a PixArt-Σ [`Pipeline`]: its parts found by [`PixArtFiles`] (a diffusers
//! folder or ComfyUI's transformer + `--clip` T5 + `--vae`), the transformer on the
//! denoiser's device, T5 on the text device in bf16 (it overflows in fp16; cards without
//! native bf16 run it in fp16 with its safeguards), the SDXL VAE.

use super::loading::{component_memory, cudnn_benchmark, load_vae, vae_kind};
use super::loading::{native_bf16, resident_memory, ModelInfo};
use super::modes::OnDemand;
use super::parts::{DenoiserNet, TextConditioning};
use super::t5_text::{T5Text, DEFAULT_CACHED_PROMPTS};
use super::{torch_device, torch_kind, ModelChoice, Pipeline};
use crate::checkpoint::{Family, Prediction};
use crate::error::Result;
use crate::lora::LoraPatcher;
use crate::pixart::{PixArtConfig, PixArtFiles, PixArtTransformer};
use crate::sampling::ModelSchedule;
use crate::t5::{T5Config, T5Encoder};
use crate::weights::Weights;
use imagelab_core::memory::Offload;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tch::Kind;

/// T5's precision for the pipeline's `kind` on a device with or without native bf16. T5's
/// activations outgrow fp16, so under fp16 it runs in bf16 (fp32's range). Cards that only
/// emulate bf16 (V100, T4) keep fp16 weights: the encoder then relies on its safeguards,
/// which hold in every precision (the residual stream, the feed-forward's gated product and
/// `wo` in fp32, see [`crate::t5`]), as transformers keeps `wo` in fp32 for fp16.
fn t5_kind(kind: Kind, native_bf16: bool) -> Kind {
    if kind == Kind::Half && native_bf16 {
        Kind::BFloat16
    } else {
        kind
    }
}

fn load_transformer(
    files: &PixArtFiles,
    choice: &ModelChoice,
) -> Result<(PixArtTransformer, Arc<AtomicU64>)> {
    let device = torch_device(choice.placement.unet);
    let (weights, bytes) = files
        .transformer
        .to(device, torch_kind(choice.dtype))
        .counted();
    let mut cfg = PixArtConfig::detect(&weights)?;
    if let Some(json) = &files.transformer_config {
        cfg = cfg.with_diffusers_config(json)?;
    }
    let dit = PixArtTransformer::load(&weights, &cfg)?.with_attention(choice.memory.attention);
    Ok((dit, bytes))
}

/// T5 on the text device: kept there, or (any offload) streamed there for each encoding,
/// one block at a time, so its 9.5 GB never share the card with the transformer: the
/// peak is one 0.39 GB block and the 0.26 GB embedding. That is what lets `--low-vram` run
/// PixArt-Σ on a 12 GiB card ("T5 encoding on the GPU in parts").
fn load_t5(
    weights: &Weights,
    choice: &ModelChoice,
) -> Result<(OnDemand<T5Encoder>, super::ComponentMemory)> {
    let device = choice.placement.text_encoders;
    let kind = t5_kind(torch_kind(choice.dtype), native_bf16(device));
    let (weights, bytes) = weights.to(torch_device(device), kind).counted();
    let cfg = T5Config::detect(&weights)?;
    let encoder = if choice.memory.offload != Offload::None {
        T5Encoder::check_blocks(&weights, &cfg)?;
        let weights = weights.uncounted();
        OnDemand::offloaded(Box::new(move || T5Encoder::streamed(&weights, &cfg)))?
    } else {
        OnDemand::Resident(T5Encoder::load(&weights, &cfg)?)
    };
    let entry = resident_memory("t5", device, &bytes, &encoder);
    Ok((encoder, entry))
}

/// The memory modes as this pipeline carries them out: T5's blocks are streamed under
/// either offload, the DiT's are not (at 1.2 GB it stays), so sequential offload is model
/// offload here, and the pipeline says so rather than report a mode it does not run.
fn settings_as_run(mut memory: super::MemorySettings) -> super::MemorySettings {
    if memory.offload == Offload::Sequential {
        memory.offload = Offload::Model;
    }
    memory
}

pub(super) fn load(choice: &ModelChoice) -> Result<Pipeline> {
    let family = Family::PixArtSigma;
    let files = PixArtFiles::locate(
        &choice.checkpoint,
        choice.clip.as_deref(),
        choice.vae.as_deref(),
    )?;
    let kind = torch_kind(choice.dtype);
    let placement = choice.placement;
    let (dit, dit_bytes) = load_transformer(&files, choice)?;
    let mut memory = vec![component_memory(
        "transformer".into(),
        choice.placement.unet,
        &dit_bytes,
    )];
    let (encoder, t5_memory) = load_t5(&files.text_encoder, choice)?;
    memory.push(t5_memory);
    let vae_kind = vae_kind(family, kind, native_bf16(placement.vae));
    let (vae, vae_memory) = load_vae(choice, files.vae.clone(), vae_kind)?;
    memory.push(vae_memory);
    let tokenizer = files.tokenizer;
    let info = ModelInfo::of(choice, family)?;
    Ok(Pipeline {
        family,
        prediction: Prediction::Eps,
        info,
        // No LoRA targets: Pipeline::set_loras refuses LoRAs for this family by name.
        loras: std::cell::RefCell::new(LoraPatcher::new(None, Vec::new())),
        lora_hashes: std::cell::RefCell::default(),
        embeddings: std::cell::RefCell::default(),
        net: DenoiserNet::PixArt(Box::new(dit)),
        vae,
        text: TextConditioning::T5 {
            encoder,
            text: Box::new(T5Text::new(tokenizer, DEFAULT_CACHED_PROMPTS)),
        },
        settings: std::cell::Cell::new(settings_as_run(choice.memory)),
        tuning: choice.tuning,
        cudnn_benchmark: cudnn_benchmark(choice),
        schedule: ModelSchedule::pixart(),
        placement,
        device: torch_device(placement.unet),
        text_device: torch_device(placement.text_encoders),
        vae_device: torch_device(placement.vae),
        kind,
        vae_kind,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::loading::vae_kind;

    #[test]
    fn cards_without_native_bf16_run_t5_in_fp16_and_the_vae_in_fp32() {
        assert_eq!(t5_kind(Kind::Half, true), Kind::BFloat16);
        assert_eq!(t5_kind(Kind::Half, false), Kind::Half);
        assert_eq!(t5_kind(Kind::Float, false), Kind::Float);
        let pixart = Family::PixArtSigma;
        assert_eq!(vae_kind(pixart, Kind::Half, true), Kind::BFloat16);
        assert_eq!(vae_kind(pixart, Kind::Half, false), Kind::Float);
        assert_eq!(vae_kind(Family::Sdxl, Kind::Half, false), Kind::Float);
        assert_eq!(vae_kind(Family::Sd1, Kind::Half, false), Kind::Half);
        assert_eq!(vae_kind(Family::Sd1, Kind::BFloat16, true), Kind::BFloat16);
    }
}
