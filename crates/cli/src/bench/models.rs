//! Random-weight models of the real SDXL, SD 1.5 and PixArt-Σ architectures (and tiny
//! variants for CI), written as the files users have — a single-file checkpoint, or for
//! PixArt-Σ ComfyUI's transformer + T5 (with a tokenizer) + VAE — that the ordinary
//! loaders classify and load. Random weights do the same arithmetic as trained ones, so
//! timings carry over.
//!
//! The SD name → shape tables (`*.shapes`) were produced once by `scripts/bench_shapes.py`
//! from diffusers' model classes on the meta device and the key converters the parity
//! tests check; PixArt-Σ's names follow diffusers' `PixArtTransformer2DModel` and
//! transformers' `T5EncoderModel` (their parameter counts, 0.611 B and 4.762 B at full
//! size, are checked in the tests). No Python runs here.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Which architecture and at what scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchModel {
    pub name: &'static str,
    /// The family's native image side (SDXL and PixArt-Σ 1024, SD 1.5 512; tiny ones 64).
    pub image_size: u32,
    pub arch: Architecture,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Architecture {
    /// An SD checkpoint, from its shape table.
    Checkpoint {
        table: &'static str,
    },
    PixArt(PixArtScale),
}

/// A PixArt-Σ transformer's and its T5 encoder's sizes; the VAE is the SDXL table's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixArtScale {
    pub hidden: i64,
    pub layers: i64,
    pub mlp: i64,
    pub t5: T5Scale,
    pub vae_table: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct T5Scale {
    pub vocab: i64,
    pub d_model: i64,
    pub heads: i64,
    pub d_kv: i64,
    pub d_ff: i64,
    pub layers: i64,
    /// Tokenizer pieces (the 100 sentinels come on top).
    pub pieces: usize,
}

pub const SDXL: BenchModel = BenchModel {
    name: "sdxl",
    image_size: 1024,
    arch: Architecture::Checkpoint {
        table: include_str!("sdxl.shapes"),
    },
};
pub const SD15: BenchModel = BenchModel {
    name: "sd15",
    image_size: 512,
    arch: Architecture::Checkpoint {
        table: include_str!("sd15.shapes"),
    },
};
/// PixArt-Sigma-XL-2-1024-MS with T5 v1.1 XXL.
pub const PIXART: BenchModel = BenchModel {
    name: "pixart",
    image_size: 1024,
    arch: Architecture::PixArt(PixArtScale {
        hidden: 1152,
        layers: 28,
        mlp: 4608,
        t5: T5Scale {
            vocab: 32128,
            d_model: 4096,
            heads: 64,
            d_kv: 64,
            d_ff: 10240,
            layers: 24,
            pieces: 32000,
        },
        vae_table: include_str!("sdxl.shapes"),
    }),
};
pub const SDXL_SMALL: BenchModel = BenchModel {
    name: "sdxl_small",
    image_size: 64,
    arch: Architecture::Checkpoint {
        table: include_str!("sdxl_small.shapes"),
    },
};
pub const SD15_SMALL: BenchModel = BenchModel {
    name: "sd15_small",
    image_size: 64,
    arch: Architecture::Checkpoint {
        table: include_str!("sd15_small.shapes"),
    },
};
pub const PIXART_SMALL: BenchModel = BenchModel {
    name: "pixart_small",
    image_size: 64,
    arch: Architecture::PixArt(PixArtScale {
        hidden: 144,
        layers: 2,
        mlp: 576,
        t5: T5Scale {
            vocab: 512,
            d_model: 64,
            heads: 4,
            d_kv: 16,
            d_ff: 96,
            layers: 2,
            pieces: 300,
        },
        vae_table: include_str!("sdxl_small.shapes"),
    }),
};

impl BenchModel {
    pub fn is_pixart(&self) -> bool {
        matches!(self.arch, Architecture::PixArt(_))
    }

    /// The CFG scale its users run (PixArt-Σ's recommended 4.5).
    pub fn cfg(&self) -> f64 {
        if self.is_pixart() {
            4.5
        } else {
            5.0
        }
    }
}

/// The files a bench model was written to.
#[derive(Debug, Clone)]
pub struct BenchFiles {
    pub checkpoint: PathBuf,
    /// PixArt-Σ's T5 (`--clip`), with its `spiece.model` beside it.
    pub clip: Option<PathBuf>,
    pub vae: Option<PathBuf>,
    /// The weight files' bytes together.
    pub bytes: u64,
}

impl BenchFiles {
    pub fn weight_files(&self) -> Vec<&Path> {
        let mut files = vec![self.checkpoint.as_path()];
        files.extend(self.clip.as_deref());
        files.extend(self.vae.as_deref());
        files
    }

