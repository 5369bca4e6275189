//! Memory modes for small cards: how attention is computed, which weights stay on the GPU
//! between uses, whether classifier-free guidance runs both halves in one batch, and VAE
//! tiling. The `memory:` section of config.yaml, `generate`'s flags and `--low-vram`.

use crate::safetensors_header::SafetensorsHeader;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A setting's text that does not parse, with what it should have been.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: expected {expected}")]
pub struct MemorySettingError {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// How attention is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AttentionMode {
    /// libtorch's `scaled_dot_product_attention`: flash or memory-efficient kernels on
    /// CUDA, which never hold the whole score matrix.
    #[default]
    Sdpa,
    /// Softmax(QKᵀ)V computed a block of queries at a time, so the score matrix held at
    /// once is `query_chunk × keys` per head. For GPUs and builds where SDPA falls back to
    /// its math kernel (which materialises every score). `None` picks the chunk from a
    /// 256 MiB budget for the scores.
    Sliced { query_chunk: Option<u32> },
}

impl AttentionMode {
    const EXPECTED: &'static str = "sdpa, sliced or sliced:N (N queries per slice, N ≥ 1)";
}

impl fmt::Display for AttentionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttentionMode::Sdpa => write!(f, "sdpa"),
            AttentionMode::Sliced { query_chunk: None } => write!(f, "sliced"),
            AttentionMode::Sliced {
                query_chunk: Some(n),
            } => write!(f, "sliced:{n}"),
        }
    }
}

impl FromStr for AttentionMode {
    type Err = MemorySettingError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || MemorySettingError {
            field: "attention",
            value: text.to_string(),
            expected: AttentionMode::EXPECTED,
        };
        match text.trim() {
            "sdpa" => Ok(AttentionMode::Sdpa),
            "sliced" => Ok(AttentionMode::Sliced { query_chunk: None }),
            other => {
                let n = other
                    .strip_prefix("sliced:")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(bad)?;
                Ok(AttentionMode::Sliced {
                    query_chunk: Some(n),
                })
            }
        }
    }
}

/// Which weights live on the GPU between uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Offload {
    /// Every component stays on its device: fastest.
    #[default]
    None,
    /// The text encoders and the VAE are copied to the GPU when a job uses them and freed
    /// after; the UNet stays. Costs one copy of about 1.8 GB per SDXL job.
    Model,
    /// As `Model`, and the UNet too is copied one block at a time for every step, so only
    /// the largest block is on the GPU at once. Very slow (the whole UNet crosses the bus
    /// every step), for cards too small for the UNet.
    Sequential,
}

impl fmt::Display for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Offload::None => "none",
            Offload::Model => "model",
            Offload::Sequential => "sequential",
        })
    }
}

impl FromStr for Offload {
    type Err = MemorySettingError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "none" => Ok(Offload::None),
            "model" => Ok(Offload::Model),
            "sequential" => Ok(Offload::Sequential),
            _ => Err(MemorySettingError {
                field: "offload",
                value: text.to_string(),
                expected: "none, model or sequential",
            }),
        }
    }
}

/// Whether guidance's conditional and unconditional halves run as one batch of 2B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CfgBatching {
    /// One UNet call on both halves: fastest.
    #[default]
    Batched,
    /// Two calls of batch B: half the activation memory, a little slower.
    Sequential,
}

impl fmt::Display for CfgBatching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CfgBatching::Batched => "batched",
            CfgBatching::Sequential => "sequential",
        })
    }
}

impl FromStr for CfgBatching {
    type Err = MemorySettingError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "batched" => Ok(CfgBatching::Batched),
            "sequential" => Ok(CfgBatching::Sequential),
            _ => Err(MemorySettingError {
                field: "cfg_batching",
                value: text.to_string(),
                expected: "batched or sequential",
            }),
        }
    }
}

/// VAE tiling, in latent cells (× 8 for pixels): SD's defaults of 64 and 16 are 512-pixel
/// tiles overlapping by 128 pixels. Written as `on` or `TILE,OVERLAP` in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VaeTiling {
    pub tile: i64,
    pub overlap: i64,
}

impl Default for VaeTiling {
    fn default() -> VaeTiling {
        VaeTiling {
            tile: 64,
            overlap: 16,
        }
    }
}

