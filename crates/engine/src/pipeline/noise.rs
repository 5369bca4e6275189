//! The initial noise, made exactly as ComfyUI makes it: `torch.manual_seed(seed)` then one
//! `torch.randn(latent_shape)` on the CPU in float32. libtorch's CPU generator is the one
//! PyTorch uses, so the same seed gives bit-identical noise.

use tch::{Kind, Tensor};

/// Noise for a whole batch from one seed (ComfyUI batches share a seed).
pub fn initial_noise(seed: u64, shape: &[i64]) -> Tensor {
    // A worker runs one generation at a time, but a library user (or a test) may run
    // pipelines on several threads: the lock keeps another seed or draw from landing
    // between this seed and its draw.
    let _guard = crate::sampling::global_generator_lock();
    tch::manual_seed(seed as i64);
    Tensor::randn(shape, (Kind::Float, tch::Device::Cpu))
}
