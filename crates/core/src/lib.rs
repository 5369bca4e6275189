//! Light shared types for imagelab: generation parameters, sampler and scheduler names,
//! settings, and the validation that turns bad user input into errors naming the field.
//!
//! This crate depends on serde (and `half`, for reading one probe tensor) only, so the CLI
//! client, the daemon and the GUI compile fast and never link libtorch; model family
//! detection from a safetensors header lives here for that reason.

pub mod api;
pub mod config;
pub mod embedding;
pub mod events;
pub mod family;
pub mod lora;
pub mod memory;
pub mod names;
pub mod night;
pub mod params;
pub mod paths;
pub mod safetensors_header;
pub mod scheduler;
pub mod slurm;
pub mod worker;

pub use config::{Config, ConfigError, Folders, NightDefaults};
pub use names::{parse_sampler_label, SamplerName, SchedulerName, UnknownName};
pub use params::{DType, DeviceSpec, GenerationParams, ValidationError};
pub use paths::{resolve_in_folder, resolve_model_file, PathError};

/// The engine version recorded in every image's metadata.
pub const ENGINE_VERSION: &str = concat!("imagelab ", env!("CARGO_PKG_VERSION"));