impl VaeTiling {
    /// `off` (or empty) → `None`; `on` → the defaults; `TILE,OVERLAP` in pixels.
    pub fn parse_setting(text: &str) -> Result<Option<VaeTiling>, MemorySettingError> {
        match text.trim() {
            "off" | "" => Ok(None),
            other => other.parse().map(Some),
        }
    }
}

impl fmt::Display for VaeTiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.tile * 8, self.overlap * 8)
    }
}

impl FromStr for VaeTiling {
    type Err = MemorySettingError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || MemorySettingError {
            field: "vae_tiling",
            value: text.to_string(),
            expected:
                "on, off or TILE,OVERLAP in pixels (multiples of 8, overlap smaller than tile)",
        };
        if text.trim() == "on" {
            return Ok(VaeTiling::default());
        }
        let (tile, overlap) = text.split_once(',').ok_or_else(bad)?;
        let tile: i64 = tile.trim().parse().map_err(|_| bad())?;
        let overlap: i64 = overlap.trim().parse().map_err(|_| bad())?;
        if tile < 8 || tile % 8 != 0 || overlap < 0 || overlap % 8 != 0 || overlap >= tile {
            return Err(bad());
        }
        Ok(VaeTiling {
            tile: tile / 8,
            overlap: overlap / 8,
        })
    }
}

macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = MemorySettingError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.to_string()
            }
        }
    )*};
}
string_serde!(AttentionMode, Offload, CfgBatching, VaeTiling);

/// The `memory:` section of config.yaml; every field defaults to the fastest choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    pub attention: AttentionMode,
    pub offload: Offload,
    pub cfg_batching: CfgBatching,
    /// `None` (written `off`) decodes (and encodes) the whole image at once.
    #[serde(with = "tiling_setting")]
    pub vae_tiling: Option<VaeTiling>,
}

