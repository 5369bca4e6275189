//! Text-to-image and image-to-image: load a model's parts onto a device, encode prompts,
//! make ComfyUI-compatible noise, sample, decode, and describe the result for the PNG.

mod cache;
pub mod conditioning;
pub mod denoiser;
mod loading;
mod modes;
pub mod noise;
mod observe;
mod parts;
mod pixart_loading;
mod placement;
pub mod t5_text;

use crate::checkpoint::{Family, Prediction};
use crate::error::{EngineError, Result};
use crate::sampling::{self, ModelSchedule, SeededNoise};
use crate::vae::AutoencoderKl;
use denoiser::{Denoiser, GuidanceInput};
use imagelab_core::{DType, DeviceSpec, GenerationParams};
use parts::{DenoiserNet, Encoders, PromptInput, TextConditioning};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

pub use cache::{CacheKey, CacheStats, PipelineCache};
pub use imagelab_core::memory::MemorySettings;
pub use loading::ModelInfo;
use modes::OnDemand;
pub use modes::Tuning;
pub use observe::{Step, StepEvent, StepObserver};
pub use placement::{bytes_on, ComponentMemory, Placement, VaeTiling};

/// What to load and where.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub checkpoint: PathBuf,
    pub vae: Option<PathBuf>,
    pub clip: Option<PathBuf>,
    /// The device of each component ([`Placement::single`] for one device).
    pub placement: Placement,
    pub dtype: DType,
    /// Attention, offload, CFG batching and VAE tiling (the defaults are the fastest).
    pub memory: MemorySettings,
    pub tuning: Tuning,
}

impl ModelChoice {
    /// A checkpoint with its own VAE and text encoders, everything on one device.
    pub fn new(checkpoint: impl Into<PathBuf>, device: DeviceSpec, dtype: DType) -> ModelChoice {
        ModelChoice {
            checkpoint: checkpoint.into(),
            vae: None,
            clip: None,
            placement: Placement::single(device),
            dtype,
            memory: MemorySettings::default(),
            tuning: Tuning::default(),
        }
    }
}

/// One generated image, 8-bit RGB.
#[derive(Debug, Clone)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    /// The seed of the batch and this image's index in it (ComfyUI draws a whole batch's
    /// noise from one seed).
    pub seed: i64,
    pub batch_index: u32,
}

/// A loaded model, ready to generate.
pub struct Pipeline {
    pub family: Family,
    pub prediction: Prediction,
    pub info: ModelInfo,
    /// The LoRAs merged into the weights now, and the originals to restore.
    loras: std::cell::RefCell<crate::lora::LoraPatcher>,
    /// The merged LoRAs' A1111 short hashes, in their order (computed once per set).
    lora_hashes: std::cell::RefCell<Vec<String>>,
    /// Where prompts' textual-inversion embeddings come from, and those read so far.
    embeddings: std::cell::RefCell<crate::embedding::EmbeddingLibrary>,
    /// The UNet or PixArt's transformer.
    net: DenoiserNet,
    vae: OnDemand<AutoencoderKl>,
    /// The CLIP encoders or T5, with their tokenizer.
    text: TextConditioning,
    /// Attention and offload are fixed at load; CFG batching and VAE tiling may change
    /// between jobs ([`Pipeline::apply_run_settings`]).
    settings: std::cell::Cell<MemorySettings>,
    tuning: Tuning,
    /// cuDNN's benchmark mode for this pipeline's runs; `None` off CUDA.
    cudnn_benchmark: Option<bool>,
    schedule: ModelSchedule,
    placement: Placement,
    /// The UNet's device: sampling (noise, latents, guidance) happens here.
    device: Device,
    text_device: Device,
    vae_device: Device,
    kind: Kind,
    vae_kind: Kind,
    /// Bytes per component, counted as the tensors were loaded (see [`Pipeline::memory_report`]).
    memory: Vec<ComponentMemory>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("family", &self.family)
            .field("info", &self.info)
            .finish()
    }
}

pub fn torch_device(spec: DeviceSpec) -> Device {
    match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Cuda(i) => Device::Cuda(i),
    }
}

