//! Where stochastic samplers get their per-step noise. `SeededNoise` draws from the libtorch
//! CPU generator seeded from the job seed (so runs reproduce on any device); tests replay a
//! recorded list so results can be compared with k-diffusion draw for draw.

use tch::Tensor;

/// Supplies the noise a stochastic step adds between `sigma` and `sigma_next`.
pub trait NoiseSource {
    fn noise(&mut self, like: &Tensor, sigma: f64, sigma_next: f64) -> Tensor;
}

/// Per-step noise as ComfyUI draws it for ancestral samplers (and LCM): one generator on
/// the latent's device, seeded with the job seed (plus one on the CPU, as ComfyUI's
/// `default_noise_sampler` does so the steps do not replay the initial noise), drawing
/// `randn` in the latent's shape and dtype, step after step. libtorch's default generator is the one PyTorch uses, so
/// reseeding it at the first draw and drawing in order gives the same numbers as ComfyUI's
/// `torch.Generator(device).manual_seed(seed)`, as long as nothing else draws in between
/// (inference draws nothing; a worker process runs one job at a time). From its first draw
/// until it is dropped it holds [`global_generator_lock`], so a pipeline or test on another
/// thread cannot seed or draw in the middle of its sequence.
///
/// k-diffusion's SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde) use a Brownian-tree
/// noise sampler in ComfyUI; ours draws independent Gaussians per step instead (the same
/// distribution per step, not the same draws), so those samplers reproduce per seed but
/// differ from ComfyUI's images.
#[derive(Debug)]
pub struct SeededNoise {
    seed: u64,
    /// Taken at the first draw: the generator is ours until the walk ends.
    held: Option<std::sync::MutexGuard<'static, ()>>,
}

impl SeededNoise {
    pub fn new(seed: u64) -> SeededNoise {
        SeededNoise { seed, held: None }
    }
}

impl NoiseSource for SeededNoise {
    fn noise(&mut self, like: &Tensor, _sigma: f64, _sigma_next: f64) -> Tensor {
        if self.held.is_none() {
            self.held = Some(global_generator_lock());
            let seed = if like.device() == tch::Device::Cpu {
                self.seed.wrapping_add(1)
            } else {
                self.seed
            };
            // Seeds the CPU and every CUDA generator, like torch.manual_seed.
            tch::manual_seed(seed as i64);
        }
        Tensor::randn(like.size(), (like.kind(), like.device()))
    }
}

/// Held by whoever seeds libtorch's global generator and then draws from it (tch has no
/// per-call generator, and seeds that one generator for every caller): the initial noise,
/// [`SeededNoise`] for a whole walk, and tests that draw `randn` beside them. Not reentrant:
/// a thread that holds it must not make initial noise or start a `SeededNoise`.
pub fn global_generator_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Replays a fixed list of noise tensors in order (for parity tests).
#[derive(Debug)]
pub struct ReplayNoise {
    tensors: std::collections::VecDeque<Tensor>,
}

impl ReplayNoise {
    pub fn new(tensors: Vec<Tensor>) -> ReplayNoise {
        ReplayNoise {
            tensors: tensors.into(),
        }
    }

    /// How many recorded tensors were not used.
    pub fn remaining(&self) -> usize {
        self.tensors.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn noise(&mut self, like: &Tensor, _sigma: f64, _sigma_next: f64) -> Tensor {
        match self.tensors.pop_front() {
            Some(t) => t.to_device(like.device()).to_kind(like.kind()),
            // Running out means the sampler drew more often than the reference did; make it
            // loud in the comparison rather than panicking inside library code.
            None => like.full_like(f64::NAN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tch::{Device, Kind};

    /// Twenty draws of one seeded walk, with a pause between them that invites other
    /// threads in.
    fn walk(like: &Tensor) -> Vec<Tensor> {
        let mut noise = SeededNoise::new(7);
        (0..20)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                noise.noise(like, 1.0, 0.5)
            })
            .collect()
    }

    #[test]
    fn a_seeded_walk_is_not_disturbed_by_draws_on_other_threads() {
        let like = Tensor::zeros([64], (Kind::Float, Device::Cpu));
        let alone = walk(&like);
        let stop = AtomicBool::new(false);
        let together = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _rng = global_generator_lock();
                    let _ = Tensor::randn([64], (Kind::Float, Device::Cpu));
                }
            });
            let together = walk(&like);
            stop.store(true, Ordering::Relaxed);
            together
        });
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            assert!(a.equal(b), "draw {i} changed when another thread drew");
        }
    }
}
