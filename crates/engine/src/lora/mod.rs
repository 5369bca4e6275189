//! LoRAs (kohya / A1111, LoCon, diffusers / PEFT layouts) read from safetensors files and
//! merged into a loaded pipeline's weights in place, with the originals kept so that
//! removing or changing them restores the weights bit for bit (see [`patch`]).

pub mod keys;
mod patch;
pub mod targets;

use crate::error::{EngineError, Result};
use crate::weights::{WeightFile, Weights};
use keys::{Network, Part};
pub use patch::{LoraPatcher, PatchTarget};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One LoRA as a job asks for it: the file, and its strength on the UNet and on the text
/// encoders (A1111's `<lora:name:unet:te>`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraApplication {
    pub name: String,
    pub path: PathBuf,
    pub unet_weight: f64,
    pub te_weight: f64,
}

/// The low-rank pair of one module: `ΔW = alpha / rank · up @ down`.
#[derive(Debug)]
pub struct LoraModule {
    pub network: Network,
    pub module: String,
    /// The file's name for this module's `down` tensor, for error messages.
    pub key: String,
    down: Tensor,
    up: Tensor,
    alpha: Option<f64>,
}

impl LoraModule {
    pub fn rank(&self) -> i64 {
        self.down.size()[0]
    }

    /// `weight · alpha / rank · up @ down` in fp32 on `device`, shaped like the weight it
    /// patches (`[out, in]`, or `[out, in, kh, kw]` for a convolution).
    pub fn delta(&self, weight: f64, shape: &[i64], device: Device) -> Tensor {
        let scale = weight * self.alpha.unwrap_or(self.rank() as f64) / self.rank() as f64;
        let up = self.up.to_device(device).flatten(1, -1);
        let down = self.down.to_device(device).flatten(1, -1);
        (up.matmul(&down) * scale).reshape(shape)
    }

    /// Whether `up @ down` can have `shape` (the element count and the output rows agree).
    pub fn fits(&self, shape: &[i64]) -> bool {
        let (up, down) = (self.up.size(), self.down.size());
        let out = up[0];
        let inner: i64 = down[1..].iter().product();
        up.get(1) == Some(&self.rank())
            && shape.first() == Some(&out)
            && shape.iter().product::<i64>() == out * inner
    }

    /// `[out, in…]` of `up @ down`, for messages.
    pub fn shape(&self) -> Vec<i64> {
        let mut shape = vec![self.up.size()[0]];
        shape.extend_from_slice(&self.down.size()[1..]);
        shape
    }
}

/// A LoRA file, read into fp32 tensors on the CPU.
#[derive(Debug)]
pub struct LoraFile {
    pub path: PathBuf,
    pub modules: Vec<LoraModule>,
}

fn bad_file(path: &Path, reason: String) -> EngineError {
    EngineError::UnknownArchitecture {
        path: path.to_path_buf(),
        reason,
    }
}

#[derive(Default)]
struct PartsOf {
    key: Option<String>,
    down: Option<Tensor>,
    up: Option<Tensor>,
    alpha: Option<f64>,
}

impl LoraFile {
    /// Reads every LoRA tensor of `path` (pickles are refused, as for checkpoints). A name
    /// of no known layout (LoHa, LoKr, DoRA …), a module with only half its pair, or a
    /// file with no modules at all is an error naming the file and the tensor.
    pub fn open(path: &Path) -> Result<LoraFile> {
        let file = WeightFile::open(path)?;
        let weights = Weights::from_file(file).to(Device::Cpu, Kind::Float);
        let mut grouped: BTreeMap<(Network, String), PartsOf> = BTreeMap::new();
        for name in weights.names_with_prefix("") {
            let key = keys::parse(&name).ok_or_else(|| {
                bad_file(
                    path,
                    format!(
                        "tensor {name} is not part of a LoRA imagelab reads (kohya \
                         lora_down/lora_up/alpha or PEFT lora_A/lora_B; LoHa, LoKr and DoRA \
                         are not supported)"
                    ),
                )
            })?;
            let parts = grouped.entry((key.network, key.module)).or_default();
            let tensor = weights.get(&name)?;
            match key.part {
                Part::Down => {
                    parts.key = Some(name);
                    parts.down = Some(tensor);
                }
                Part::Up => parts.up = Some(tensor),
                Part::Alpha => parts.alpha = Some(tensor.flatten(0, -1).double_value(&[0])),
            }
        }
        let mut modules = Vec::with_capacity(grouped.len());
        for ((network, module), parts) in grouped {
            let (Some(key), Some(down), Some(up)) = (parts.key, parts.down, parts.up) else {
                return Err(bad_file(
                    path,
                    format!("module {module} lacks its down or up tensor"),
                ));
            };
            if down.dim() < 2 || up.dim() < 2 || down.size()[0] == 0 {
                return Err(bad_file(
                    path,
                    format!("{key} has shape {:?}, not [rank, in, …]", down.size()),
                ));
            }
            modules.push(LoraModule {
                network,
                module,
                key,
                down,
                up,
                alpha: parts.alpha,
            });
        }
        if modules.is_empty() {
            return Err(bad_file(path, "it holds no LoRA tensors".into()));
        }
        Ok(LoraFile {
            path: path.to_path_buf(),
            modules,
        })
    }
}

/// The files of `loras`, resolved inside `folder` (`models/loras/`): names only, no paths.
pub fn resolve(
    folder: &Path,
    loras: &[imagelab_core::lora::LoraRef],
) -> Result<Vec<LoraApplication>> {
    loras
        .iter()
        .map(|lora| {
            let path = imagelab_core::paths::resolve_model_file(folder, &lora.name, "lora", false)
                .map_err(|e| EngineError::Invalid {
                    field: "lora",
                    value: lora.name.clone(),
                    expected: e.to_string(),
                })?;
            Ok(LoraApplication {
                name: lora.name.clone(),
                path,
                unet_weight: lora.weight,
                te_weight: lora.text_weight(),
            })
        })
        .collect()
}