/// `vae_tiling:` as the flag writes it: `off`, `on` or `TILE,OVERLAP` (null means off).
mod tiling_setting {
    use super::VaeTiling;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<VaeTiling>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            None => s.serialize_str("off"),
            Some(t) => s.serialize_str(&t.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VaeTiling>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => VaeTiling::parse_setting(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl MemorySettings {
    /// `--low-vram`: what fits SDXL at 1024² in 8 GiB of GPU memory. The UNet (5.1 GB in
    /// fp16) stays on the GPU; the text encoders and the VAE visit it only while used; the
    /// two guidance halves run one after the other; the VAE decodes in tiles.
    pub fn low_vram() -> MemorySettings {
        MemorySettings {
            attention: AttentionMode::Sdpa,
            offload: Offload::Model,
            cfg_batching: CfgBatching::Sequential,
            vae_tiling: Some(VaeTiling::default()),
        }
    }

    /// `self` with the `--low-vram` preset's parts laid over it: model offload (unless
    /// sequential is already asked), sequential CFG and tiling (the given tile size, or
    /// the default); attention stays as it is.
    pub fn with_low_vram(self) -> MemorySettings {
        let preset = MemorySettings::low_vram();
        MemorySettings {
            attention: self.attention,
            offload: match self.offload {
                Offload::Sequential => Offload::Sequential,
                _ => preset.offload,
            },
            cfg_batching: preset.cfg_batching,
            vae_tiling: self.vae_tiling.or(preset.vae_tiling),
        }
    }

    /// Whether anything differs from the fastest settings.
    pub fn is_default(&self) -> bool {
        *self == MemorySettings::default()
    }
}

impl fmt::Display for MemorySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attention={} offload={} cfg_batching={} vae_tiling={}",
            self.attention,
            self.offload,
            self.cfg_batching,
            self.vae_tiling
                .map(|t| t.to_string())
                .unwrap_or_else(|| "off".into())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_their_text() {
        for text in ["sdpa", "sliced", "sliced:1024"] {
            assert_eq!(text.parse::<AttentionMode>().unwrap().to_string(), text);
        }
        for text in ["none", "model", "sequential"] {
            assert_eq!(text.parse::<Offload>().unwrap().to_string(), text);
        }
        for text in ["batched", "sequential"] {
            assert_eq!(text.parse::<CfgBatching>().unwrap().to_string(), text);
        }
        assert_eq!(
            "512,128".parse::<VaeTiling>().unwrap(),
            VaeTiling::default()
        );
        assert_eq!(
            "256,64".parse::<VaeTiling>().unwrap(),
            VaeTiling {
                tile: 32,
                overlap: 8
            }
        );
    }

    #[test]
    fn bad_settings_name_the_field_and_value() {
        let e = "sliced:0".parse::<AttentionMode>().unwrap_err();
        assert_eq!((e.field, e.value.as_str()), ("attention", "sliced:0"));
        assert!("flash".parse::<AttentionMode>().is_err());
        let e = "cpu".parse::<Offload>().unwrap_err();
        assert!(e.to_string().contains("offload") && e.to_string().contains("\"cpu\""));
        for bad in ["512", "500,100", "512,512", "512,-8", "a,b"] {
            let e = bad.parse::<VaeTiling>().unwrap_err();
            assert_eq!(e.field, "vae_tiling", "{bad}");
        }
        assert_eq!(VaeTiling::parse_setting("off").unwrap(), None);
    }

    #[test]
    fn the_yaml_section_reads_and_rejects_unknown_values() {
        let s: MemorySettings = serde_yaml::from_str(
            "attention: sliced:512\noffload: model\ncfg_batching: sequential\nvae_tiling: on\n",
        )
        .unwrap();
        assert_eq!(
            s.attention,
            AttentionMode::Sliced {
                query_chunk: Some(512)
            }
        );
        assert_eq!(s.offload, Offload::Model);
        assert_eq!(s.cfg_batching, CfgBatching::Sequential);
        assert_eq!(s.vae_tiling, Some(VaeTiling::default()));
        let back: MemorySettings =
            serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let off: MemorySettings = serde_yaml::from_str("vae_tiling: off\n").unwrap();
        assert_eq!(off.vae_tiling, None);
        let default_text = serde_yaml::to_string(&MemorySettings::default()).unwrap();
        assert!(default_text.contains("vae_tiling: off"), "{default_text}");
        assert_eq!(
            serde_yaml::from_str::<MemorySettings>(&default_text).unwrap(),
            MemorySettings::default()
        );
        let err = serde_yaml::from_str::<MemorySettings>("vae_tiling: 500,100\n").unwrap_err();
        assert!(err.to_string().contains("vae_tiling"), "{err}");
        let err = serde_yaml::from_str::<MemorySettings>("offload: disk\n").unwrap_err();
        assert!(err.to_string().contains("disk"), "{err}");
        assert!(serde_yaml::from_str::<MemorySettings>("offlaod: model\n").is_err());
        assert!(MemorySettings::default().is_default());
        assert!(!MemorySettings::low_vram().is_default());
    }
}

/// What a model needs on the GPU, in bytes, for [`choose_for_free_memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    /// The UNet's weights in the loaded precision.
    pub unet: u64,
    /// The text encoders' and the VAE's weights together.
    pub others: u64,
    /// The largest of those that is used at once under offload (the text encoders
    /// together, or the VAE).
    pub largest_other: u64,
    /// The UNet's activations for the run with both guidance halves in one batch.
    pub activations: u64,
}

impl MemoryNeed {
    /// The need of a single-file checkpoint from its safetensors header (no tensor is
    /// read): float tensors counted at `element_bytes`, split by the original layout's
    /// prefixes, plus [`activation_estimate`] for the run.
    pub fn of_checkpoint(
        header: &crate::safetensors_header::SafetensorsHeader,
        element_bytes: u32,
        width: u32,
        height: u32,
        batch: u32,
    ) -> MemoryNeed {
        let (mut unet, mut vae, mut text) = (0u64, 0u64, 0u64);
        for (name, bytes) in float_tensor_bytes(header, element_bytes) {
            if name.starts_with("model.diffusion_model.") {
                unet += bytes;
            } else if name.starts_with("first_stage_model.") {
                vae += bytes;
            } else if name.starts_with("cond_stage_model.") || name.starts_with("conditioner.") {
                text += bytes;
            }
        }
        MemoryNeed {
            unet,
            others: vae + text,
            largest_other: vae.max(text),
            activations: activation_estimate(width, height, batch, element_bytes),
        }
    }

