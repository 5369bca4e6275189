//! Full-size parity on a GPU (not part of CI): loads the checkpoint written by
//! `tests/reference/full_size_ref.py` through the real loader on CUDA and compares the text
//! conditioning (CLIP-L + OpenCLIP-G), the final latents (UNet + sampler) and the VAE decode
//! with diffusers' results on the same random weights, printing relative errors and times.
//!
//!   cargo run --release -p imagelab-engine --example full_size_parity -- DIR [fp16|bf16] [TOLERANCE]

use imagelab_core::{DType, DeviceSpec, GenerationParams, SamplerName, SchedulerName};
use imagelab_engine::pipeline::{ModelChoice, Pipeline};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tch::{Kind, Tensor};

fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    let a = actual.to_kind(Kind::Double).to_device(tch::Device::Cpu);
    let e = expected.to_kind(Kind::Double).to_device(tch::Device::Cpu);
    (&a - &e).norm().double_value(&[]) / e.norm().double_value(&[]).max(1e-30)
}

fn main() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: full_size_parity DIR [fp16|bf16] [TOL]"))?,
    );
    let dtype: DType = args.next().unwrap_or_else(|| "fp16".into()).parse()?;
    let tolerance: f64 = args.next().map(|t| t.parse()).transpose()?.unwrap_or(1e-2);
    let io: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("sdxl_full_io.safetensors"))?
            .into_iter()
            .collect();
    let size = io["image"].size()[3] as u32;
    let steps = io["sigmas"].size()[0] as u32 - 1;

    let start = Instant::now();
    let choice = ModelChoice::new(
        dir.join("sdxl_full.safetensors"),
        DeviceSpec::Cuda(0),
        dtype,
    );
    let pipeline = Pipeline::load(&choice)?;
    println!("load: {:.2} s", start.elapsed().as_secs_f64());

    let params = GenerationParams {
        prompt: "a lighthouse at dusk, volumetric light".into(),
        negative: "blurry, low quality".into(),
        model: "sdxl_full".into(),
        width: size,
        height: size,
        steps,
        cfg: 5.0,
        sampler: SamplerName::Euler,
        scheduler: SchedulerName::Normal,
        seed: 424242,
        ..GenerationParams::default()
    };
    let mut failed = false;
    let mut check = |what: &str, err: f64| {
        let ok = err <= tolerance;
        failed |= !ok;
        println!(
            "{what}: relative error {err:.3e} ({})",
            if ok { "ok" } else { "FAIL" }
        );
    };
    let cond = pipeline.encode_prompt(&params.prompt, None)?;
    check(
        "text context (CLIP-L + OpenCLIP-G)",
        relative_error(&cond.context, &io["context"]),
    );
    if let Some(pooled) = &cond.pooled {
        check(
            "pooled (OpenCLIP-G projection)",
            relative_error(pooled, &io["pooled"]),
        );
    }
    let t = Instant::now();
    let latents = pipeline.sample_latents(&params, &mut |_| {})?;
    let _ = latents.sum(Kind::Float).double_value(&[]);
    println!("{steps}-step sampling: {:.3} s", t.elapsed().as_secs_f64());
    check("final latents", relative_error(&latents, &io["latents"]));
    let t = Instant::now();
    let image = pipeline.decode_to_tensor(&io["latents"].to_device(tch::Device::Cuda(0)))?;
    let _ = image.sum(Kind::Float).double_value(&[]);
    println!("VAE decode: {:.3} s", t.elapsed().as_secs_f64());
    check("VAE decode", relative_error(&image, &io["image"]));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
