//! Stopping a walk at a step boundary: every sampler, on an analytic denoiser.

use super::*;
use crate::error::{EngineError, Result};
use imagelab_core::{SamplerName, SchedulerName};
use std::cell::Cell;
use std::ops::ControlFlow;
use tch::{Device, Kind, Tensor};

fn denoiser(x: &Tensor, sigma: f64) -> Tensor {
    x * (0.8 / (1.0 + 0.1 * sigma)) + x.tanh() * (0.3 / (1.0 + sigma))
}

/// A start point drawn outside any seeded sequence (under the lock, released at once, since
/// the walks' `SeededNoise` takes it).
fn unseeded_randn() -> Tensor {
    let _rng = global_generator_lock();
    Tensor::randn([1, 4, 4, 4], (Kind::Double, Device::Cpu))
}

/// Runs `sampler` asking to stop after step `k`; returns the result, the steps the
/// callback saw, and the model calls made before and after the stop was asked.
fn run_until(sampler: SamplerName, k: usize) -> (Result<Tensor>, Vec<usize>, usize, usize) {
    let model = ModelSchedule::stable_diffusion();
    let sigmas = schedule_sigmas(SchedulerName::Karras, &model, 6);
    let x = unseeded_randn() * 14.0;
    let calls = Cell::new(0usize);
    let mut calls_at_stop = usize::MAX;
    let mut seen = Vec::new();
    let mut noise = SeededNoise::new(5);
    let result = sample_until(
        sampler,
        &mut |x: &Tensor, s: f64| {
            calls.set(calls.get() + 1);
            Ok(denoiser(x, s))
        },
        x,
        &sigmas,
        &mut noise,
        &mut |done, _total, denoised| {
            assert_eq!(denoised.size(), [1, 4, 4, 4], "the denoised estimate");
            seen.push(done);
            if done == k {
                calls_at_stop = calls.get();
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    (result, seen, calls_at_stop, calls.get())
}

#[test]
fn a_cancel_after_step_k_stops_there_for_every_sampler() {
    for sampler in SamplerName::ALL {
        for k in [1, 3, 6] {
            let (result, seen, at_stop, total_calls) = run_until(*sampler, k);
            match result {
                Err(EngineError::Cancelled { done, total }) => {
                    assert_eq!((done, total), (k, 6), "{sampler}: where it stopped");
                }
                other => panic!("{sampler}, stop after {k}: expected Cancelled, got {other:?}"),
            }
            assert_eq!(seen, (1..=k).collect::<Vec<_>>(), "{sampler}: steps seen");
            assert_eq!(
                total_calls, at_stop,
                "{sampler}: the model ran again after the stop at step {k}"
            );
        }
    }
}

#[test]
fn a_walk_that_is_never_stopped_matches_the_plain_sampler() {
    let model = ModelSchedule::stable_diffusion();
    let sigmas = schedule_sigmas(SchedulerName::Karras, &model, 4);
    let x = unseeded_randn();
    for sampler in SamplerName::ALL {
        let plain = sample(
            *sampler,
            &mut |x: &Tensor, s: f64| Ok(denoiser(x, s)),
            x.copy(),
            &sigmas,
            &mut SeededNoise::new(1),
            &mut |_, _, _| {},
        )
        .unwrap();
        let controlled = sample_until(
            *sampler,
            &mut |x: &Tensor, s: f64| Ok(denoiser(x, s)),
            x.copy(),
            &sigmas,
            &mut SeededNoise::new(1),
            &mut |_, _, _| ControlFlow::Continue(()),
        )
        .unwrap();
        assert!(plain.equal(&controlled), "{sampler}");
    }
}
