//! Text-to-image and image-to-image: load a model's parts onto a device, encode prompts,
//! make ComfyUI-compatible noise, sample, decode, and describe the result for the PNG.

pub mod conditioning;
pub mod denoiser;
mod loading;
pub mod noise;

use crate::checkpoint::{Family, Prediction};
use crate::clip::ClipTextEncoder;
use crate::error::{EngineError, Result};
use crate::sampling::{self, ModelSchedule, SeededNoise};
use crate::tokenizer::ClipTokenizer;
use crate::unet::UNet;
use crate::vae::AutoencoderKl;
use conditioning::encode_prompt;
use denoiser::{Denoiser, GuidanceInput};
use imagelab_core::{DType, DeviceSpec, GenerationParams};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

pub use loading::ModelInfo;

/// What to load and where.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub checkpoint: PathBuf,
    pub vae: Option<PathBuf>,
    pub clip: Option<PathBuf>,
    pub device: DeviceSpec,
    pub dtype: DType,
}

/// Progress reported while generating.
#[derive(Debug, Clone, Copy)]
pub enum StepEvent {
    Sampling { done: usize, total: usize },
    Decoding,
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
    unet: UNet,
    vae: AutoencoderKl,
    encoders: Vec<ClipTextEncoder>,
    tokenizer: &'static ClipTokenizer,
    schedule: ModelSchedule,
    device: Device,
    kind: Kind,
    vae_kind: Kind,
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
        loading::load(choice)
    }

    /// The conditioning a prompt produces (weighted, chunked, per the family's encoders).
    pub fn encode_prompt(
        &self,
        prompt: &str,
        clip_skip: Option<u32>,
    ) -> Result<conditioning::Conditioning> {
        let _guard = tch::no_grad_guard();
        encode_prompt(
            self.family,
            &self.encoders,
            self.tokenizer,
            prompt,
            clip_skip,
            self.device,
        )
    }

    fn guidance(&self, prompt: &str, params: &GenerationParams) -> Result<GuidanceInput> {
        let cond = encode_prompt(
            self.family,
            &self.encoders,
            self.tokenizer,
            prompt,
            params.clip_skip,
            self.device,
        )?;
        let vector = match (&self.family, cond.pooled) {
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
            context: cond.context,
            vector,
        })
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

    /// Encodes an init image `[1,3,H,W]` in [-1,1] to scaled latents.
    fn encode_init(&self, image: &Tensor) -> Result<Tensor> {
        let latent = tch::no_grad(|| {
            self.vae
                .encode(&image.to_device(self.device).to_kind(self.vae_kind))
        })?;
        Ok(latent.to_kind(Kind::Float) * self.family.latent_scale())
    }

    /// Generates `params.batch` images; `params.seed` must already be resolved (≥ 0).
    pub fn generate(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(StepEvent),
    ) -> Result<Vec<RgbImage>> {
        let latents = self.sample_latents(params, on_step)?;
        on_step(StepEvent::Decoding);
        self.decode(&latents, params.seed)
    }

    /// Runs everything up to the final latents (in the UNet's latent space, fp32).
    pub fn sample_latents(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(StepEvent),
    ) -> Result<Tensor> {
        params.validate()?;
        if params.seed < 0 {
            return Err(EngineError::Invalid {
                field: "seed",
                value: params.seed.to_string(),
                expected: "a resolved seed ≥ 0 (the caller draws random seeds)".into(),
            });
        }
        let _guard = tch::no_grad_guard();
        let init = match &params.init_image {
            Some(path) => Some(self.encode_init(&loading::read_init_image(
                path,
                params.width,
                params.height,
            )?)?),
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
        let cond = self.guidance(&params.prompt, params)?;
        let uncond = self.guidance(&params.negative, params)?;
        let x = self.initial_latents(params, &sigmas, init.as_ref())?;
        let model = Denoiser {
            unet: &self.unet,
            schedule: &self.schedule,
            prediction: self.prediction,
            cond: &cond,
            uncond: &uncond,
            cfg: params.cfg,
            kind: self.kind,
        };
        let mut noise = SeededNoise::new(params.seed as u64);
        let total = sigmas.len().saturating_sub(1);
        sampling::sample(
            params.sampler,
            &mut |x, sigma| model.denoise(x, sigma),
            x,
            &sigmas,
            &mut noise,
            &mut |done, _total, _denoised| on_step(StepEvent::Sampling { done, total }),
        )
    }

    /// Decodes latents to images in [-1, 1] (fp32, `[B, 3, H, W]`).
    pub fn decode_to_tensor(&self, latents: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let scaled = (latents / self.family.latent_scale()).to_kind(self.vae_kind);
        Ok(self.vae.decode(&scaled)?.to_kind(Kind::Float))
    }

    /// Decodes final latents to 8-bit images.
    pub fn decode(&self, latents: &Tensor, seed: i64) -> Result<Vec<RgbImage>> {
        let images = self.decode_to_tensor(latents)?;
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
