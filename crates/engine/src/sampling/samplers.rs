//! The samplers, each a walk over `sigmas` that calls the denoiser `D(x, σ) → x₀`. They
//! follow k-diffusion's algorithms (and ComfyUI's for `ddim`, `lcm`, `uni_pc`) step for
//! step, drawing noise in the same order, so with the same noise the results agree.

use super::noise::NoiseSource;
use crate::error::{EngineError, Result};
use imagelab_core::SamplerName;
use std::ops::ControlFlow;
use tch::Tensor;

/// The model as samplers see it.
pub type Denoise<'a> = dyn FnMut(&Tensor, f64) -> Result<Tensor> + 'a;
/// Called after each step with (steps done, total steps, current denoised estimate).
pub type StepCallback<'a> = dyn FnMut(usize, usize, &Tensor) + 'a;
/// A [`StepCallback`] that may stop the walk: `Break` after step k ends sampling there,
/// before any further model call, with [`EngineError::Cancelled`].
pub type StepControl<'a> = dyn FnMut(usize, usize, &Tensor) -> ControlFlow<()> + 'a;

/// `(x − x₀) / σ`: the ODE's derivative.
pub(super) fn to_d(x: &Tensor, sigma: f64, denoised: &Tensor) -> Tensor {
    (x - denoised) / sigma
}

/// (σ_down, σ_up) of an ancestral step with η = 1.
fn ancestral_step(sigma: f64, sigma_next: f64) -> (f64, f64) {
    if sigma_next == 0.0 {
        return (0.0, 0.0);
    }
    let up = (sigma_next.powi(2) * (sigma.powi(2) - sigma_next.powi(2)) / sigma.powi(2))
        .sqrt()
        .min(sigma_next);
    ((sigma_next.powi(2) - up.powi(2)).sqrt(), up)
}

/// Runs `sampler` from `x` along `sigmas`.
pub fn sample(
    sampler: SamplerName,
    model: &mut Denoise<'_>,
    x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    on_step: &mut StepCallback<'_>,
) -> Result<Tensor> {
    sample_until(
        sampler,
        model,
        x,
        sigmas,
        noise,
        &mut |done, total, denoised| {
            on_step(done, total, denoised);
            ControlFlow::Continue(())
        },
    )
}

/// [`sample`], stopping with [`EngineError::Cancelled`] at the first step boundary where
/// `on_step` answers `Break`. The check sits between steps, never inside one, so a
/// multi-evaluation step (Heun, DPM++ 2S, …) always completes.
pub fn sample_until(
    sampler: SamplerName,
    model: &mut Denoise<'_>,
    x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    on_step: &mut StepControl<'_>,
) -> Result<Tensor> {
    let steps = sigmas.len().saturating_sub(1);
    let mut walk = Walk {
        model,
        noise,
        on_step,
        steps,
    };
    match sampler {
        // ComfyUI runs DDIM as Euler on the sigmas: for eps models they are the same ODE step.
        SamplerName::Euler | SamplerName::Ddim => walk.euler(x, sigmas),
        SamplerName::EulerAncestral => walk.euler_ancestral(x, sigmas),
        SamplerName::Heun => walk.heun(x, sigmas),
        SamplerName::Dpm2 => walk.dpm_2(x, sigmas),
        SamplerName::Dpm2Ancestral => walk.dpm_2_ancestral(x, sigmas),
        SamplerName::Lms => walk.lms(x, sigmas, 4),
        SamplerName::Dpmpp2sAncestral => walk.dpmpp_2s_ancestral(x, sigmas),
        SamplerName::DpmppSde => walk.dpmpp_sde(x, sigmas),
        SamplerName::Dpmpp2m => walk.dpmpp_2m(x, sigmas),
        SamplerName::Dpmpp2mSde => walk.dpmpp_2m_sde(x, sigmas),
        SamplerName::Dpmpp3mSde => walk.dpmpp_3m_sde(x, sigmas),
        SamplerName::Lcm => walk.lcm(x, sigmas),
        SamplerName::UniPc => super::unipc::sample_unipc(walk.model, x, sigmas, walk.on_step),
    }
}

pub(super) struct Walk<'m, 'a> {
    pub model: &'m mut Denoise<'a>,
    pub noise: &'m mut dyn NoiseSource,
    pub on_step: &'m mut StepControl<'a>,
    pub steps: usize,
}

