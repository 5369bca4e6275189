//! Assembling a [`Pipeline`]: classify the checkpoint, apply the VAE / text-encoder
//! overrides (checking they fit), load every part to the device, and describe results.

use super::modes::OnDemand;
use super::parts::{DenoiserNet, TextConditioning};
use super::{torch_device, torch_kind, ComponentMemory, ModelChoice, Pipeline, RgbImage};
use crate::checkpoint::{self, Family};
use crate::clip::{self, ClipConfig, ClipTextEncoder};
use crate::error::{EngineError, Result};
use crate::lora::{LoraPatcher, PatchTarget};
use crate::tokenizer::ClipTokenizer;
use crate::unet::{BlockOptions, UNet, UNetConfig, UNetOptions};
use crate::vae::{self, AutoencoderKl, VaeConfig};
use crate::weights::Weights;
use imagelab_core::memory::{AttentionMode, Offload};
use imagelab_core::{GenerationParams, ENGINE_VERSION};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tch::Kind;

/// Names and hashes recorded in every image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub model_name: String,
    pub model_path: PathBuf,
    /// First 10 hex digits of the file's sha256, as A1111's "Model hash".
    pub model_hash: String,
    pub vae_name: Option<String>,
    pub clip_name: Option<String>,
    pub family: Family,
}

impl ModelInfo {
    /// The names and hash `choice`'s files give an image of `family`.
    pub(super) fn of(choice: &ModelChoice, family: Family) -> Result<ModelInfo> {
        Ok(ModelInfo {
            model_name: file_label(&choice.checkpoint),
            model_path: choice.checkpoint.clone(),
            model_hash: crate::model_hash::short_sha256(&choice.checkpoint)?,
            vae_name: choice.vae.as_deref().map(file_label),
            clip_name: choice.clip.as_deref().map(file_label),
            family,
        })
    }
}

