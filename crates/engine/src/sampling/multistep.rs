//! The multistep samplers, which reuse earlier steps' estimates: LMS, DPM++ 2M, DPM++ 2M
//! SDE and DPM++ 3M SDE (k-diffusion's algorithms, step for step, like the single-step
//! ones in `samplers.rs`). Split out only to keep each file short.

use super::samplers::{to_d, Walk};
use crate::error::Result;
use tch::Tensor;

impl Walk<'_, '_> {
    pub(super) fn lms(&mut self, mut x: Tensor, sigmas: &[f64], order: usize) -> Result<Tensor> {
        let mut history: Vec<Tensor> = Vec::new();
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            history.push(to_d(&x, sigmas[i], &denoised));
            if history.len() > order {
                drop(history.remove(0));
            }
            let current = (i + 1).min(order);
            let mut update = x.zeros_like();
            for (j, d) in history.iter().rev().enumerate().take(current) {
                update += d * lms_coefficient(current, sigmas, i, j);
            }
            x = &x + update;
            self.done(i, &denoised)?;
        }
        Ok(x)
    }

    pub(super) fn dpmpp_2m(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        let mut previous: Option<Tensor> = None;
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            if sigmas[i + 1] == 0.0 {
                x = denoised.shallow_clone();
            } else {
                let (t, t_next) = (-sigmas[i].ln(), -sigmas[i + 1].ln());
                let h = t_next - t;
                let estimate = match (&previous, i) {
                    (Some(old), i) if i > 0 => {
                        let r = (t - (-sigmas[i - 1].ln())) / h;
                        &denoised * (1.0 + 1.0 / (2.0 * r)) - old * (1.0 / (2.0 * r))
                    }
                    _ => denoised.shallow_clone(),
                };
                x = &x * (sigmas[i + 1] / sigmas[i]) - estimate * (-h).exp_m1();
            }
            self.done(i, &denoised)?;
            previous = Some(denoised);
        }
        Ok(x)
    }

    pub(super) fn dpmpp_2m_sde(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        let mut previous: Option<(Tensor, f64)> = None;
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            let mut h = f64::NAN;
            if sigmas[i + 1] == 0.0 {
                x = denoised.shallow_clone();
            } else {
                let (t, s) = (-sigmas[i].ln(), -sigmas[i + 1].ln());
                h = s - t;
                let eta_h = h;
                x = &x * (sigmas[i + 1] / sigmas[i] * (-eta_h).exp())
                    + &denoised * -(-h - eta_h).exp_m1();
                if let Some((old, h_last)) = &previous {
                    let r = h_last / h;
                    // The midpoint solver variant (k-diffusion's default).
                    x = &x + (&denoised - old) * (0.5 * -(-h - eta_h).exp_m1() / r);
                }
                let scale = sigmas[i + 1] * (-(-2.0 * eta_h).exp_m1()).sqrt();
                x = &x + self.noise(&x, sigmas[i], sigmas[i + 1]) * scale;
            }
            self.done(i, &denoised)?;
            previous = Some((denoised, h));
        }
        Ok(x)
    }

    pub(super) fn dpmpp_3m_sde(&mut self, mut x: Tensor, sigmas: &[f64]) -> Result<Tensor> {
        let (mut d_1, mut d_2): (Option<Tensor>, Option<Tensor>) = (None, None);
        let (mut h_1, mut h_2): (Option<f64>, Option<f64>) = (None, None);
        let mut h = f64::NAN;
        for i in 0..self.steps {
            let denoised = self.denoise(&x, sigmas[i])?;
            if sigmas[i + 1] == 0.0 {
                x = denoised.shallow_clone();
            } else {
                let (t, s) = (-sigmas[i].ln(), -sigmas[i + 1].ln());
                h = s - t;
                let h_eta = 2.0 * h;
                x = &x * (-h_eta).exp() + &denoised * -(-h_eta).exp_m1();
                let phi_2 = (-h_eta).exp_m1() / h_eta + 1.0;
                match (&d_1, &d_2, h_1, h_2) {
                    (Some(dn1), Some(dn2), Some(hh1), Some(hh2)) => {
                        let (r0, r1) = (hh1 / h, hh2 / h);
                        let d1_0 = (&denoised - dn1) / r0;
                        let d1_1 = (dn1 - dn2) / r1;
                        let d1 = &d1_0 + (&d1_0 - &d1_1) * (r0 / (r0 + r1));
                        let d2 = (&d1_0 - &d1_1) / (r0 + r1);
                        let phi_3 = phi_2 / h_eta - 0.5;
                        x = &x + d1 * phi_2 - d2 * phi_3;
                    }
                    (Some(dn1), _, Some(hh1), _) => {
                        let r = hh1 / h;
                        x = &x + (&denoised - dn1) / r * phi_2;
                    }
                    _ => {}
                }
                let scale = sigmas[i + 1] * (-(-2.0 * h).exp_m1()).sqrt();
                x = &x + self.noise(&x, sigmas[i], sigmas[i + 1]) * scale;
            }
            self.done(i, &denoised)?;
            d_2 = d_1.take();
            d_1 = Some(denoised);
            h_2 = h_1;
            h_1 = Some(h);
        }
        Ok(x)
    }
}

/// ∫ from σ_i to σ_{i+1} of the Lagrange basis polynomial for point `i − j` over the
/// points σ_i … σ_{i−order+1}, integrated exactly (the polynomial has degree order − 1).
fn lms_coefficient(order: usize, sigmas: &[f64], i: usize, j: usize) -> f64 {
    // Build the polynomial's coefficients (ascending powers) as a product of linear factors.
    let mut poly = vec![1.0];
    for k in 0..order {
        if k == j {
            continue;
        }
        let denom = sigmas[i - j] - sigmas[i - k];
        let root = sigmas[i - k];
        let mut next = vec![0.0; poly.len() + 1];
        for (p, c) in poly.iter().enumerate() {
            next[p + 1] += c / denom;
            next[p] -= c * root / denom;
        }
        poly = next;
    }
    let antiderivative = |t: f64| {
        poly.iter()
            .enumerate()
            .map(|(p, c)| c * t.powi(p as i32 + 1) / (p + 1) as f64)
            .sum::<f64>()
    };
    antiderivative(sigmas[i + 1]) - antiderivative(sigmas[i])
}