    /// Removes every file written (a temporary work folder's, after the model is done).
    pub fn remove(&self) {
        for file in self.weight_files() {
            let _ = std::fs::remove_file(file);
        }
        if let Some(dir) = self.clip.as_deref().and_then(Path::parent) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One line of a table: `name<TAB>f|i<TAB>d0,d1,…`.
fn parse_line(line: &str) -> Result<(&str, bool, Vec<i64>)> {
    let mut parts = line.split('\t');
    let (Some(name), Some(kind), Some(dims)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("bad shape table line {line:?}");
    };
    let shape = if dims.is_empty() {
        Vec::new()
    } else {
        dims.split(',')
            .map(|d| d.parse::<i64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("bad shape in {line:?}"))?
    };
    Ok((name, kind == "f", shape))
}

/// A random tensor of `shape` with a scale that keeps activations in range through deep
/// stacks (1/√fan-in for matrices and kernels, ones for norm scales), so no step produces
/// infinities that would run slower paths than real weights.
fn random_tensor(name: &str, is_float: bool, shape: &[i64], kind: Kind) -> Tensor {
    if !is_float {
        let last = shape.last().copied().unwrap_or(1);
        return Tensor::arange(last, (Kind::Int64, Device::Cpu))
            .expand(shape, false)
            .contiguous();
    }
    let opts = (Kind::Float, Device::Cpu);
    let t = match shape.len() {
        0 => Tensor::ones(shape, opts),
        1 if name.ends_with(".weight") => Tensor::ones(shape, opts),
        1 => Tensor::randn(shape, opts) * 0.01,
        _ => {
            let fan_in: i64 = shape[1..].iter().product();
            Tensor::randn(shape, opts) / (fan_in.max(1) as f64).sqrt()
        }
    };
    t.to_kind(kind)
}

/// One tensor to write: its name, whether it is floating point, its shape.
type Spec = (String, bool, Vec<i64>);

fn table_specs(table: &str, strip: Option<&str>) -> Result<Vec<Spec>> {
    let mut specs = Vec::new();
    for line in table.lines().filter(|l| !l.is_empty()) {
        let (name, is_float, shape) = parse_line(line)?;
        let name = match strip {
            Some(prefix) => match name.strip_prefix(prefix) {
                Some(rest) => rest,
                None => continue,
            },
            None => name,
        };
        specs.push((name.to_string(), is_float, shape));
    }
    Ok(specs)
}

/// PixArt-Σ's transformer under diffusers' names (`adaln_single.…`, `transformer_blocks.N.…`).
pub fn pixart_specs(s: &PixArtScale) -> Vec<Spec> {
    let (d, caption) = (s.hidden, s.t5.d_model);
    // 2×2 patches of 8 channels out (learned sigma doubles the 4 latent channels).
    let patch_out = 2 * 2 * 8;
    let mut specs: Vec<(String, Vec<i64>)> = vec![
        ("scale_shift_table".into(), vec![2, d]),
        ("pos_embed.proj.weight".into(), vec![d, 4, 2, 2]),
        ("pos_embed.proj.bias".into(), vec![d]),
    ];
    let time = "adaln_single.emb.timestep_embedder";
    linear(&mut specs, &format!("{time}.linear_1"), d, 256);
    linear(&mut specs, &format!("{time}.linear_2"), d, d);
    linear(&mut specs, "adaln_single.linear", 6 * d, d);
    linear(&mut specs, "caption_projection.linear_1", d, caption);
    linear(&mut specs, "caption_projection.linear_2", d, d);
    linear(&mut specs, "proj_out", patch_out, d);
    for i in 0..s.layers {
        let b = format!("transformer_blocks.{i}");
        specs.push((format!("{b}.scale_shift_table"), vec![6, d]));
        for attn in ["attn1", "attn2"] {
            for proj in ["to_q", "to_k", "to_v", "to_out.0"] {
                linear(&mut specs, &format!("{b}.{attn}.{proj}"), d, d);
            }
        }
        linear(&mut specs, &format!("{b}.ff.net.0.proj"), s.mlp, d);
        linear(&mut specs, &format!("{b}.ff.net.2"), d, s.mlp);
    }
    specs.into_iter().map(|(n, s)| (n, true, s)).collect()
}

/// A linear layer's weight and bias.
fn linear(specs: &mut Vec<(String, Vec<i64>)>, name: &str, out: i64, inp: i64) {
    specs.push((format!("{name}.weight"), vec![out, inp]));
    specs.push((format!("{name}.bias"), vec![out]));
}

/// A T5 encoder under transformers' names (`shared.weight`, `encoder.block.N.…`).
pub fn t5_specs(t: &T5Scale) -> Vec<Spec> {
    let (d, inner) = (t.d_model, t.heads * t.d_kv);
    let mut specs: Vec<(String, Vec<i64>)> = vec![
        ("shared.weight".into(), vec![t.vocab, d]),
        ("encoder.final_layer_norm.weight".into(), vec![d]),
        (
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight".into(),
            vec![32, t.heads],
        ),
    ];
    for i in 0..t.layers {
        let attn = format!("encoder.block.{i}.layer.0");
        for proj in ["q", "k", "v"] {
            specs.push((
                format!("{attn}.SelfAttention.{proj}.weight"),
                vec![inner, d],
            ));
        }
        specs.push((format!("{attn}.SelfAttention.o.weight"), vec![d, inner]));
        specs.push((format!("{attn}.layer_norm.weight"), vec![d]));
        let ff = format!("encoder.block.{i}.layer.1");
        specs.push((format!("{ff}.DenseReluDense.wi_0.weight"), vec![t.d_ff, d]));
        specs.push((format!("{ff}.DenseReluDense.wi_1.weight"), vec![t.d_ff, d]));
        specs.push((format!("{ff}.DenseReluDense.wo.weight"), vec![d, t.d_ff]));
        specs.push((format!("{ff}.layer_norm.weight"), vec![d]));
    }
    specs.into_iter().map(|(n, s)| (n, true, s)).collect()
}

/// Writes random tensors for `specs` to `path` in `kind`; returns the file's size. A file
/// already there is reused (the weights are seeded, so it is the same file): a kept
/// `--work-dir` spares rewriting gigabytes for every variant measured; the file names
/// carry the generator's version. It is written under a temporary name and renamed, so a
/// file there is always whole.
fn write_random(specs: &[Spec], path: &Path, kind: Kind) -> Result<u64> {
    if let Ok(meta) = std::fs::metadata(path) {
        return Ok(meta.len());
    }
    tch::manual_seed(0);
    let tensors: Vec<(String, Tensor)> = specs
        .iter()
        .map(|(name, is_float, shape)| (name.clone(), random_tensor(name, *is_float, shape, kind)))
        .collect();
    let partial = path.with_extension("safetensors.partial");
    Tensor::write_safetensors(&tensors, &partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    Ok(std::fs::metadata(path)?.len())
}

/// Writes the model's files into `dir` as `{stem}…` (see [`write_random`] for reuse).
pub fn write_files(model: BenchModel, dir: &Path, stem: &str, kind: Kind) -> Result<BenchFiles> {
    let checkpoint = dir.join(format!("{stem}.safetensors"));
    match model.arch {
        Architecture::Checkpoint { table } => {
            let bytes = write_random(&table_specs(table, None)?, &checkpoint, kind)?;
            Ok(BenchFiles {
                checkpoint,
                clip: None,
                vae: None,
                bytes,
            })
        }
        Architecture::PixArt(scale) => {
            let t5_dir = dir.join(format!("{stem}_t5"));
            std::fs::create_dir_all(&t5_dir)?;
            let clip = t5_dir.join("t5.safetensors");
            let vae = dir.join(format!("{stem}_vae.safetensors"));
            let spiece = t5_dir.join("spiece.model");
            if !spiece.is_file() {
                imagelab_engine::t5::write_synthetic_spiece(&spiece, scale.t5.pieces)?;
            }
            let vae_specs = table_specs(scale.vae_table, Some("first_stage_model."))?;
            let bytes = write_random(&pixart_specs(&scale), &checkpoint, kind)?
                + write_random(&t5_specs(&scale.t5), &clip, kind)?
                + write_random(&vae_specs, &vae, kind)?;
            Ok(BenchFiles {
                checkpoint,
                clip: Some(clip),
                vae: Some(vae),
                bytes,
            })
        }
    }
}

/// Reads the file once so the load measures a page-cached checkpoint (as the target says).
pub fn warm_page_cache(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 24];
    while file.read(&mut buf)? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(specs: &[Spec]) -> i64 {
        specs
            .iter()
            .map(|(_, _, s)| s.iter().product::<i64>())
            .sum()
    }

    #[test]
    fn pixart_at_full_size_has_the_published_parameter_counts() {
        let Architecture::PixArt(scale) = PIXART.arch else {
            panic!("PIXART is a PixArt model")
        };
        // diffusers' PixArtTransformer2DModel and transformers' T5EncoderModel with the
        // published configs, counted on the meta device.
        assert_eq!(parameters(&pixart_specs(&scale)), 610_856_096);
        assert_eq!(parameters(&t5_specs(&scale.t5)), 4_762_310_656);
        let vae = table_specs(scale.vae_table, Some("first_stage_model.")).unwrap();
        assert_eq!(parameters(&vae), 83_653_863);
    }
}