impl Walk<'_, '_> {
    pub(super) fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        (self.model)(x, sigma)
    }

    pub(super) fn done(&mut self, i: usize, denoised: &Tensor) -> Result<()> {
        step_boundary(self.on_step, i + 1, self.steps, denoised)
    }

    pub(super) fn noise(&mut self, like: &Tensor, sigma: f64, sigma_next: f64) -> Tensor {
        self.noise.noise(like, sigma, sigma_next)
    }

    fn euler(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            x = &x + to_d(&x, sigmas[i], &denoised) * (sigmas[i + 1] - sigmas[i]);
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    fn euler_ancestral(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            let (down, up) = ancestral_step(sigmas[i], sigmas[i + 1]);
            x = &x + to_d(&x, sigmas[i], &denoised) * (down - sigmas[i]);
            if sigmas[i + 1] > 0.0 {
                x = &x + self.noise(&x, sigmas[i], sigmas[i + 1]) * up;
            }
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    fn heun(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            let d = to_d(&x, sigmas[i], &denoised);
            let dt = sigmas[i + 1] - sigmas[i];
            if sigmas[i + 1] == 0.0 {
                x = &x + d * dt;
            } else {
                let x_2 = &x + &d * dt;
                let denoised_2 = self.denoise(&x_2, sigmas[i + 1])?;
                let d_2 = to_d(&x_2, sigmas[i + 1], &denoised_2);
                x = &x + (d + d_2) / 2.0 * dt;
            }
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    fn dpm_2(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            let d = to_d(&x, sigmas[i], &denoised);
            if sigmas[i + 1] == 0.0 {
                x = &x + d * (sigmas[i + 1] - sigmas[i]);
            } else {
                // The midpoint in log σ.
                let mid = ((sigmas[i].ln() + sigmas[i + 1].ln()) / 2.0).exp();
                let x_2 = &x + d * (mid - sigmas[i]);
                let denoised_2 = self.denoise(&x_2, mid)?;
                x = &x + to_d(&x_2, mid, &denoised_2) * (sigmas[i + 1] - sigmas[i]);
            }
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    fn dpm_2_ancestral(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            let (down, up) = ancestral_step(sigmas[i], sigmas[i + 1]);
            let d = to_d(&x, sigmas[i], &denoised);
            if down == 0.0 {
                x = &x + d * (down - sigmas[i]);
            } else {
                let mid = ((sigmas[i].ln() + down.ln()) / 2.0).exp();
                let x_2 = &x + d * (mid - sigmas[i]);
                let denoised_2 = self.denoise(&x_2, mid)?;
                x = &x + to_d(&x_2, mid, &denoised_2) * (down - sigmas[i]);
                x = &x + self.noise(&x, sigmas[i], sigmas[i + 1]) * up;
            }
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    fn dpmpp_2s_ancestral(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            let (down, up) = ancestral_step(sigmas[i], sigmas[i + 1]);
            if down == 0.0 {
                x = &x + to_d(&x, sigmas[i], &denoised) * (down - sigmas[i]);
            } else {
                let (t, t_next) = (-sigmas[i].ln(), -down.ln());
                let h = t_next - t;
                let s = t + h / 2.0;
                let x_2 = &x * ((-s).exp() / (-t).exp()) - &denoised * (-h / 2.0).exp_m1();
                let denoised_2 = self.denoise(&x_2, (-s).exp())?;
                x = &x * ((-t_next).exp() / (-t).exp()) - denoised_2 * (-h).exp_m1();
            }
            if sigmas[i + 1] > 0.0 {
                x = &x + self.noise(&x, sigmas[i], sigmas[i + 1]) * up;
            }
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    fn dpmpp_sde(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        let sigma_of = |t: f64| (-t).exp();
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            if sigmas[i + 1] == 0.0 {
                x = &x + to_d(&x, sigmas[i], &denoised) * (sigmas[i + 1] - sigmas[i]);
            } else {
                let (t, t_next) = (-sigmas[i].ln(), -sigmas[i + 1].ln());
                let h = t_next - t;
                let s = t + h / 2.0;
                // Step 1: an ancestral half step to the midpoint.
                let (down, up) = ancestral_step(sigma_of(t), sigma_of(s));
                let s_ = -down.ln();
                let x_2 = &x * (sigma_of(s_) / sigma_of(t)) - &denoised * (t - s_).exp_m1();
                let x_2 = &x_2 + self.noise(&x_2, sigma_of(t), sigma_of(s)) * up;
                let denoised_2 = self.denoise(&x_2, sigma_of(s))?;
                // Step 2: the full step with the averaged estimate (r = 1/2 → weight 1).
                let (down, up) = ancestral_step(sigma_of(t), sigma_of(t_next));
                let t_next_ = -down.ln();
                x = &x * (sigma_of(t_next_) / sigma_of(t)) - denoised_2 * (t - t_next_).exp_m1();
                x = &x + self.noise(&x, sigma_of(t), sigma_of(t_next)) * up;
            }
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    /// LCM: jump to the denoised estimate, then re-noise to the next sigma.
    fn lcm(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            x = denoised.shallow_clone();
            if sigmas[i + 1] > 0.0 {
                x = &x + self.noise(&x, sigmas[i], sigmas[i + 1]) * sigmas[i + 1];
            }
            self.done(i, &denoised)?;
        }
        Ok(x)
    }
}

/// Reports step `done` of `total` and turns a `Break` into [`EngineError::Cancelled`].
pub(super) fn step_boundary(
    on_step: &mut StepControl<'_>,
    done: usize,
    total: usize,
    denoised: &Tensor,
) -> Result<()> {
    match on_step(done, total, denoised) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(EngineError::Cancelled { done, total }),
    }
}
