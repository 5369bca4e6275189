//! Where stochastic samplers get their per-step noise. `SeededNoise` draws from the libtorch
//! CPU generator seeded from the job seed (so runs reproduce on any device); tests replay a
//! recorded list so results can be compared with k-diffusion draw for draw.

use tch::{Kind, Tensor};

/// Supplies the noise a stochastic step adds between `sigma` and `sigma_next`.
pub trait NoiseSource {
    fn noise(&mut self, like: &Tensor, sigma: f64, sigma_next: f64) -> Tensor;
}

/// Gaussian noise from a private CPU generator stream, moved to the latent's device.
///
/// k-diffusion's SDE samplers default to a Brownian-tree noise sampler; ours draws
/// independent Gaussians per step instead (the same distribution per step, not the same
/// draws), so SDE results reproduce per seed but differ from ComfyUI's for those samplers.
#[derive(Debug)]
pub struct SeededNoise {
    seed: u64,
    draws: u64,
}

impl SeededNoise {
    pub fn new(seed: u64) -> SeededNoise {
        SeededNoise { seed, draws: 0 }
    }
}

impl NoiseSource for SeededNoise {
    fn noise(&mut self, like: &Tensor, _sigma: f64, _sigma_next: f64) -> Tensor {
        self.draws += 1;
        // A distinct, reproducible stream per draw; never the initial-noise stream itself.
        let stream = self
            .seed
            .wrapping_add(self.draws.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        tch::manual_seed(stream as i64);
        Tensor::randn(like.size(), (Kind::Float, tch::Device::Cpu))
            .to_device(like.device())
            .to_kind(like.kind())
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