pub fn torch_kind(dtype: DType) -> Kind {
    match dtype {
        DType::Fp32 => Kind::Float,
        DType::Fp16 => Kind::Half,
        DType::Bf16 => Kind::BFloat16,
    }
}

impl Pipeline {
    /// Loads the checkpoint (and the VAE / text encoder overrides) onto the chosen device.
    pub fn load(choice: &ModelChoice) -> Result<Pipeline> {
        let _load = tracing::info_span!("load", model = %choice.checkpoint.display()).entered();
        let pipeline = if crate::checkpoint::is_pixart(&choice.checkpoint)? {
            pixart_loading::load(choice)?
        } else {
            loading::load(choice)?
        };
        tracing::info!(family = ?pipeline.family, device = %choice.placement.unet, "loaded");
        Ok(pipeline)
    }

    /// The conditioning a prompt produces (weighted, chunked, per the family's encoders).
    pub fn encode_prompt(
        &self,
        prompt: &str,
        clip_skip: Option<u32>,
    ) -> Result<conditioning::Conditioning> {
        let _guard = tch::no_grad_guard();
        let mut library = self.embeddings.borrow_mut();
        self.text.visit(|encoders| {
            encoders.conditioning(
                prompt,
                PromptInput {
                    family: self.family,
                    clip_skip,
                    embeddings: &mut library.for_prompt(),
                    text_device: self.text_device,
                },
            )
        })
    }

    /// Sets the folder prompts' embeddings are read from (`models/embeddings/`); `None`
    /// leaves every word plain text and makes `embedding:name` an error.
    pub fn set_embeddings_folder(&self, folder: Option<PathBuf>) {
        self.embeddings.borrow_mut().set_folder(folder);
    }

    /// The embeddings `params`' prompt and negative prompt name, in order of first use.
    pub fn embeddings_in(
        &self,
        params: &GenerationParams,
    ) -> Result<Vec<std::rc::Rc<crate::embedding::Embedding>>> {
        // Textual inversion is CLIP's: T5 prompts name no embeddings.
        let Some(tokenizer) = self.text.clip_tokenizer() else {
            return Ok(Vec::new());
        };
        let mut library = self.embeddings.borrow_mut();
        let mut found = library.for_prompt();
        for text in [&params.prompt, &params.negative] {
            let (text, _) = imagelab_core::lora::split_prompt(text)?;
            tokenizer.tokenize_with(&text, crate::tokenizer::PAD_CLIP_L, &mut found)?;
        }
        Ok(found.used().to_vec())
    }

    /// Makes `loras` the LoRAs merged into the weights, replacing the set merged before
    /// (an empty list restores the weights as loaded). No checkpoint is read: only the
    /// LoRA files, and only when the set changes.
    pub fn set_loras(&self, loras: &[crate::lora::LoraApplication]) -> Result<()> {
        if self.loras.borrow().applied() == loras {
            return Ok(());
        }
        if self.family == Family::PixArtSigma {
            return Err(EngineError::Invalid {
                field: "loras",
                value: format!("{:?}", loras.iter().map(|l| &l.name).collect::<Vec<_>>()),
                expected: "none: LoRAs for PixArt-Σ are not supported yet".into(),
            });
        }
        let _span = tracing::info_span!("loras", count = loras.len()).entered();
        let files = loras
            .iter()
            .map(|lora| Ok((lora.clone(), crate::lora::LoraFile::open(&lora.path)?)))
            .collect::<Result<Vec<_>>>()?;
        self.loras.borrow_mut().apply(&files)?;
        *self.lora_hashes.borrow_mut() = loras
            .iter()
            .map(|l| crate::model_hash::lora_short_hash(&l.path).unwrap_or_default())
            .collect();
        tracing::info!(loras = ?loras.iter().map(|l| &l.name).collect::<Vec<_>>(), "merged");
        Ok(())
    }

    /// The LoRAs merged now.
    pub fn applied_loras(&self) -> Vec<crate::lora::LoraApplication> {
        self.loras.borrow().applied().to_vec()
    }

