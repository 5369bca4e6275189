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
    /// (`IMAGELAB_LOW_VRAM=1`, `true` or `yes` in the environment; `0`, `false` or `no`
    /// turns it off and also keeps the automatic choice from picking it.)
    #[arg(
        long,
        env = "IMAGELAB_LOW_VRAM",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub low_vram: Option<bool>,
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
    /// Whether no memory flag (or its environment variable) was given.
    pub fn is_unset(&self) -> bool {
        self.low_vram.is_none()
            && self.attention.is_none()
            && self.offload.is_none()
            && self.cfg_batching.is_none()
            && self.vae_tiling.is_none()
    }

    /// `base` (the config's `memory:` section), with `--low-vram`'s preset laid over it
    /// (the config's attention stays: a GPU may need `sliced`), then each flag given.
    pub fn settings(&self, base: MemorySettings) -> Result<MemorySettings> {
        let mut memory = if self.low_vram == Some(true) {
            base.with_low_vram()
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
}

/// The memory-mode flags typed on a command line (not taken from the environment), by
/// their flag names: for commands where they do not apply.
pub fn typed_on_command_line(matches: &clap::ArgMatches) -> Vec<&'static str> {
    [
        ("low_vram", "--low-vram"),
        ("attention", "--attention"),
        ("offload", "--offload"),
        ("cfg_batching", "--cfg-batching"),
        ("vae_tiling", "--vae-tiling"),
    ]
    .into_iter()
    .filter(|(id, _)| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
    .map(|(_, flag)| flag)
    .collect()
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
        assert!(none.is_unset());
        assert_eq!(none.settings(config).unwrap(), config);
        let low = MemoryArgs {
            low_vram: Some(true),
            ..MemoryArgs::default()
        };
        // The preset keeps the config's attention.
        assert_eq!(
            low.settings(config).unwrap(),
            MemorySettings {
                attention: config.attention,
                ..MemorySettings::low_vram()
            }
        );
        let mixed = MemoryArgs {
            low_vram: Some(true),
            offload: Some("sequential".into()),
            vae_tiling: Some("off".into()),
            ..MemoryArgs::default()
        };
        assert!(!mixed.is_unset());
        let s = mixed.settings(config).unwrap();
        assert_eq!(s.offload, Offload::Sequential);
        assert_eq!(s.vae_tiling, None);
        assert_eq!(s.cfg_batching, CfgBatching::Sequential);
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

#[cfg(test)]
mod command_line_tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        memory: MemoryArgs,
    }

    #[test]
    fn only_typed_flags_count_and_the_environment_reads_yes_and_no() {
        // One test so the environment changes cannot race another test in this binary.
        std::env::set_var("IMAGELAB_OFFLOAD", "model");
        std::env::set_var("IMAGELAB_LOW_VRAM", "1");
        let matches = Probe::command()
            .try_get_matches_from(["probe", "--attention", "sliced"])
            .unwrap();
        assert_eq!(typed_on_command_line(&matches), ["--attention"]);
        let probe = Probe::parse_from(["probe"]);
        assert_eq!(
            probe.memory.low_vram,
            Some(true),
            "IMAGELAB_LOW_VRAM=1 turns it on"
        );
        assert_eq!(probe.memory.offload.as_deref(), Some("model"));
        std::env::set_var("IMAGELAB_LOW_VRAM", "0");
        let off = Probe::parse_from(["probe"]).memory;
        assert_eq!(off.low_vram, Some(false));
        // An explicit "no" is a choice: the automatic choice stays out.
        std::env::remove_var("IMAGELAB_OFFLOAD");
        assert!(!Probe::parse_from(["probe"]).memory.is_unset());
        std::env::set_var("IMAGELAB_LOW_VRAM", "junk");
        assert!(Probe::try_parse_from(["probe"]).is_err(), "junk is refused");
        std::env::remove_var("IMAGELAB_LOW_VRAM");
        assert!(Probe::parse_from(["probe"]).memory.is_unset());
        assert_eq!(
            Probe::parse_from(["probe", "--low-vram"]).memory.low_vram,
            Some(true)
        );
        let matches = Probe::command()
            .try_get_matches_from(["probe", "--low-vram", "--vae-tiling", "off"])
            .unwrap();
        assert_eq!(
            typed_on_command_line(&matches),
            ["--low-vram", "--vae-tiling"]
        );
    }
}
