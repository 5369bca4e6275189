//! The sigma lists ComfyUI's schedulers produce (each ends in 0), and its KSampler
//! conventions: samplers that drop the second-to-last sigma, and img2img's partial denoise.

use super::beta::beta_ppf;
use super::model_schedule::ModelSchedule;
use imagelab_core::{SamplerName, SchedulerName};

fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => (0..n)
            .map(|i| start + (end - start) * i as f64 / (n - 1) as f64)
            .collect(),
    }
}

/// Timesteps evenly spaced from t(σ_max) to t(σ_min), σ by interpolation; `sgm` takes
/// steps + 1 points and drops the last (SGM's uniform spacing).
fn normal(model: &ModelSchedule, steps: usize, sgm: bool) -> Vec<f64> {
    let start = model.sigma_to_t(model.sigma_max());
    let end = model.sigma_to_t(model.sigma_min());
    let timesteps = if sgm {
        let mut t = linspace(start, end, steps + 1);
        t.pop();
        t
    } else {
        linspace(start, end, steps)
    };
    let mut sigmas: Vec<f64> = timesteps.into_iter().map(|t| model.t_to_sigma(t)).collect();
    sigmas.push(0.0);
    sigmas
}

/// Every (table length / steps)-th table entry from the top.
fn simple(model: &ModelSchedule, steps: usize) -> Vec<f64> {
    let table = model.sigmas();
    let stride = table.len() as f64 / steps as f64;
    let mut sigmas: Vec<f64> = (0..steps)
        .map(|i| table[table.len() - 1 - (i as f64 * stride) as usize])
        .collect();
    sigmas.push(0.0);
    sigmas
}

/// DDIM's uniform timesteps: every (table / steps)-th entry counted from index 1.
fn ddim_uniform(model: &ModelSchedule, steps: usize) -> Vec<f64> {
    let table = model.sigmas();
    let stride = (table.len() / steps).max(1);
    let mut sigmas = vec![0.0];
    sigmas.extend((1..table.len()).step_by(stride).map(|i| table[i]));
    sigmas.reverse();
    sigmas
}

fn karras(model: &ModelSchedule, steps: usize, rho: f64) -> Vec<f64> {
    let (min_inv, max_inv) = (
        model.sigma_min().powf(1.0 / rho),
        model.sigma_max().powf(1.0 / rho),
    );
    let mut sigmas: Vec<f64> = linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect();
    sigmas.push(0.0);
    sigmas
}

fn exponential(model: &ModelSchedule, steps: usize) -> Vec<f64> {
    let mut sigmas: Vec<f64> = linspace(model.sigma_max().ln(), model.sigma_min().ln(), steps)
        .into_iter()
        .map(f64::exp)
        .collect();
    sigmas.push(0.0);
    sigmas
}

/// Table entries at Beta(0.6, 0.6) quantiles of the timestep range, repeats dropped.
fn beta(model: &ModelSchedule, steps: usize) -> Vec<f64> {
    let table = model.sigmas();
    let total = (table.len() - 1) as f64;
    let mut sigmas = Vec::with_capacity(steps + 1);
    let mut last = None;
    for i in 0..steps {
        let q = 1.0 - i as f64 / steps as f64;
        let t = (beta_ppf(q, 0.6, 0.6) * total).round_ties_even();
        if last != Some(t) {
            sigmas.push(table[t as usize]);
            last = Some(t);
        }
    }
    sigmas.push(0.0);
    sigmas
}

/// The `steps + 1` sigmas (fewer for `beta` when quantiles repeat) of a scheduler.
pub fn schedule_sigmas(scheduler: SchedulerName, model: &ModelSchedule, steps: usize) -> Vec<f64> {
    if steps == 0 {
        return Vec::new();
    }
    match scheduler {
        SchedulerName::Normal => normal(model, steps, false),
        SchedulerName::SgmUniform => normal(model, steps, true),
        SchedulerName::Simple => simple(model, steps),
        SchedulerName::DdimUniform => ddim_uniform(model, steps),
        SchedulerName::Karras => karras(model, steps, 7.0),
        SchedulerName::Exponential => exponential(model, steps),
        SchedulerName::Beta => beta(model, steps),
    }
}

