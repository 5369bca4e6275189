//! The discrete noise schedule SD 1.x/2.x/SDXL were trained with, and the conversions
//! between a continuous σ and the UNet's timestep (log-σ interpolation, as ComfyUI's
//! `ModelSamplingDiscrete` and k-diffusion's `DiscreteSchedule` do).

/// σ for each of the training timesteps, with its logarithm.
#[derive(Debug, Clone)]
pub struct ModelSchedule {
    sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
}

impl ModelSchedule {
    /// σ for each step of a discrete schedule with these betas.
    fn from_betas(betas: impl Iterator<Item = f64>) -> ModelSchedule {
        let mut alpha_cumprod = 1.0;
        let sigmas: Vec<f64> = betas
            .map(|beta| {
                alpha_cumprod *= 1.0 - beta;
                ((1.0 - alpha_cumprod) / alpha_cumprod).sqrt()
            })
            .collect();
        let log_sigmas = sigmas.iter().map(|s| s.ln()).collect();
        ModelSchedule { sigmas, log_sigmas }
    }

    /// `steps` evenly spaced fractions from 0 to 1.
    fn fractions(steps: usize) -> impl Iterator<Item = f64> {
        (0..steps).map(move |i| {
            if steps > 1 {
                i as f64 / (steps - 1) as f64
            } else {
                0.0
            }
        })
    }

    /// The "scaled linear" schedule: `betas = linspace(√start, √end, steps)²` (what
    /// ComfyUI calls `linear`).
    pub fn scaled_linear(beta_start: f64, beta_end: f64, steps: usize) -> ModelSchedule {
        let (a, b) = (beta_start.sqrt(), beta_end.sqrt());
        ModelSchedule::from_betas(Self::fractions(steps).map(|f| (a + (b - a) * f).powi(2)))
    }

    /// Betas evenly spaced from `beta_start` to `beta_end` (diffusers' `linear`, what
    /// ComfyUI calls `sqrt_linear`).
    pub fn linear(beta_start: f64, beta_end: f64, steps: usize) -> ModelSchedule {
        let span = beta_end - beta_start;
        ModelSchedule::from_betas(Self::fractions(steps).map(|f| beta_start + span * f))
    }

    /// SD 1.x, 2.x and SDXL: 1000 steps from β 0.00085 to 0.012.
    pub fn stable_diffusion() -> ModelSchedule {
        ModelSchedule::scaled_linear(0.00085, 0.012, 1000)
    }

    /// PixArt-α and -Σ: 1000 steps of linear betas from 1e-4 to 0.02.
    pub fn pixart() -> ModelSchedule {
        ModelSchedule::linear(1e-4, 0.02, 1000)
    }

    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    pub fn sigma_min(&self) -> f64 {
        self.sigmas[0]
    }

    pub fn sigma_max(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// The (fractional) timestep whose interpolated σ is `sigma`.
    pub fn sigma_to_t(&self, sigma: f64) -> f64 {
        let log_sigma = sigma.ln();
        let n = self.log_sigmas.len();
        // The last table entry at or below log σ, clamped so a neighbour exists above it.
        let low = self
            .log_sigmas
            .iter()
            .rposition(|&l| log_sigma - l >= 0.0)
            .unwrap_or(0)
            .min(n - 2);
        let high = low + 1;
        let (l, h) = (self.log_sigmas[low], self.log_sigmas[high]);
        let w = ((l - log_sigma) / (l - h)).clamp(0.0, 1.0);
        (1.0 - w) * low as f64 + w * high as f64
    }

    /// The training timestep whose log σ is nearest `sigma`'s: the integer ComfyUI's
    /// `ModelSamplingDiscrete.timestep` feeds a model.
    pub fn nearest_t(&self, sigma: f64) -> f64 {
        let log_sigma = sigma.ln();
        let distance = |i: usize| (self.log_sigmas[i] - log_sigma).abs();
        let nearest = (0..self.log_sigmas.len())
            .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
            .unwrap_or(0);
        nearest as f64
    }

    /// σ at a fractional timestep, interpolating log σ.
    pub fn t_to_sigma(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, (self.sigmas.len() - 1) as f64);
        let (low, high) = (t.floor() as usize, t.ceil() as usize);
        let w = t - t.floor();
        ((1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_matches_the_reference_figures() {
        let s = ModelSchedule::stable_diffusion();
        assert!((s.sigma_min() - 0.029168).abs() < 1e-6, "{}", s.sigma_min());
        assert!(
            (s.sigma_max() - 14.614642).abs() < 1e-6,
            "{}",
            s.sigma_max()
        );
    }

    #[test]
    fn pixart_range_and_nearest_timesteps() {
        // diffusers' DDPMScheduler(beta_schedule="linear"): sqrt((1 - ᾱ) / ᾱ) at t = 0 and 999.
        let s = ModelSchedule::pixart();
        assert!(
            (s.sigma_min() - 0.0100005).abs() < 1e-6,
            "{}",
            s.sigma_min()
        );
        assert!(
            (s.sigma_max() - 157.407281).abs() < 1e-5,
            "{}",
            s.sigma_max()
        );
        assert_eq!(s.nearest_t(s.sigma_max() * 3.0), 999.0);
        assert_eq!(s.nearest_t(s.sigmas()[417]), 417.0);
        // Just past halfway in log σ from step 10 to 11 rounds up, just before it down.
        let mid = ((s.log_sigmas[10] + s.log_sigmas[11]) / 2.0).exp();
        assert_eq!(s.nearest_t(mid * 1.0001), 11.0);
        assert_eq!(s.nearest_t(mid / 1.0001), 10.0);
    }

    #[test]
    fn timestep_and_sigma_invert_each_other() {
        let s = ModelSchedule::stable_diffusion();
        for t in [0.0, 0.5, 17.25, 500.0, 998.9, 999.0] {
            let back = s.sigma_to_t(s.t_to_sigma(t));
            assert!((back - t).abs() < 1e-9, "{t} -> {back}");
        }
        assert_eq!(s.sigma_to_t(s.sigma_max() * 2.0), 999.0);
        assert_eq!(s.sigma_to_t(s.sigma_min() / 2.0), 0.0);
    }
}
