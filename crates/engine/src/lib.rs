//! The imagelab engine: a synchronous Stable Diffusion implementation on tch (libtorch).
//!
//! It never touches tokio, actix or the queue: the CLI's `generate` and the daemon's worker
//! processes call it directly.

pub mod error;
pub mod layers;
pub mod tokenizer;
pub mod weights;

pub use error::{EngineError, Result};
