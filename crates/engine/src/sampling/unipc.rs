//! UniPC (Zhao et al. 2023, arXiv 2302.04867), the B(h) = h ("bh1") variant with data
//! prediction and up to third order, run the way ComfyUI runs it: in variance-preserving
//! coordinates over the sigma list (the last σ = 0 replaced by 0.001), with a predictor and
//! a corrector that reuses the next step's model evaluation.

// Index loops mirror the published equations (row and step indices), so keep them.
#![allow(clippy::needless_range_loop)]

use super::samplers::{step_boundary, Denoise, StepControl};
use crate::error::{EngineError, Result};
use tch::Tensor;

/// VP-space coefficients of a VE σ: α = 1/√(1+σ²), std = σ/√(1+σ²), λ = log(α/std) = −ln σ.
fn alpha(sigma: f64) -> f64 {
    1.0 / (1.0 + sigma * sigma).sqrt()
}

fn std_dev(sigma: f64) -> f64 {
    sigma / (1.0 + sigma * sigma).sqrt()
}

fn lambda(sigma: f64) -> f64 {
    -sigma.ln()
}

/// Solves the small dense system `a · x = b` by Gaussian elimination with pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Result<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        if a[pivot][col].abs() < 1e-300 {
            return Err(EngineError::Invalid {
                field: "sigmas",
                value: "repeated values".into(),
                expected: "strictly decreasing sigmas for uni_pc".into(),
            });
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            for k in col..n {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let rest: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    Ok(x)
}

struct UniPc<'m, 'a> {
    model: &'m mut Denoise<'a>,
}

impl UniPc<'_, '_> {
    /// The data prediction x₀ for VP-space `x` at `sigma`.
    fn predict(&mut self, x_vp: &Tensor, sigma: f64) -> Result<Tensor> {
        (self.model)(&(x_vp / alpha(sigma)), sigma)
    }

    /// One multistep update of the given order from the history to `sigma_t`.
    fn update(
        &mut self,
        x: &Tensor,
        history: &[(f64, Tensor)],
        sigma_t: f64,
        order: usize,
        use_corrector: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (sigma_0, model_0) = &history[history.len() - 1];
        let h = lambda(sigma_t) - lambda(*sigma_0);
        let mut rks = Vec::with_capacity(order);
        let mut d1s = Vec::with_capacity(order);
        for i in 1..order {
            let (sigma_i, model_i) = &history[history.len() - 1 - i];
            let rk = (lambda(*sigma_i) - lambda(*sigma_0)) / h;
            rks.push(rk);
            d1s.push((model_i - model_0) / rk);
        }
        rks.push(1.0);

        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1.0;
        let b_h = hh;
        let mut r = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            r.push(
                rks.iter()
                    .map(|rk| rk.powi(i as i32 - 1))
                    .collect::<Vec<f64>>(),
            );
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        let weighted = |rhos: &[f64]| -> Option<Tensor> {
            rhos.iter()
                .zip(&d1s)
                .map(|(rho, d)| d * *rho)
                .reduce(|acc, t| acc + t)
        };

        let (alpha_t, std_t) = (alpha(sigma_t), std_dev(sigma_t));
        let x_t_ = x * (std_t / std_dev(*sigma_0)) - model_0 * (alpha_t * h_phi_1);
        let mut x_t = x_t_.shallow_clone();
        if !d1s.is_empty() {
            let rhos_p = if order == 2 {
                vec![0.5]
            } else {
                let sub: Vec<Vec<f64>> = r[..order - 1]
                    .iter()
                    .map(|row| row[..order - 1].to_vec())
                    .collect();
                solve(sub, b[..order - 1].to_vec())?
            };
            if let Some(res) = weighted(&rhos_p) {
                x_t = &x_t_ - res * (alpha_t * b_h);
            }
        }
        if !use_corrector {
            return Ok((x_t, None));
        }
        let rhos_c = if order == 1 { vec![0.5] } else { solve(r, b)? };
        let model_t = self.predict(&x_t, sigma_t)?;
        let d1_t = &model_t - model_0;
        let last = rhos_c[rhos_c.len() - 1];
        let correction = match weighted(&rhos_c[..rhos_c.len() - 1]) {
            Some(res) => res + d1_t * last,
            None => d1_t * last,
        };
        Ok((&x_t_ - correction * (alpha_t * b_h), Some(model_t)))
    }
}

/// Runs UniPC-bh1 (ComfyUI's `uni_pc`) along `sigmas` from the VE-space latent `x`.
pub(super) fn sample_unipc(
    model: &mut Denoise<'_>,
    x: Tensor,
    sigmas: &[f64],
    on_step: &mut StepControl<'_>,
) -> Result<Tensor> {
    if sigmas.len() < 2 {
        return Ok(x);
    }
    let mut ts = sigmas.to_vec();
    let last = ts.len() - 1;
    if ts[last] == 0.0 {
        ts[last] = 0.001;
    }
    let steps = ts.len() - 1;
    let order = 3.min(ts.len().saturating_sub(2));
    let mut solver = UniPc { model };
    let mut x = &x * alpha(ts[0]);
    let mut history: Vec<(f64, Tensor)> = Vec::with_capacity(order.max(1));
    for step_index in 0..steps {
        if step_index == 0 {
            let m = solver.predict(&x, ts[0])?;
            history.push((ts[0], m));
        } else if step_index < order {
            let (next, model_x) = solver.update(&x, &history, ts[step_index], step_index, true)?;
            x = next;
            let model_x = match model_x {
                Some(m) => m,
                None => solver.predict(&x, ts[step_index])?,
            };
            history.push((ts[step_index], model_x));
        } else {
            let extra = usize::from(step_index == steps - 1);
            for step in step_index..=step_index + extra {
                let step_order = order.min(steps + 1 - step);
                let use_corrector = step != steps;
                let (next, model_x) =
                    solver.update(&x, &history, ts[step], step_order, use_corrector)?;
                x = next;
                // The history keeps the last `order` points; the newest replaces the oldest.
                drop(history.remove(0));
                let newest = if step < steps {
                    match model_x {
                        Some(m) => m,
                        None => solver.predict(&x, ts[step])?,
                    }
                } else {
                    // ComfyUI leaves the old model value in place after the final step.
                    history
                        .last()
                        .map(|(_, m)| m.shallow_clone())
                        .unwrap_or_else(|| x.zeros_like())
                };
                history.push((ts[step], newest));
            }
        }
        if let Some((_, m)) = history.last() {
            step_boundary(on_step, step_index + 1, steps, m)?;
        }
    }
    Ok(x / alpha(ts[steps]))
}
