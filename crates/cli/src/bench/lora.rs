//! The LoRA figures of `imagelab bench`: a random kohya LoRA of the given rank on every
//! attention projection and feed-forward layer of the bench checkpoint's UNet, then the
//! time to merge it into the loaded pipeline, to switch to a second one (restore + merge),
//! and a CFG step with it merged (which should cost what a step without it costs).

use super::{median, params, sync, timed};
use anyhow::Result;
use imagelab_core::lora::LoraRef;
use imagelab_core::DeviceSpec;
use imagelab_engine::lora::LoraApplication;
use imagelab_engine::pipeline::{Pipeline, StepEvent};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

const UNET: &str = "model.diffusion_model.";

/// Whether a UNet weight is one LoRA trainers patch (kohya's default targets).
fn is_target(module: &str) -> bool {
    [
        ".to_q",
        ".to_k",
        ".to_v",
        ".to_out.0",
        ".ff.net.0.proj",
        ".ff.net.2",
    ]
    .iter()
    .any(|end| module.ends_with(end))
}

/// Writes the LoRA; returns how many modules it patches.
fn write_random_lora(checkpoint: &Path, out: &Path, rank: i64, seed: i64) -> Result<usize> {
    let header = imagelab_core::safetensors_header::read_header(checkpoint)?;
    tch::manual_seed(seed);
    let mut tensors = Vec::new();
    for (name, shape) in header.shapes() {
        let Some(module) = name
            .strip_prefix(UNET)
            .and_then(|n| n.strip_suffix(".weight"))
        else {
            continue;
        };
        if !is_target(module) || shape.len() != 2 {
            continue;
        }
        let flat = format!("lora_unet_{}", module.replace('.', "_"));
        let options = (tch::Kind::Half, tch::Device::Cpu);
        let down = tch::Tensor::randn([rank, shape[1]], options) * 0.01;
        let up = tch::Tensor::randn([shape[0], rank], options) * 0.01;
        tensors.push((format!("{flat}.lora_down.weight"), down));
        tensors.push((format!("{flat}.lora_up.weight"), up));
        tensors.push((format!("{flat}.alpha"), tch::Tensor::from(rank as f32)));
    }
    let count = tensors.len() / 3;
    tch::Tensor::write_safetensors(&tensors, out)?;
    Ok(count)
}

fn application(name: &str, path: &Path) -> LoraApplication {
    LoraApplication {
        name: name.into(),
        path: path.to_path_buf(),
        unet_weight: 0.8,
        te_weight: 0.8,
    }
}

/// The figures, with the pipeline left as loaded (no LoRA merged).
pub fn measure(
    pipeline: &Pipeline,
    model: super::BenchModel,
    checkpoint: &Path,
    device: DeviceSpec,
    rank: i64,
    dir: &Path,
) -> Result<Value> {
    let (a_path, b_path) = (
        dir.join("bench_lora_a.safetensors"),
        dir.join("bench_lora_b.safetensors"),
    );
    let modules = write_random_lora(checkpoint, &a_path, rank, 1)?;
    write_random_lora(checkpoint, &b_path, rank, 2)?;
    let (a, b) = (
        application("bench_lora_a", &a_path),
        application("bench_lora_b", &b_path),
    );
    let (_, apply_s) = timed(device, || Ok(pipeline.set_loras(std::slice::from_ref(&a))?))?;
    let (_, switch_s) = timed(device, || Ok(pipeline.set_loras(std::slice::from_ref(&b))?))?;
    let mut p = params(model, 6, 1);
    p.loras = vec![LoraRef {
        name: b.name.clone(),
        weight: b.unet_weight,
        te_weight: Some(b.te_weight),
    }];
    let mut stamps = Vec::new();
    let latents = pipeline.sample_latents(&p, &mut |event| {
        if let StepEvent::Sampling { .. } = event {
            sync(device);
            stamps.push(Instant::now());
        }
    })?;
    drop(latents);
    let step_s = median(
        stamps
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect(),
    );
    let (_, remove_s) = timed(device, || Ok(pipeline.set_loras(&[])?))?;
    Ok(json!({
        "rank": rank,
        "modules": modules,
        "file_bytes": std::fs::metadata(&a_path)?.len(),
        "apply_s": apply_s,
        "switch_s": switch_s,
        "remove_s": remove_s,
        "unet_cfg_step_s": step_s,
    }))
}
