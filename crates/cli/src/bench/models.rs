//! Random-weight checkpoints of the real SDXL and SD 1.5 architectures (and tiny variants
//! for CI), written as single-file safetensors that the ordinary loader classifies and
//! loads. Random weights do the same arithmetic as trained ones, so timings carry over.
//!
//! The name → shape tables (`*.shapes`) were produced once by `scripts/bench_shapes.py`
//! from diffusers' model classes on the meta device and the key converters the parity
//! tests check; no Python runs here.

use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Which architecture and at what scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchModel {
    pub name: &'static str,
    /// The family's native image side (SDXL 1024, SD 1.5 512; the tiny ones 64).
    pub image_size: u32,
    table: &'static str,
}

pub const SDXL: BenchModel = BenchModel {
    name: "sdxl",
    image_size: 1024,
    table: include_str!("sdxl.shapes"),
};
pub const SD15: BenchModel = BenchModel {
    name: "sd15",
    image_size: 512,
    table: include_str!("sd15.shapes"),
};
pub const SDXL_SMALL: BenchModel = BenchModel {
    name: "sdxl_small",
    image_size: 64,
    table: include_str!("sdxl_small.shapes"),
};
pub const SD15_SMALL: BenchModel = BenchModel {
    name: "sd15_small",
    image_size: 64,
    table: include_str!("sd15_small.shapes"),
};

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

/// Writes the model's random checkpoint to `path` in `kind`; returns the file's size. A
/// file already there is reused (the weights are seeded, so it is the same file): a kept
/// `--work-dir` spares rewriting 6.9 GB for every variant measured; the file name carries
/// the generator's version (`CHECKPOINT_GENERATION`). It is written under a temporary name
/// and renamed, so a file there is always whole.
pub fn write_checkpoint(model: BenchModel, path: &Path, kind: Kind) -> Result<u64> {
    if let Ok(meta) = std::fs::metadata(path) {
        return Ok(meta.len());
    }
    tch::manual_seed(0);
    let tensors = model
        .table
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (name, is_float, shape) = parse_line(line)?;
            Ok((
                name.to_string(),
                random_tensor(name, is_float, &shape, kind),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let partial = path.with_extension("safetensors.partial");
    Tensor::write_safetensors(&tensors, &partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    Ok(std::fs::metadata(path)?.len())
}

/// Reads the file once so the load measures a page-cached checkpoint (as the target says).
pub fn warm_page_cache(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 24];
    while file.read(&mut buf)? > 0 {}
    Ok(())
}
