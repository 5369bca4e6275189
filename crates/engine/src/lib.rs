//! The imagelab engine: a synchronous Stable Diffusion implementation on tch (libtorch).
//!
//! It never touches tokio, actix or the queue: the CLI's `generate` and the daemon's worker
//! processes call it directly.

pub mod checkpoint;
pub mod clip;
pub mod cuda_capability;
pub mod device_memory;
pub mod diffusers_folder;
pub mod embedding;
pub mod error;
pub mod layers;
pub mod lora;
pub mod model_hash;
pub mod pipeline;
pub mod pixart;
pub mod png_out;
pub mod preview;
pub mod sampling;
pub mod t5;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod weights;

pub use device_memory::{allocator_stats, empty_cache, free_and_total, reset_peak, AllocatorStats};
pub use error::{EngineError, Result};