/// The sigmas a ComfyUI KSampler walks: one more step then the penultimate sigma dropped
/// for the samplers that need it, and for `denoise < 1` (img2img) the last `steps + 1`
/// sigmas of a `steps / denoise` schedule.
pub fn sigmas_for(
    sampler: SamplerName,
    scheduler: SchedulerName,
    model: &ModelSchedule,
    steps: usize,
    denoise: f64,
) -> Vec<f64> {
    let full = |n: usize| {
        if sampler.discards_penultimate_sigma() {
            let mut s = schedule_sigmas(scheduler, model, n + 1);
            if s.len() >= 2 {
                s.remove(s.len() - 2);
            }
            s
        } else {
            schedule_sigmas(scheduler, model, n)
        }
    };
    if denoise > 0.9999 {
        return full(steps);
    }
    if denoise <= 0.0 {
        return Vec::new();
    }
    let all = full((steps as f64 / denoise) as usize);
    all[all.len().saturating_sub(steps + 1)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ComfyUI's 10-step schedules (reference.md, computed in float64).
    const ANCHORS: [(SchedulerName, [f64; 11]); 6] = [
        (
            SchedulerName::Normal,
            [
                14.6146, 7.8399, 4.6092, 2.9183, 1.9502, 1.3449, 0.9324, 0.6250, 0.3687, 0.0292,
                0.0,
            ],
        ),
        (
            SchedulerName::SgmUniform,
            [
                14.6146, 8.3072, 5.0924, 3.3251, 2.2797, 1.6156, 1.1629, 0.8319, 0.5712, 0.3437,
                0.0,
            ],
        ),
        (
            SchedulerName::Simple,
            [
                14.6146, 8.3028, 5.0878, 3.3211, 2.2765, 1.6129, 1.1606, 0.8299, 0.5693, 0.3417,
                0.0,
            ],
        ),
        (
            SchedulerName::Karras,
            [
                14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292,
                0.0,
            ],
        ),
        (
            SchedulerName::Exponential,
            [
                14.6146, 7.3249, 3.6712, 1.8400, 0.9222, 0.4622, 0.2317, 0.1161, 0.0582, 0.0292,
                0.0,
            ],
        ),
        (
            SchedulerName::DdimUniform,
            [
                8.3907, 5.1344, 3.3478, 2.2929, 1.6237, 1.1682, 0.8357, 0.5741, 0.3462, 0.0413, 0.0,
            ],
        ),
    ];

    #[test]
    fn ten_step_schedules_match_comfyui() {
        let model = ModelSchedule::stable_diffusion();
        for (scheduler, want) in ANCHORS {
            let got = schedule_sigmas(scheduler, &model, 10);
            assert_eq!(got.len(), 11, "{scheduler}");
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-4 * w.max(1.0), "{scheduler}: {got:?}");
            }
        }
    }

    #[test]
    fn beta_schedule_is_decreasing_and_ends_at_zero() {
        let model = ModelSchedule::stable_diffusion();
        let s = schedule_sigmas(SchedulerName::Beta, &model, 10);
        assert_eq!(s.len(), 11);
        assert_eq!(s[0], model.sigma_max());
        assert!(s.windows(2).all(|w| w[0] > w[1]), "{s:?}");
        assert_eq!(*s.last().unwrap_or(&1.0), 0.0);
    }

    #[test]
    fn penultimate_sigma_is_dropped_for_dpm_2() {
        let model = ModelSchedule::stable_diffusion();
        let plain = schedule_sigmas(SchedulerName::Karras, &model, 11);
        let dpm2 = sigmas_for(SamplerName::Dpm2, SchedulerName::Karras, &model, 10, 1.0);
        assert_eq!(dpm2.len(), 11);
        assert_eq!(&dpm2[..10], &plain[..10]);
        assert_eq!(dpm2[10], 0.0);
    }

    #[test]
    fn partial_denoise_keeps_the_tail_of_a_longer_schedule() {
        let model = ModelSchedule::stable_diffusion();
        let full = schedule_sigmas(SchedulerName::Normal, &model, 20);
        let half = sigmas_for(SamplerName::Euler, SchedulerName::Normal, &model, 10, 0.5);
        assert_eq!(half.len(), 11);
        assert_eq!(&half[..], &full[10..]);
        assert!(sigmas_for(SamplerName::Euler, SchedulerName::Normal, &model, 10, 0.0).is_empty());
    }
}
