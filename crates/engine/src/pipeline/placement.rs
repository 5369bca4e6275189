//! Where each part of a pipeline lives, and what it occupies there.
//!
//! The split layout puts the UNet on one device and the text encoders and VAE on another
//! (`cuda:0` + `cuda:1`). Tensors cross devices only at the seams: the conditioning once
//! per job (text device → UNet device), the init image's latents once (VAE → UNet), and
//! the final latents once for the decode (UNet → VAE).

use imagelab_core::DeviceSpec;
use serde::Serialize;

/// The device of each component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Placement {
    pub unet: DeviceSpec,
    pub text_encoders: DeviceSpec,
    pub vae: DeviceSpec,
}

impl Placement {
    /// Everything on one device.
    pub fn single(device: DeviceSpec) -> Placement {
        Placement {
            unet: device,
            text_encoders: device,
            vae: device,
        }
    }

    /// Whether every component shares one device.
    pub fn is_single(&self) -> bool {
        self.unet == self.text_encoders && self.unet == self.vae
    }
}

impl From<DeviceSpec> for Placement {
    fn from(device: DeviceSpec) -> Placement {
        Placement::single(device)
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.unet)
        } else {
            write!(
                f,
                "unet={} text={} vae={}",
                self.unet, self.text_encoders, self.vae
            )
        }
    }
}

/// The bytes one loaded component's weights occupy on its device: the sum over the
/// tensors it holds of `numel × element size` in the loaded precision. Activations and the
/// allocator's caching are not included (on CUDA, see the allocator's own figures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentMemory {
    /// `unet`, `vae`, `text_encoder_0`, `text_encoder_1`, …
    pub component: String,
    pub device: DeviceSpec,
    pub bytes: u64,
}

/// The total bytes a report puts on `device`.
pub fn bytes_on(report: &[ComponentMemory], device: DeviceSpec) -> u64 {
    report
        .iter()
        .filter(|c| c.device == device)
        .map(|c| c.bytes)
        .sum()
}

/// VAE tiling for small cards (the type lives in `imagelab_core::memory`, where the
/// settings file and the flags parse it).
pub use imagelab_core::memory::VaeTiling;