fn file_label(path: &Path) -> String {
    path.file_stem()
        .or(path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The text-encoder roots in a standalone CLIP file, keyed by hidden width. A root is where
/// one of the three layouts starts: `text_model.embeddings.…` (Hugging Face),
/// `embeddings.…` (Hugging Face without its root, as transformers 5 saves it) or
/// `token_embedding.weight` (open_clip); ComfyUI's `clip_l.`/`clip_g.` prefixes are roots too.
fn clip_roots_in(w: &Weights) -> Vec<(i64, Weights)> {
    const ENDINGS: [&str; 3] = [
        "text_model.embeddings.token_embedding.weight",
        "embeddings.token_embedding.weight",
        "token_embedding.weight",
    ];
    let mut roots = Vec::new();
    for name in w.names_with_prefix("") {
        // The longest ending that matches decides the root (they are suffixes of each other).
        let Some(root) = ENDINGS.iter().find_map(|end| name.strip_suffix(end)) else {
            continue;
        };
        if !(root.is_empty() || root.ends_with('.')) {
            continue;
        }
        if let Some(width) = w.shape(&name).and_then(|s| s.get(1).copied()) {
            let root = root.trim_end_matches('.');
            roots.push((
                width,
                if root.is_empty() {
                    w.clone()
                } else {
                    w.at(root)
                },
            ));
        }
    }
    roots
}

fn load_encoder(w: &Weights, config_json: Option<&Path>) -> Result<ClipTextEncoder> {
    let layout = clip::detect_layout(w).ok_or_else(|| EngineError::UnknownArchitecture {
        path: PathBuf::from(w.label()),
        reason: "no CLIP text encoder tensors found".into(),
    })?;
    let mut cfg = ClipConfig::detect(w, layout)?;
    if let Some(path) = config_json {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.apply_hf_config(&text, path)?;
    }
    ClipTextEncoder::load(w, &cfg)
}

/// The hidden widths each family's encoders have (CLIP-L 768, OpenCLIP-H 1024, -G 1280).
fn family_encoder_widths(family: Family) -> Vec<i64> {
    match family {
        Family::Sd1 => vec![768],
        Family::Sd2 => vec![1024],
        Family::Sdxl => vec![768, 1280],
        Family::PixArtSigma => Vec::new(),
    }
}

/// The hidden width of a text encoder, from its token embedding in either layout.
fn encoder_width(w: &Weights) -> Option<i64> {
    [
        "text_model.embeddings.token_embedding.weight",
        "token_embedding.weight",
    ]
    .iter()
    .find_map(|name| w.shape(name))
    .and_then(|shape| shape.get(1).copied())
}

/// A component's entry: what its weights counted when kept on the device, 0 when it is
/// offloaded (it holds nothing there between uses).
pub(super) fn resident_memory<T>(
    component: &str,
    device: imagelab_core::DeviceSpec,
    ledger: &Arc<AtomicU64>,
    loaded: &OnDemand<T>,
) -> ComponentMemory {
    let mut entry = component_memory(component.into(), device, ledger);
    if !loaded.is_resident() {
        entry.bytes = 0;
    }
    entry
}

/// One component's entry in the memory report, read from the counter its weights fed.
pub(super) fn component_memory(
    component: String,
    device: imagelab_core::DeviceSpec,
    ledger: &Arc<AtomicU64>,
) -> ComponentMemory {
    ComponentMemory {
        component,
        device,
        bytes: ledger.load(Ordering::Relaxed),
    }
}

/// cuDNN's per-shape algorithm search, set before each run (it is process-wide); `None`
/// off CUDA. Off in the load-time memory modes, whose trial runs could take large
/// workspaces on the small cards those modes are for.
pub(super) fn cudnn_benchmark(choice: &ModelChoice) -> Option<bool> {
    let p = choice.placement;
    let settings = choice.memory;
    [p.unet, p.text_encoders, p.vae]
        .iter()
        .any(|d| torch_device(*d).is_cuda())
        .then_some(
            choice.tuning.cudnn_benchmark
                && settings.attention == AttentionMode::Sdpa
                && settings.offload == Offload::None,
        )
}

/// The VAE's precision on a device with or without native bf16: the SDXL VAE (PixArt-Σ's
/// too) overflows in fp16 (NaNs); bf16 has fp32's range, so it runs there, and in fp32 on
/// cards that only emulate bf16 (V100, T4), as diffusers upcasts it.
pub(super) fn vae_kind(family: Family, kind: Kind, native_bf16: bool) -> Kind {
    let sdxl_vae = matches!(family, Family::Sdxl | Family::PixArtSigma);
    match (kind == Kind::Half && sdxl_vae, native_bf16) {
        (true, true) => Kind::BFloat16,
        (true, false) => Kind::Float,
        (false, _) => kind,
    }
}

/// Whether the device of a component runs bf16 natively (see [`crate::cuda_capability`]).
pub(super) fn native_bf16(device: imagelab_core::DeviceSpec) -> bool {
    crate::cuda_capability::native_bf16(super::torch_device(device))
}

/// The VAE on its device in `vae_kind` (built on demand under offload), and its memory
/// entry. A bad `--vae` file is an error naming it.
pub(super) fn load_vae(
    choice: &ModelChoice,
    weights: Weights,
    vae_kind: Kind,
) -> Result<(OnDemand<AutoencoderKl>, ComponentMemory)> {
    let device = choice.placement.vae;
    let (weights, bytes) = weights.to(torch_device(device), vae_kind).counted();
    let cfg = VaeConfig::detect(&weights).map_err(|e| match &choice.vae {
        Some(path) => EngineError::Incompatible {
            what: "VAE",
            path: path.clone(),
            reason: e.to_string(),
        },
        None => e,
    })?;
    let attention = choice.memory.attention;
    let vae = if choice.memory.offload != Offload::None {
        let weights = weights.uncounted();
        OnDemand::offloaded(Box::new(move || {
            AutoencoderKl::load_with(&weights, &cfg, attention)
        }))?
    } else {
        OnDemand::Resident(AutoencoderKl::load_with(&weights, &cfg, attention)?)
    };
    let entry = resident_memory("vae", device, &bytes, &vae);
    Ok((vae, entry))
}

pub(super) fn load(choice: &ModelChoice) -> Result<Pipeline> {
    let placement = choice.placement;
    let device = torch_device(placement.unet);
    let text_device = torch_device(placement.text_encoders);
    let vae_device = torch_device(placement.vae);
    let kind = torch_kind(choice.dtype);
    let source = checkpoint::open_model(&choice.checkpoint)?;
    let family = source.family;
    let mut memory = Vec::new();
    let settings = choice.memory;
    // With offload, the text encoders and the VAE visit their device only while used.
    let offload_others = settings.offload != Offload::None;
    let cudnn_benchmark = cudnn_benchmark(choice);

    let (unet_weights, unet_bytes) = source.unet.to(device, kind).counted();
    let unet_options = UNetOptions {
        blocks: BlockOptions {
            attention: settings.attention,
            fused_qkv: choice.tuning.fused_qkv,
            channels_last: choice.tuning.channels_last && device.is_cuda(),
        },
        stream_blocks: settings.offload == Offload::Sequential,
    };
    // Kept-loaded weights are recorded, so LoRAs can be merged into them in place.
    let patchable = settings.offload == Offload::None;
    // (Only those: a registry keeps every tensor it saw alive.)
    let (unet_weights, unet_registry) = match patchable {
        true => {
            let (weights, registry) = unet_weights.recorded();
            (weights, Some(registry))
        }
        false => (unet_weights, None),
    };
    let unet_cfg = UNetConfig::detect(&unet_weights)?;
    let unet = UNet::load_with(&unet_weights, &unet_cfg, unet_options)?;
    let unet_target = unet_registry.map(|registry| {
        PatchTarget::Unet(registry, crate::lora::targets::diffusers_layout(&unet_cfg))
    });
    memory.push(component_memory("unet".into(), placement.unet, &unet_bytes));

    let vae_kind = vae_kind(family, kind, native_bf16(placement.vae));
    let vae_weights = match &choice.vae {
        Some(path) => {
            vae::vae_weights_from_file(checkpoint::open_component(path)?).map_err(|e| {
                EngineError::Incompatible {
                    what: "VAE",
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?
        }
        None => source
            .vae
            .clone()
            .ok_or_else(|| EngineError::Incompatible {
                what: "checkpoint",
                path: choice.checkpoint.clone(),
                reason: "it has no VAE (first_stage_model.*); pick one with --vae".into(),
            })?,
    };
    let (vae, vae_memory) = load_vae(choice, vae_weights, vae_kind)?;
    memory.push(vae_memory);

    let mut encoder_weights = source.text_encoders.clone();
    if let Some(path) = &choice.clip {
        let file = Weights::from_file(checkpoint::open_component(path)?);
        let roots = clip_roots_in(&file);
        // Replacements must match the widths of the checkpoint's own encoders (any model
        // size), or the family's real widths when the checkpoint carries none.
        let own: Option<Vec<i64>> = encoder_weights.iter().map(encoder_width).collect();
        let wanted = own
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| family_encoder_widths(family));
        let mut replaced = 0;
        for (width, root) in roots {
            if let Some(slot) = wanted.iter().position(|&w| w == width) {
                if encoder_weights.len() <= slot {
                    encoder_weights.resize(slot + 1, root.clone());
                }
                encoder_weights[slot] = root;
                replaced += 1;
            }
        }
        if replaced == 0 {
            return Err(EngineError::Incompatible {
                what: "text encoder",
                path: path.clone(),
                reason: format!(
                    "it holds no text encoder of width {wanted:?}, which a {} model needs",
                    family.as_str()
                ),
            });
        }
    }
    if encoder_weights.len() != family_encoder_widths(family).len() {
        return Err(EngineError::Incompatible {
            what: "checkpoint",
            path: choice.checkpoint.clone(),
            reason: "it lacks its text encoder(s); pick them with --clip".into(),
        });
    }
    // Each encoder's weights on the text device, with the folder's config.json for the
    // checkpoint's own encoders (a replacement from --clip has none).
    let recipes: Vec<(Weights, Option<PathBuf>)> = encoder_weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let config = source.text_encoder_configs.get(i).cloned().flatten();
            let config = if choice.clip.is_some() { None } else { config };
            (w.to(text_device, kind), config)
        })
        .collect();
    let mut encoder_targets = Vec::new();
    let encoders = if offload_others {
        let recipes: Vec<_> = recipes
            .into_iter()
            .map(|(w, config)| (w.uncounted(), config))
            .collect();
        for i in 0..recipes.len() {
            memory.push(ComponentMemory {
                component: format!("text_encoder_{i}"),
                device: placement.text_encoders,
                bytes: 0,
            });
        }
        OnDemand::offloaded(Box::new(move || {
            recipes
                .iter()
                .map(|(w, config)| load_encoder(w, config.as_deref()))
                .collect()
        }))?
    } else {
        let mut loaded = Vec::new();
        for (i, (w, config)) in recipes.iter().enumerate() {
            let (w, bytes) = w.counted();
            let (w, registry) = w.recorded();
            let encoder = load_encoder(&w, config.as_deref())?;
            encoder_targets.push(PatchTarget::TextEncoder(registry, encoder.config().layout));
            loaded.push(encoder);
            memory.push(component_memory(
                format!("text_encoder_{i}"),
                placement.text_encoders,
                &bytes,
            ));
        }
        OnDemand::Resident(loaded)
    };

    let info = ModelInfo::of(choice, family)?;
    Ok(Pipeline {
        family,
        prediction: source.prediction,
        info,
        loras: std::cell::RefCell::new(LoraPatcher::new(unet_target, encoder_targets)),
        lora_hashes: std::cell::RefCell::default(),
        embeddings: std::cell::RefCell::default(),
        net: DenoiserNet::UNet(Box::new(unet)),
        vae,
        text: TextConditioning::Clip {
            encoders,
            tokenizer: ClipTokenizer::shared()?,
        },
        settings: std::cell::Cell::new(settings),
        tuning: choice.tuning,
        cudnn_benchmark,
        schedule: crate::sampling::ModelSchedule::stable_diffusion(),
        placement,
        device,
        text_device,
        vae_device,
        kind,
        vae_kind,
        memory,
    })
}

/// Reads an init image, refusing one whose size differs from the requested size (resizing
/// silently would change the composition the user asked for).
pub(super) fn read_init_image(path: &str, width: u32, height: u32) -> Result<tch::Tensor> {
    let path_buf = PathBuf::from(path);
    let img = image::open(&path_buf)
        .map_err(|e| EngineError::Invalid {
            field: "init_image",
            value: path.to_string(),
            expected: e.to_string(),
        })?
        .to_rgb8();
    if img.width() != width || img.height() != height {
        return Err(EngineError::Invalid {
            field: "init_image",
            value: format!("{path} ({}x{})", img.width(), img.height()),
            expected: format!("an image of the requested size {width}x{height}"),
        });
    }
    vae::rgb8_to_tensor(width, height, img.as_raw())
}

/// The A1111 `parameters` text and our JSON spec for one image.
/// The prompt as A1111 records it: LoRAs given outside the prompt (`--lora`, a spec's
/// list) become `<lora:…>` tags at its end, so A1111, Forge and Civitai see every LoRA.
fn prompt_with_lora_tags(prompt: &str, listed: &[imagelab_core::lora::LoraRef]) -> String {
    let mut text = prompt.to_string();
    for lora in listed {
        let weights = match lora.te_weight {
            Some(te) if te != lora.weight => format!("{}:{te}", lora.weight),
            _ => lora.weight.to_string(),
        };
        text.push_str(&format!(" <lora:{}:{weights}>", lora.name));
    }
    text
}

pub(super) fn describe(
    p: &Pipeline,
    params: &GenerationParams,
    image: &RgbImage,
) -> (String, String) {
    let mut fields = vec![
        ("Steps", params.steps.to_string()),
        ("Sampler", params.sampler.a1111_label().to_string()),
        ("Schedule type", params.scheduler.a1111_label().to_string()),
        ("CFG scale", format!("{}", params.cfg)),
        ("Seed", image.seed.to_string()),
        ("Size", format!("{}x{}", image.width, image.height)),
        ("Model hash", p.info.model_hash.clone()),
        ("Model", p.info.model_name.clone()),
    ];
    if params.batch > 1 {
        fields.push(("Batch size", params.batch.to_string()));
        fields.push(("Batch pos", image.batch_index.to_string()));
    }
    if let Some(vae) = &p.info.vae_name {
        fields.push(("VAE", vae.clone()));
    }
    // T5 has no CLIP layers to skip: PixArt-Σ's images do not claim one.
    let clip_skip = params.clip_skip.filter(|_| p.family != Family::PixArtSigma);
    if let Some(skip) = clip_skip {
        fields.push(("Clip skip", skip.to_string()));
    }
    if params.init_image.is_some() {
        fields.push(("Denoising strength", format!("{}", params.strength)));
    }
    let loras = p.applied_loras_with_hashes();
    if !loras.is_empty() {
        let hashes: Vec<String> = loras
            .iter()
            .map(|(l, h)| format!("{}: {h}", l.name))
            .collect();
        fields.push(("Lora hashes", hashes.join(", ")));
    }
    let embeddings: Vec<(String, String)> = p
        .embeddings_in(params)
        .unwrap_or_default()
        .iter()
        .map(|e| (e.name.clone(), e.short_hash()))
        .collect();
    if !embeddings.is_empty() {
        let hashes: Vec<String> = embeddings
            .iter()
            .map(|(n, h)| format!("{n}: {h}"))
            .collect();
        fields.push(("TI hashes", hashes.join(", ")));
    }
    fields.push(("Version", ENGINE_VERSION.to_string()));
    let parameters = crate::png_out::a1111_parameters(
        &prompt_with_lora_tags(&params.prompt, &params.loras),
        &params.negative,
        &fields,
    );
    let lora_spec: Vec<serde_json::Value> = loras
        .iter()
        .map(|(l, hash)| {
            serde_json::json!({
                "name": l.name, "weight": l.unet_weight, "te_weight": l.te_weight, "hash": hash,
            })
        })
        .collect();
    let embedding_spec: Vec<serde_json::Value> = embeddings
        .iter()
        .map(|(name, hash)| serde_json::json!({ "name": name, "hash": hash }))
        .collect();
    let spec = serde_json::json!({
        "embeddings": embedding_spec,
        "loras": lora_spec,
        "params": params,
        "seed": image.seed,
        "batch_index": image.batch_index,
        "model": p.info,
        "prediction": p.prediction,
        "engine": ENGINE_VERSION,
    });
    (parameters, spec.to_string())
}
