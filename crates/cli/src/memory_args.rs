//! The memory-mode and speed flags shared by `generate` and `bench`: `--low-vram`,
//! `--attention`, `--offload`, `--cfg-batching`, `--vae-tiling`, and the tuning switches.

use anyhow::{Context, Result};
use clap::Args;
use imagelab_core::memory::{MemorySettings, VaeTiling};
use imagelab_engine::pipeline::Tuning;

#[derive(Args, Debug, Default, Clone)]
pub struct MemoryArgs {
    /// The 8 GiB setting: text encoders and VAE offloaded, guidance halves one after the
    /// other, tiled VAE (`--offload model --cfg-batching sequential --vae-tiling on`).
    /// Flags given as well override its parts.
    #[arg(long, env = "IMAGELAB_LOW_VRAM")]
    pub low_vram: bool,
    /// sdpa (default) or sliced[:N]: attention N queries at a time, for GPUs where
    /// SDPA's memory-efficient kernels are not available.
    #[arg(long, env = "IMAGELAB_ATTENTION")]
    pub attention: Option<String>,
    /// none (default), model (text encoders and VAE visit the GPU only while used) or
    /// sequential (the UNet too, block by block: for cards smaller than the UNet; slow).
    #[arg(long, env = "IMAGELAB_OFFLOAD")]
    pub offload: Option<String>,
    /// batched (default) or sequential: run guidance's two halves one after the other
    /// (half the activation memory).
    #[arg(long, env = "IMAGELAB_CFG_BATCHING")]
    pub cfg_batching: Option<String>,
    /// Run the VAE in tiles for small cards: `on` (512-pixel tiles, 128 overlap),
    /// TILE,OVERLAP in pixels (multiples of 8), or `off`.
    #[arg(long, env = "IMAGELAB_VAE_TILING")]
    pub vae_tiling: Option<String>,
}

impl MemoryArgs {
    /// `base` (the config's `memory:` section), replaced by `--low-vram`'s preset, then by
    /// each flag given.
    pub fn settings(&self, base: MemorySettings) -> Result<MemorySettings> {
        let mut memory = if self.low_vram {
            MemorySettings::low_vram()
        } else {
            base
        };
        let flag = |name: &str| format!("--{name}");
        if let Some(text) = &self.attention {
            memory.attention = text.parse().with_context(|| flag("attention"))?;
        }
        if let Some(text) = &self.offload {
            memory.offload = text.parse().with_context(|| flag("offload"))?;
        }
        if let Some(text) = &self.cfg_batching {
            memory.cfg_batching = text.parse().with_context(|| flag("cfg-batching"))?;
        }
        if let Some(text) = &self.vae_tiling {
            memory.vae_tiling =
                VaeTiling::parse_setting(text).with_context(|| flag("vae-tiling"))?;
        }
        Ok(memory)
    }

    /// The flags given, by name (for commands where they do not apply).
    pub fn given(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.low_vram {
            names.push("--low-vram");
        }
        for (name, value) in [
            ("--attention", &self.attention),
            ("--offload", &self.offload),
            ("--cfg-batching", &self.cfg_batching),
            ("--vae-tiling", &self.vae_tiling),
        ] {
            if value.is_some() {
                names.push(name);
            }
        }
        names
    }
}

/// Switches for measuring what each speed optimisation saves.
#[derive(Args, Debug, Default, Clone)]
pub struct TuningArgs {
    /// Separate q, k, v projections (the unfused baseline).
    #[arg(long)]
    pub no_fused_qkv: bool,
    /// NHWC convolutions in the UNet (CUDA only).
    #[arg(long)]
    pub channels_last: bool,
    /// cuDNN's default algorithm choice instead of benchmarking per shape.
    #[arg(long)]
    pub no_cudnn_benchmark: bool,
}

impl TuningArgs {
    pub fn tuning(&self) -> Tuning {
        Tuning {
            fused_qkv: !self.no_fused_qkv,
            channels_last: self.channels_last,
            cudnn_benchmark: !self.no_cudnn_benchmark,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_core::memory::{AttentionMode, CfgBatching, Offload};

    #[test]
    fn flags_override_the_preset_which_overrides_the_config() {
        let config = MemorySettings {
            attention: AttentionMode::Sliced {
                query_chunk: Some(64),
            },
            ..MemorySettings::default()
        };
        let none = MemoryArgs::default();
        assert_eq!(none.settings(config).unwrap(), config);
        let low = MemoryArgs {
            low_vram: true,
            ..MemoryArgs::default()
        };
        assert_eq!(low.settings(config).unwrap(), MemorySettings::low_vram());
        let mixed = MemoryArgs {
            low_vram: true,
            offload: Some("sequential".into()),
            vae_tiling: Some("off".into()),
            ..MemoryArgs::default()
        };
        let s = mixed.settings(config).unwrap();
        assert_eq!(s.offload, Offload::Sequential);
        assert_eq!(s.vae_tiling, None);
        assert_eq!(s.cfg_batching, CfgBatching::Sequential);
        assert_eq!(mixed.given(), ["--low-vram", "--offload", "--vae-tiling"]);
        let bad = MemoryArgs {
            attention: Some("flash".into()),
            ..MemoryArgs::default()
        };
        let err = format!("{:#}", bad.settings(config).unwrap_err());
        assert!(
            err.contains("--attention") && err.contains("\"flash\""),
            "{err}"
        );
    }
}
