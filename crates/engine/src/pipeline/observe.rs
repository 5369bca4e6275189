//! Running a generation with progress callbacks: the plain ones (`generate`,
//! `sample_latents`, which only hear step numbers), and the observer of
//! [`Pipeline::generate_until`], which also sees each step's denoised latent (for a
//! preview) and may stop the run at a step boundary.

use super::{Pipeline, RgbImage, VaeTiling};
use crate::checkpoint::Family;
use crate::error::{EngineError, Result};
use imagelab_core::events::Preview;
use imagelab_core::GenerationParams;
use std::ops::ControlFlow;
use tch::Tensor;

/// Progress reported while generating.
#[derive(Debug, Clone, Copy)]
pub enum StepEvent {
    Sampling { done: usize, total: usize },
    Decoding,
}

/// One step boundary as an observer sees it.
#[derive(Debug)]
pub struct Step<'a> {
    pub event: StepEvent,
    /// The model's family (which latent-to-RGB factors a preview uses).
    pub family: Family,
    denoised: Option<&'a Tensor>,
}

impl<'a> Step<'a> {
    pub(super) fn sampling(family: Family, done: usize, total: usize, x0: &'a Tensor) -> Self {
        Step {
            event: StepEvent::Sampling { done, total },
            family,
            denoised: Some(x0),
        }
    }

    /// The sampler's denoised estimate x₀ after this step (`[B, 4, H/8, W/8]`, fp32, in
    /// the UNet's latent space); none at the decoding boundary. x₀ rather than the noisy
    /// x: it already looks like the final image, which makes the nicer preview.
    pub fn denoised(&self) -> Option<&Tensor> {
        self.denoised
    }

    /// A small PNG of the first image's x₀ (see [`crate::preview`]); none when decoding.
    pub fn preview(&self, max_side: u32) -> Result<Option<Preview>> {
        self.denoised
            .map(|x0| crate::preview::latent_preview(self.family, x0, max_side))
            .transpose()
    }
}

/// Sees every step boundary; `Break` stops the run there with [`EngineError::Cancelled`].
pub type StepObserver<'a> = dyn FnMut(&Step<'_>) -> ControlFlow<()> + 'a;

impl Pipeline {
    /// Generates `params.batch` images; `params.seed` must already be resolved (≥ 0). The
    /// VAE tiles as the pipeline's memory settings say.
    pub fn generate(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(StepEvent),
    ) -> Result<Vec<RgbImage>> {
        self.generate_with(params, self.memory_settings().vae_tiling, on_step)
    }

    /// [`Pipeline::generate`] with the VAE run in tiles, or not, whatever the settings
    /// (small cards; see `vae::tiled`).
    pub fn generate_with(
        &self,
        params: &GenerationParams,
        vae_tiling: Option<VaeTiling>,
        on_step: &mut dyn FnMut(StepEvent),
    ) -> Result<Vec<RgbImage>> {
        self.generate_until(params, vae_tiling, &mut |step| {
            on_step(step.event);
            ControlFlow::Continue(())
        })
    }

    /// Runs everything up to the final latents (in the UNet's latent space, fp32).
    pub fn sample_latents(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(StepEvent),
    ) -> Result<Tensor> {
        self.sample_latents_with(params, self.memory_settings().vae_tiling, &mut |step| {
            on_step(step.event);
            ControlFlow::Continue(())
        })
    }

    /// [`Pipeline::generate_with`] under an observer that sees each step's latent and may
    /// stop the run: after a sampling step (before the next model call) or before decoding.
    /// A stopped run returns [`EngineError::Cancelled`] and decodes nothing.
    pub fn generate_until(
        &self,
        params: &GenerationParams,
        vae_tiling: Option<VaeTiling>,
        on_step: &mut StepObserver<'_>,
    ) -> Result<Vec<RgbImage>> {
        let mut last = (0, 0);
        let latents = self.sample_latents_with(params, vae_tiling, &mut |step| {
            if let StepEvent::Sampling { done, total } = step.event {
                last = (done, total);
            }
            on_step(step)
        })?;
        let decoding = Step {
            event: StepEvent::Decoding,
            family: self.family,
            denoised: None,
        };
        if on_step(&decoding).is_break() {
            return Err(EngineError::Cancelled {
                done: last.0,
                total: last.1,
            });
        }
        self.decode_with(&latents, params.seed, vae_tiling)
    }
}
