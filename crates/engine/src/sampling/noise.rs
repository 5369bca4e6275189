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
/// (inference draws nothing; a worker process runs one job at a time).
///
/// k-diffusion's SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde) use a Brownian-tree
/// noise sampler in ComfyUI; ours draws independent Gaussians per step instead (the same
/// distribution per step, not the same draws), so those samplers reproduce per seed but
/// differ from ComfyUI's images.
#[derive(Debug)]
pub struct SeededNoise {
    seed: u64,
    started: bool,
}

impl SeededNoise {
    pub fn new(seed: u64) -> SeededNoise {
        SeededNoise {
            seed,
            started: false,
        }
    }
}

impl NoiseSource for SeededNoise {
    fn noise(&mut self, like: &Tensor, _sigma: f64, _sigma_next: f64) -> Tensor {
        if !self.started {
            let seed = if like.device() == tch::Device::Cpu {
                self.seed.wrapping_add(1)
            } else {
                self.seed
            };
            // Seeds the CPU and every CUDA generator, like torch.manual_seed.
            tch::manual_seed(seed as i64);
            self.started = true;
        }
        Tensor::randn(like.size(), (like.kind(), like.device()))
    }
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