    /// A model kept as separate parts (PixArt-Σ's transformer, T5 and VAE files, or the
    /// component folders of a diffusers model), from their headers (shards together):
    /// every float tensor of `denoiser` is the denoiser (no prefix marks it), each of
    /// `others` is used on its own under offload. All are counted at `element_bytes` (T5
    /// runs in bf16 under fp16: the same width).
    pub fn of_parts(
        denoiser: &[&SafetensorsHeader],
        others: &[ModelPart<'_>],
        element_bytes: u32,
        (width, height, batch): (u32, u32, u32),
    ) -> MemoryNeed {
        let total = |headers: &[&SafetensorsHeader]| -> u64 {
            headers
                .iter()
                .flat_map(|h| float_tensor_bytes(h, element_bytes))
                .map(|(_, b)| b)
                .sum()
        };
        let peaks: Vec<u64> = others.iter().map(|p| p.peak(element_bytes)).collect();
        MemoryNeed {
            unet: total(denoiser),
            others: others.iter().map(|p| total(p.headers)).sum(),
            largest_other: peaks.iter().copied().max().unwrap_or(0),
            activations: activation_estimate(width, height, batch, element_bytes),
        }
    }
}

/// One part of a model kept as separate files: its headers (one per shard), and whether
/// offload streams it to the device a block at a time (T5's `encoder.block.N.`), so that
/// only its other tensors and its largest block are there at once.
#[derive(Debug, Clone, Copy)]
pub struct ModelPart<'a> {
    pub headers: &'a [&'a SafetensorsHeader],
    pub streamed: bool,
}

impl ModelPart<'_> {
    /// The bytes it holds on the device at once while used under offload.
    fn peak(&self, element_bytes: u32) -> u64 {
        let tensors = || {
            self.headers
                .iter()
                .flat_map(move |h| float_tensor_bytes(h, element_bytes))
        };
        if !self.streamed {
            return tensors().map(|(_, b)| b).sum();
        }
        let mut blocks = std::collections::BTreeMap::<&str, u64>::new();
        let mut rest = 0;
        for (name, bytes) in tensors() {
            match block_of(name) {
                Some(block) => *blocks.entry(block).or_default() += bytes,
                None => rest += bytes,
            }
        }
        rest + blocks.values().copied().max().unwrap_or(0)
    }
}

/// `encoder.block.7` for `encoder.block.7.layer.0.SelfAttention.q.weight` (any prefix).
fn block_of(name: &str) -> Option<&str> {
    let at = name.find("block.")? + "block.".len();
    let digits = name[at..].find(|c: char| !c.is_ascii_digit())?;
    (digits > 0).then(|| &name[..at + digits])
}

/// Each float tensor's name and its bytes at `element_bytes` per element.
fn float_tensor_bytes(
    header: &crate::safetensors_header::SafetensorsHeader,
    element_bytes: u32,
) -> impl Iterator<Item = (&str, u64)> {
    header.tensors.iter().filter_map(move |(name, entry)| {
        if !matches!(entry.dtype.as_str(), "F32" | "F16" | "BF16" | "F64") {
            return None;
        }
        let count: u64 = entry.shape.iter().map(|&d| d.max(0) as u64).product();
        Some((name.as_str(), count * u64::from(element_bytes)))
    })
}

/// UNet activation bytes for one image at `width`×`height` with guidance's two halves
/// batched, in a 2-byte precision. A heuristic from diffusers' SDXL reference (8.98 GiB
/// peak with 6.5 GiB of weights at 1024², batch 2): about 2.5 GiB per 1024² image pair,
/// scaled by pixels, batch and element size. Not measured by us yet.
pub fn activation_estimate(width: u32, height: u32, batch: u32, element_bytes: u32) -> u64 {
    const PER_MEGAPIXEL_PAIR: f64 = 2.5 * (1u64 << 30) as f64;
    let megapixels = f64::from(width) * f64::from(height) / (1024.0 * 1024.0);
    (PER_MEGAPIXEL_PAIR * megapixels * f64::from(batch.max(1)) * f64::from(element_bytes) / 2.0)
        as u64
}

/// Room kept free beyond the estimates: allocator fragmentation, cuDNN workspaces, the
/// decode's activations.
const HEADROOM: u64 = 1 << 30;