    /// The merged LoRAs with their A1111 short hashes ("Lora hashes").
    pub fn applied_loras_with_hashes(&self) -> Vec<(crate::lora::LoraApplication, String)> {
        let hashes = self.lora_hashes.borrow();
        let applied = self.applied_loras();
        let hash = |i: usize| hashes.get(i).cloned().unwrap_or_default();
        applied
            .into_iter()
            .enumerate()
            .map(|(i, l)| (l, hash(i)))
            .collect()
    }

    /// Fails unless the merged LoRAs are the ones `params` asks for (names and weights):
    /// a caller that forgot [`Pipeline::set_loras`] must not get an image without them.
    fn check_loras(&self, params: &GenerationParams) -> Result<()> {
        let wanted = params.requested_loras()?;
        let patcher = self.loras.borrow();
        let applied = patcher.applied();
        let same = wanted.len() == applied.len()
            && wanted.iter().zip(applied).all(|(w, a)| {
                w.name == a.name && w.weight == a.unet_weight && w.text_weight() == a.te_weight
            });
        if same {
            return Ok(());
        }
        Err(EngineError::Invalid {
            field: "loras",
            value: format!("{:?}", wanted.iter().map(|l| &l.name).collect::<Vec<_>>()),
            expected: "the LoRAs merged with Pipeline::set_loras before generating".into(),
        })
    }

    /// Fails unless the latent sides are multiples of the network's patch (PixArt's 2
    /// latents: images in steps of 16 pixels).
    fn check_size(&self, params: &GenerationParams) -> Result<()> {
        let step = 8 * self.net.latent_multiple();
        for (field, side) in [("width", params.width), ("height", params.height)] {
            if side % step != 0 {
                return Err(EngineError::Invalid {
                    field,
                    value: side.to_string(),
                    expected: format!("a multiple of {step} for a {} model", self.family.as_str()),
                });
            }
        }
        Ok(())
    }

    /// The memory modes in force: attention and offload as loaded, CFG batching and VAE
    /// tiling as the last [`Pipeline::apply_run_settings`] (or the load) set them.
    pub fn memory_settings(&self) -> MemorySettings {
        self.settings.get()
    }

    /// Takes the per-job parts of `memory` (CFG batching, VAE tiling); attention and
    /// offload stay as loaded (a different choice of those needs another load).
    pub fn apply_run_settings(&self, memory: MemorySettings) {
        let mut settings = self.settings.get();
        settings.cfg_batching = memory.cfg_batching;
        settings.vae_tiling = memory.vae_tiling;
        self.settings.set(settings);
    }

    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// How the UNet was loaded (attention, fused projections, layout, streaming): what
    /// the settings became, for tests and diagnostics; `None` for PixArt's transformer.
    pub fn unet_options(&self) -> Option<crate::unet::UNetOptions> {
        match &self.net {
            DenoiserNet::UNet(unet) => Some(unet.options()),
            DenoiserNet::PixArt(_) => None,
        }
    }

    /// Where each component lives.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The bytes each loaded component's weights occupy, and on which device (for the
    /// GUI's VRAM panel and the daemon's API).
    pub fn memory_report(&self) -> Vec<ComponentMemory> {
        self.memory.clone()
    }

    /// One side's guidance, encoded on the text device and moved to the UNet's device once
    /// (the conditioning seam of the split layout).
    fn guidance(
        &self,
        encoders: &Encoders<'_>,
        prompt: &str,
        params: &GenerationParams,
    ) -> Result<GuidanceInput> {
        // The encoder sees the prompt without its <lora:…> tags (A1111 removes them too).
        let (prompt, _) = imagelab_core::lora::split_prompt(prompt)?;
        if let Some(t5) = encoders.t5_guidance(&prompt, self.device)? {
            return Ok(t5);
        }
        let mut library = self.embeddings.borrow_mut();
        let cond = encoders.conditioning(
            &prompt,
            PromptInput {
                family: self.family,
                clip_skip: params.clip_skip,
                embeddings: &mut library.for_prompt(),
                text_device: self.text_device,
            },
        )?;
        let context = cond.context.f_to_device(self.device)?;
        let pooled = cond
            .pooled
            .map(|p| p.f_to_device(self.device))
            .transpose()?;
        let vector = match (&self.family, pooled) {
            (Family::Sdxl, Some(pooled)) => {
                let (h, w) = (params.height as i64, params.width as i64);
                Some(crate::unet::sdxl_vector(
                    &pooled.to_kind(Kind::Float),
                    (h, w),
                    (0, 0),
                    (h, w),
                ))
            }
            _ => None,
        };
        Ok(GuidanceInput {
            context,
            vector,
            mask: None,
        })
    }

