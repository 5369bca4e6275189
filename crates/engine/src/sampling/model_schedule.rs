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
    /// The "scaled linear" schedule: `betas = linspace(√start, √end, steps)²`.
    pub fn scaled_linear(beta_start: f64, beta_end: f64, steps: usize) -> ModelSchedule {
        let (a, b) = (beta_start.sqrt(), beta_end.sqrt());
        let mut alpha_cumprod = 1.0;
        let mut sigmas = Vec::with_capacity(steps);
        for i in 0..steps {
            let frac = if steps > 1 {
                i as f64 / (steps - 1) as f64
            } else {
                0.0
            };
            let beta = (a + (b - a) * frac).powi(2);
            alpha_cumprod *= 1.0 - beta;
            sigmas.push(((1.0 - alpha_cumprod) / alpha_cumprod).sqrt());
        }
        let log_sigmas = sigmas.iter().map(|s| s.ln()).collect();
        ModelSchedule { sigmas, log_sigmas }
    }

    /// SD 1.x, 2.x and SDXL: 1000 steps from β 0.00085 to 0.012.
    pub fn stable_diffusion() -> ModelSchedule {
        ModelSchedule::scaled_linear(0.00085, 0.012, 1000)
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
