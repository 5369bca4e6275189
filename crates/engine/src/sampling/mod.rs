//! Noise schedules and samplers under ComfyUI's names. The schedules are plain f64 math over
//! the model's discrete sigma table; the samplers walk a sigma list calling a denoiser
//! `D(x, σ) → x₀` and follow k-diffusion's algorithms step for step.

mod beta;
mod model_schedule;
mod multistep;
mod noise;
mod samplers;
mod schedulers;
mod unipc;

pub use beta::beta_ppf;
pub use model_schedule::ModelSchedule;
pub use noise::{global_generator_lock, NoiseSource, ReplayNoise, SeededNoise};
pub use samplers::{sample, sample_until, Denoise, StepCallback, StepControl};
pub use schedulers::{schedule_sigmas, sigmas_for};

#[cfg(test)]
mod cancel_tests;