    /// Both sides' guidance when T5's prompt cache holds them, without visiting the
    /// (possibly offloaded) encoder.
    fn cached_guidance(
        &self,
        params: &GenerationParams,
    ) -> Result<Option<(GuidanceInput, GuidanceInput)>> {
        let (prompt, _) = imagelab_core::lora::split_prompt(&params.prompt)?;
        let (negative, _) = imagelab_core::lora::split_prompt(&params.negative)?;
        self.text
            .cached_pair([&prompt, &negative], self.device)
            .transpose()
    }

    /// How often offloaded text encoders were built for a job (0 when resident): T5's
    /// prompt cache spares the build when both prompts are known.
    pub fn text_encoder_builds(&self) -> u64 {
        self.text.encoder_builds()
    }

    /// The starting latents: pure noise for text-to-image, the encoded init image plus
    /// noise at the first sigma for image-to-image.
    fn initial_latents(
        &self,
        params: &GenerationParams,
        sigmas: &[f64],
        init: Option<&Tensor>,
    ) -> Result<Tensor> {
        let shape = [
            params.batch as i64,
            4,
            params.height as i64 / 8,
            params.width as i64 / 8,
        ];
        // ComfyUI's noise: the CPU generator seeded with the seed, float32, in the latent's shape.
        let noise = noise::initial_noise(params.seed as u64, &shape).to_device(self.device);
        let sigma0 = sigmas.first().copied().unwrap_or(0.0);
        match init {
            None => Ok(noise * (1.0 + sigma0 * sigma0).sqrt()),
            Some(latent) => Ok(latent.expand(shape, false) + noise * sigma0),
        }
    }

    /// Encodes an init image `[1,3,H,W]` in [-1,1] to scaled latents on the UNet's device
    /// (the init-image seam: encoded where the VAE lives, moved once).
    fn encode_init(&self, image: &Tensor, tiling: Option<VaeTiling>) -> Result<Tensor> {
        let latent = tch::no_grad(|| {
            let image = image
                .f_to_device(self.vae_device)?
                .f_to_kind(self.vae_kind)?;
            self.vae.with(|vae| match tiling {
                Some(t) => vae.encode_tiled(&image, t.tile, t.overlap),
                None => vae.encode(&image),
            })
        })?;
        Ok(latent.f_to_kind(Kind::Float)?.f_to_device(self.device)? * self.family.latent_scale())
    }

