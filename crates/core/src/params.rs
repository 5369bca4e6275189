//! The parameters of one generation (what `imagelab generate` takes and what a queued job
//! carries), with validation that names the offending field and value.

use crate::names::{SamplerName, SchedulerName};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Largest width or height we accept; beyond this SD models produce garbage anyway and a
/// typo such as 10240 would silently allocate tens of GiB.
pub const MAX_SIDE: u32 = 4096;
/// Smallest width or height: one latent cell is 8 pixels and the UNet downsamples 3 times.
pub const MIN_SIDE: u32 = 64;
/// Most images per run: a larger batch is almost always a typo that would exhaust memory.
pub const MAX_BATCH: u32 = 64;
/// Most sampling steps per run.
pub const MAX_STEPS: u32 = 1000;

/// Input that cannot be generated from, naming the field, the value and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field} {value}: {expected}")]
pub struct ValidationError {
    pub field: &'static str,
    pub value: String,
    pub expected: String,
}

impl ValidationError {
    pub fn new(field: &'static str, value: impl fmt::Display, expected: impl Into<String>) -> Self {
        ValidationError {
            field,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Where a model runs: `cpu`, `cuda` (the first visible GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        let bad =
            || ValidationError::new("device", format!("{s:?}"), "expected cpu, cuda or cuda:N");
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Floating-point precision of the weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    Fp32,
    Fp16,
    Bf16,
}

impl DType {
    pub fn as_str(self) -> &'static str {
        match self {
            DType::Fp32 => "fp32",
            DType::Fp16 => "fp16",
            DType::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DType {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" | "f32" => Ok(DType::Fp32),
            "fp16" | "float16" | "f16" | "half" => Ok(DType::Fp16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            _ => Err(ValidationError::new(
                "dtype",
                format!("{s:?}"),
                "expected fp32, fp16 or bf16",
            )),
        }
    }
}

/// Everything that decides what one generation produces. Serialized as the job spec in
/// each PNG's JSON chunk and in `jobs.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationParams {
    pub prompt: String,
    pub negative: String,
    /// A file name in `models/checkpoints/`, or a path.
    pub model: String,
    /// A VAE in `models/vae/` that replaces the checkpoint's own.
    pub vae: Option<String>,
    /// Text encoder weights in `models/clip/` that replace the checkpoint's own.
    pub clip: Option<String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub cfg: f64,
    pub sampler: SamplerName,
    pub scheduler: SchedulerName,
    /// −1 draws a random seed; the seed actually used is recorded in the output.
    pub seed: i64,
    pub batch: u32,
    /// 1 = the text encoder's last layer, 2 = the penultimate, … ; `None` = the family's
    /// own default (penultimate for SD 2.x and SDXL, last for SD 1.x).
    pub clip_skip: Option<u32>,
    /// An image to start from (img2img).
    pub init_image: Option<String>,
    /// How much of the schedule img2img re-runs: 1.0 ignores the init image entirely.
    pub strength: f64,
    /// LoRAs besides the prompt's `<lora:…>` tags (see [`crate::lora::requested`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<crate::lora::LoraRef>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            prompt: String::new(),
            negative: String::new(),
            model: String::new(),
            vae: None,
            clip: None,
            width: 1024,
            height: 1024,
            steps: 20,
            cfg: 7.0,
            sampler: SamplerName::Euler,
            scheduler: SchedulerName::Normal,
            seed: -1,
            batch: 1,
            clip_skip: None,
            init_image: None,
            strength: 0.75,
            loras: Vec::new(),
        }
    }
}

impl GenerationParams {
    /// Checks every field a user can get wrong; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, side) in [("width", self.width), ("height", self.height)] {
            if side % 8 != 0 || !(MIN_SIDE..=MAX_SIDE).contains(&side) {
                return Err(ValidationError::new(
                    field,
                    side,
                    format!("expected a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}"),
                ));
            }
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(ValidationError::new(
                "steps",
                self.steps,
                format!("expected 1 to {MAX_STEPS}"),
            ));
        }
        if !self.cfg.is_finite() || !(0.0..=100.0).contains(&self.cfg) {
            return Err(ValidationError::new(
                "cfg",
                self.cfg,
                "expected a number from 0 to 100",
            ));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(ValidationError::new(
                "batch",
                self.batch,
                format!("expected 1 to {MAX_BATCH}"),
            ));
        }
        if self.seed < -1 {
            return Err(ValidationError::new(
                "seed",
                self.seed,
                "expected -1 (random) or a seed ≥ 0",
            ));
        }
        if let Some(skip) = self.clip_skip {
            if !(1..=12).contains(&skip) {
                return Err(ValidationError::new(
                    "clip_skip",
                    skip,
                    "expected 1 (last layer) to 12",
                ));
            }
        }
        if self.init_image.is_some() && !(self.strength > 0.0 && self.strength <= 1.0) {
            return Err(ValidationError::new(
                "strength",
                self.strength,
                "expected a number in (0, 1]",
            ));
        }
        if self.model.trim().is_empty() {
            return Err(ValidationError::new(
                "model",
                "\"\"",
                "expected a checkpoint name or path",
            ));
        }
        self.requested_loras()?;
        Ok(())
    }

    /// Every LoRA this generation uses: the prompt's `<lora:…>` tags, then `loras`.
    pub fn requested_loras(&self) -> Result<Vec<crate::lora::LoraRef>, ValidationError> {
        crate::lora::requested(&self.prompt, &self.loras)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> GenerationParams {
        GenerationParams {
            model: "sdxl.safetensors".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_match_the_design_card() {
        let p = GenerationParams::default();
        assert_eq!(
            (p.width, p.height, p.steps, p.cfg, p.seed),
            (1024, 1024, 20, 7.0, -1)
        );
        assert_eq!(
            (p.sampler, p.scheduler),
            (SamplerName::Euler, SchedulerName::Normal)
        );
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn bad_sizes_name_the_field_and_value() {
        let err = GenerationParams {
            width: 7,
            ..valid()
        }
        .validate()
        .unwrap_err();
        assert_eq!((err.field, err.value.as_str()), ("width", "7"));
        let err = GenerationParams {
            height: 1020,
            ..valid()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "height");
        assert!(err.to_string().contains("multiple of 8"), "{err}");
        let err = GenerationParams {
            width: 8192,
            ..valid()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "width");
    }

    #[test]
    fn other_fields_are_checked() {
        assert_eq!(
            GenerationParams {
                batch: 10_000,
                ..valid()
            }
            .validate()
            .unwrap_err()
            .field,
            "batch"
        );
        assert_eq!(
            GenerationParams {
                steps: 0,
                ..valid()
            }
            .validate()
            .unwrap_err()
            .field,
            "steps"
        );
        assert_eq!(
            GenerationParams {
                cfg: f64::NAN,
                ..valid()
            }
            .validate()
            .unwrap_err()
            .field,
            "cfg"
        );
        assert_eq!(
            GenerationParams {
                seed: -5,
                ..valid()
            }
            .validate()
            .unwrap_err()
            .field,
            "seed"
        );
        let img2img = GenerationParams {
            init_image: Some("a.png".into()),
            strength: 0.0,
            ..valid()
        };
        assert_eq!(img2img.validate().unwrap_err().field, "strength");
    }

    #[test]
    fn device_and_dtype_parse() {
        assert_eq!("cuda:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert!("gpu"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .to_string()
            .contains("\"gpu\""));
        assert_eq!("bf16".parse::<DType>(), Ok(DType::Bf16));
        assert!("int8".parse::<DType>().is_err());
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let err =
            serde_json::from_str::<GenerationParams>(r#"{"model":"a","widht":512}"#).unwrap_err();
        assert!(err.to_string().contains("widht"), "{err}");
    }
}