/// What ComfyUI does when it sees a small card, for runs where the user chose no memory
/// mode: `None` when everything fits with [`HEADROOM`] to spare; else the `--low-vram`
/// preset when the UNet fits beside the larger of the biggest offloaded part (while the
/// prompt is encoded) and half the activations (while sampling, batch by batch); else
/// that with sequential offload.
pub fn choose_for_free_memory(free: u64, need: MemoryNeed) -> Option<MemorySettings> {
    let everything = need.unet + need.others + need.activations + HEADROOM;
    if everything <= free {
        return None;
    }
    let low = MemorySettings::low_vram();
    let with_offload = need.unet + need.largest_other.max(need.activations / 2) + HEADROOM;
    if with_offload <= free {
        return Some(low);
    }
    Some(MemorySettings {
        offload: Offload::Sequential,
        ..low
    })
}

#[cfg(test)]
mod choice_tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// SDXL in fp16 at 1024²: UNet 5.13 GB, encoders 1.64 GB, VAE 0.17 GB.
    fn sdxl() -> MemoryNeed {
        MemoryNeed {
            unet: 5_135_000_000,
            others: 1_640_000_000 + 167_000_000,
            largest_other: 1_640_000_000,
            activations: activation_estimate(1024, 1024, 1, 2),
        }
    }

    #[test]
    fn the_activation_estimate_scales_with_pixels_batch_and_precision() {
        let one = activation_estimate(1024, 1024, 1, 2);
        assert_eq!(one, 5 * GIB / 2);
        assert_eq!(activation_estimate(512, 512, 1, 2), one / 4);
        assert_eq!(activation_estimate(1024, 1024, 2, 2), 2 * one);
        assert_eq!(activation_estimate(1024, 1024, 1, 4), 2 * one);
    }

    #[test]
    fn a_checkpoint_header_is_split_by_component() {
        let json = r#"{
            "model.diffusion_model.out.2.weight": {"dtype":"F32","shape":[4,320,3,3],"data_offsets":[0,46080]},
            "first_stage_model.decoder.conv_out.weight": {"dtype":"F32","shape":[3,128,3,3],"data_offsets":[46080,59904]},
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": {"dtype":"F32","shape":[768],"data_offsets":[59904,62976]},
            "cond_stage_model.x": {"dtype":"F32","shape":[10],"data_offsets":[62976,63016]},
            "cond_stage_model.position_ids": {"dtype":"I64","shape":[1,77],"data_offsets":[63016,63632]}
        }"#;
        let header = crate::safetensors_header::SafetensorsHeader {
            tensors: serde_json::from_str(json).unwrap(),
            ..Default::default()
        };
        let need = MemoryNeed::of_checkpoint(&header, 2, 512, 512, 1);
        assert_eq!(need.unet, 4 * 320 * 9 * 2);
        assert_eq!(need.others, (3 * 128 * 9 + 768 + 10) * 2);
        assert_eq!(need.largest_other, 3 * 128 * 9 * 2);
        assert_eq!(need.activations, activation_estimate(512, 512, 1, 2));
    }

    #[test]
    fn big_cards_keep_the_fastest_settings_and_small_ones_get_the_presets() {
        // An H200 or a 24 GiB card: nothing changes.
        assert_eq!(choose_for_free_memory(140 * GIB, sdxl()), None);
        assert_eq!(choose_for_free_memory(23 * GIB, sdxl()), None);
        // 12 GiB free: 4.78 + 1.68 + 2.5 + 1 = 9.96 GiB fits.
        assert_eq!(choose_for_free_memory(12 * GIB, sdxl()), None);
        // An 8 GiB card (about 7.5 free): the documented --low-vram setting.
        assert_eq!(
            choose_for_free_memory(15 * GIB / 2, sdxl()),
            Some(MemorySettings::low_vram())
        );
        // 6 GiB: the UNet cannot stay, so it is streamed too.
        let six = choose_for_free_memory(6 * GIB, sdxl()).unwrap();
        assert_eq!(six.offload, Offload::Sequential);
        assert_eq!(six.cfg_batching, CfgBatching::Sequential);
        assert!(six.vae_tiling.is_some());
    }

    fn header(tensors: &[(&str, &str, &[i64])]) -> crate::safetensors_header::SafetensorsHeader {
        crate::safetensors_header::SafetensorsHeader {
            tensors: tensors
                .iter()
                .map(|(name, dtype, shape)| {
                    let entry = crate::safetensors_header::TensorEntry {
                        dtype: dtype.to_string(),
                        shape: shape.to_vec(),
                        data_offsets: (0, 0),
                    };
                    (name.to_string(), entry)
                })
                .collect(),
            metadata: Default::default(),
            data_start: 0,
        }
    }

    #[test]
    fn pixart_counts_its_three_files_and_needs_offload_on_a_12_gib_card() {
        // PixArt-Σ at full size: 0.611 B transformer, 4.762 B T5 (one tensor standing in
        // for each), the VAE; an integer tensor is not counted.
        let dit = header(&[("adaln_single.linear.weight", "F16", &[610_856_096])]);
        let t5 = header(&[
            ("shared.weight", "F16", &[4_762_310_656]),
            ("position_ids", "I64", &[300]),
        ]);
        let vae = header(&[("decoder.conv_in.weight", "F16", &[83_653_863])]);
        let (t5, vae) = ([&t5], [&vae]);
        let whole = [
            ModelPart {
                headers: &t5,
                streamed: false,
            },
            ModelPart {
                headers: &vae,
                streamed: false,
            },
        ];
        let need = MemoryNeed::of_parts(&[&dit], &whole, 2, (1024, 1024, 1));
        assert_eq!(need.unet, 2 * 610_856_096);
        assert_eq!(need.others, 2 * (4_762_310_656 + 83_653_863));
        assert_eq!(need.largest_other, 2 * 4_762_310_656);
        // Everything resident does not fit in 12 GiB; T5 visiting alone does.
        let chosen = choose_for_free_memory(12 * GIB, need).expect("a memory mode");
        assert_eq!(chosen, MemorySettings::low_vram());
        assert_eq!(choose_for_free_memory(40 * GIB, need), None);
    }

    #[test]
    fn a_streamed_t5_holds_its_embedding_and_one_block_at_once() {
        // T5-XXL's encoder as its tensors add up: the embedding, 24 blocks of 192,946,176
        // parameters (four 4096² projections, three 4096×10240, two norms), the final norm
        // and the position bias: 4,762,310,656 in all, in two shards.
        let names: Vec<String> = (0..24)
            .map(|i| format!("encoder.block.{i}.layer.0.SelfAttention.q.weight"))
            .collect();
        let mut first: Vec<(&str, &str, &[i64])> = vec![("shared.weight", "BF16", &[32128, 4096])];
        let mut second: Vec<(&str, &str, &[i64])> = vec![
            ("encoder.final_layer_norm.weight", "BF16", &[4096]),
            (
                "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                "BF16",
                &[32, 64],
            ),
        ];
        for (i, name) in names.iter().enumerate() {
            let shard = if i < 12 { &mut first } else { &mut second };
            shard.push((name.as_str(), "BF16", &[192_946_176]));
        }
        let shards = [header(&first), header(&second)];
        let t5 = [&shards[0], &shards[1]];
        let vae = header(&[("decoder.conv_in.weight", "F16", &[83_653_863])]);
        let dit = header(&[("adaln_single.linear.weight", "F16", &[610_856_096])]);
        let parts = [
            ModelPart {
                headers: &t5,
                streamed: true,
            },
            ModelPart {
                headers: &[&vae],
                streamed: false,
            },
        ];
        let need = MemoryNeed::of_parts(&[&dit], &parts, 2, (1024, 1024, 1));
        assert_eq!(need.others, 2 * (4_762_310_656 + 83_653_863));
        // Block 0 carries the position bias: it is the largest block.
        let peak = 32128 * 4096 + 4096 + 192_946_176 + 32 * 64;
        assert_eq!(need.largest_other, 2 * peak);
        assert_eq!(
            block_of("encoder.block.12.layer.1.DenseReluDense.wo.weight"),
            Some("encoder.block.12")
        );
        assert_eq!(block_of("encoder.final_layer_norm.weight"), None);
        assert_eq!(block_of("x.block.y"), None);
    }
}