    /// Samples, showing each step (with its denoised estimate) to `on_step`, which may stop
    /// the run with [`EngineError::Cancelled`] at a step boundary.
    fn sample_latents_with(
        &self,
        params: &GenerationParams,
        vae_tiling: Option<VaeTiling>,
        on_step: &mut StepObserver<'_>,
    ) -> Result<Tensor> {
        params.validate()?;
        if params.seed < 0 {
            return Err(EngineError::Invalid {
                field: "seed",
                value: params.seed.to_string(),
                expected: "a resolved seed ≥ 0 (the caller draws random seeds)".into(),
            });
        }
        self.check_loras(params)?;
        self.check_size(params)?;
        let _guard = tch::no_grad_guard();
        if let Some(benchmark) = self.cudnn_benchmark {
            // Process-wide: another cached pipeline may have set it otherwise.
            tch::Cuda::cudnn_set_benchmark(benchmark);
        }
        let init = match &params.init_image {
            Some(path) => Some(self.encode_init(
                &loading::read_init_image(path, params.width, params.height)?,
                vae_tiling,
            )?),
            None => None,
        };
        let denoise = if init.is_some() { params.strength } else { 1.0 };
        let sigmas = sampling::sigmas_for(
            params.sampler,
            params.scheduler,
            &self.schedule,
            params.steps as usize,
            denoise,
        );
        // Both prompts in one visit of the (possibly offloaded) text encoders.
        let encode = tracing::info_span!("encode").entered();
        let (cond, uncond) = match self.cached_guidance(params)? {
            Some(pair) => pair,
            None => self.text.visit(|encoders| {
                Ok((
                    self.guidance(&encoders, &params.prompt, params)?,
                    self.guidance(&encoders, &params.negative, params)?,
                ))
            })?,
        };
        drop(encode);
        let x = self.initial_latents(params, &sigmas, init.as_ref())?;
        let model = Denoiser {
            net: self.net.network(),
            schedule: &self.schedule,
            prediction: self.prediction,
            cond: &cond,
            uncond: &uncond,
            cfg: params.cfg,
            kind: self.kind,
            batching: self.memory_settings().cfg_batching,
        };
        let mut noise = SeededNoise::new(params.seed as u64);
        let total = sigmas.len().saturating_sub(1);
        // A span per step, so each step's time is in the log: step n is open from the end
        // of step n-1 (or the start) to its own boundary, its observer included.
        let mut step = (total > 0).then(|| tracing::info_span!("step", n = 1usize).entered());
        let latents = sampling::sample_until(
            params.sampler,
            &mut |x, sigma| model.denoise(x, sigma),
            x,
            &sigmas,
            &mut noise,
            &mut |done, _total, denoised| {
                let flow = on_step(&Step::sampling(self.family, done, total, denoised));
                step = None;
                if done < total && flow.is_continue() {
                    step = Some(tracing::info_span!("step", n = done + 1).entered());
                }
                flow
            },
        );
        drop(step);
        latents
    }

    /// Decodes latents to images in [-1, 1] (fp32, `[B, 3, H, W]`, on the VAE's device).
    /// The latents cross to the VAE's device once, here (the decode seam).
    /// Tiles as the pipeline's memory settings say.
    pub fn decode_to_tensor(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_to_tensor_with(latents, self.memory_settings().vae_tiling)
    }

    /// [`Pipeline::decode_to_tensor`], in tiles when `tiling` is given.
    pub fn decode_to_tensor_with(
        &self,
        latents: &Tensor,
        tiling: Option<VaeTiling>,
    ) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let latents = latents.f_to_device(self.vae_device)?;
        let scaled = (latents / self.family.latent_scale()).f_to_kind(self.vae_kind)?;
        let images = self.vae.with(|vae| match tiling {
            Some(t) => vae.decode_tiled(&scaled, t.tile, t.overlap),
            None => vae.decode(&scaled),
        })?;
        Ok(images.f_to_kind(Kind::Float)?)
    }

    /// Decodes final latents to 8-bit images.
    pub fn decode(&self, latents: &Tensor, seed: i64) -> Result<Vec<RgbImage>> {
        self.decode_with(latents, seed, self.memory_settings().vae_tiling)
    }

    fn decode_with(
        &self,
        latents: &Tensor,
        seed: i64,
        tiling: Option<VaeTiling>,
    ) -> Result<Vec<RgbImage>> {
        let _decode = tracing::info_span!("decode", tiled = tiling.is_some()).entered();
        let images = self.decode_to_tensor_with(latents, tiling)?;
        let rgb = crate::vae::tensor_to_rgb8(&images)?;
        Ok(rgb
            .into_iter()
            .enumerate()
            .map(|(i, (width, height, pixels))| RgbImage {
                width,
                height,
                pixels,
                seed,
                batch_index: i as u32,
            })
            .collect())
    }

    /// The PNG bytes for one image, with the A1111 `parameters` chunk and our JSON spec.
    pub fn encode_png(&self, params: &GenerationParams, image: &RgbImage) -> Result<Vec<u8>> {
        let (parameters, spec) = loading::describe(self, params, image);
        crate::png_out::encode_png(
            image.width,
            image.height,
            &image.pixels,
            &[
                (crate::png_out::PARAMETERS_CHUNK, parameters),
                (crate::png_out::SPEC_CHUNK, spec),
            ],
        )
    }
}
