//! `imagelab bench`: speed and memory on random-weight models of the real architectures,
//! with nothing downloaded. For each model it writes its files (a single-file checkpoint;
//! for PixArt-Σ the transformer, T5 and the VAE), then times the load (and its GiB/s),
//! text encoding, the denoiser's step with CFG (batch 2), a whole
//! denoise, the VAE decode, one image end to end (prompt to PNG on disk) and a batch, and
//! reads GPU memory two ways: what the process holds (NVML) and the peaks of libtorch's
//! caching allocator during the load, one image and the batch (through the engine's
//! allocator shim). `--device cpu --size small` runs in seconds on tiny models for CI.

mod lora;
mod models;

use crate::memory_args::{MemoryArgs, TuningArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use imagelab_core::memory::MemorySettings;
use imagelab_core::{DType, DeviceSpec, GenerationParams, SamplerName, SchedulerName};
use imagelab_engine::pipeline::{ModelChoice, Pipeline, StepEvent};
use models::BenchModel;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// cpu, cuda or cuda:N (default: cuda when available).
    #[arg(long)]
    pub device: Option<String>,
    /// full (the real architectures at their native sizes) or small (tiny models, 64², for CI).
    #[arg(long, default_value = "full")]
    pub size: String,
    /// sdxl, sd15, pixart or all.
    #[arg(long, default_value = "all")]
    pub model: String,
    /// fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on the CPU).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Steps of the timed denoise.
    #[arg(long, default_value_t = 20)]
    pub steps: u32,
    /// Images in the batch measured for images per second (default: 4, 2 when small).
    #[arg(long)]
    pub batch: Option<u32>,
    /// Rank of the random LoRA whose merge, switch and step are timed (0: none).
    #[arg(long, default_value_t = 32)]
    pub lora_rank: i64,
    /// Also write the results here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the checkpoints and images go (default: a temporary folder, removed after). A
    /// folder given here keeps its checkpoints, and the next run reuses them.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Memory modes to measure (`--low-vram` is the 8 GiB setting); the default is the
    /// fastest, whatever config.yaml says.
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Each speed optimisation can be switched off to measure what it saves.
    #[command(flatten)]
    pub tuning: TuningArgs,
}

const PROMPT: &str = "a lighthouse at dusk, volumetric light, detailed oil painting";
const NEGATIVE: &str = "blurry, low quality";

/// Waits for queued GPU work so the clock measures it, not its launch.
fn sync(device: DeviceSpec) {
    if let DeviceSpec::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Starts a memory measurement on `device`: the allocator's peaks restart from its
/// current figures. Nothing on the CPU.
fn reset_peak(device: DeviceSpec) {
    if let DeviceSpec::Cuda(index) = device {
        imagelab_engine::reset_peak(index);
    }
}

/// The allocator's figures on `device` once its queued work is done (peaks since the last
/// [`reset_peak`]); `None` on the CPU or where the shim is unavailable.
fn allocator_figures(device: DeviceSpec) -> Option<imagelab_engine::AllocatorStats> {
    let DeviceSpec::Cuda(index) = device else {
        return None;
    };
    sync(device);
    imagelab_engine::allocator_stats(index)
}

/// GPU memory this process holds on `device`, in MiB, from NVML (includes the CUDA context
/// and what libtorch's caching allocator keeps reserved, which does not shrink while a
/// model runs, so read after the run it is the peak reserved). `None` on the CPU or
/// without NVML.
fn process_gpu_mib(device: DeviceSpec) -> Option<u64> {
    use imagelab_gpu::GpuProbe;
    let DeviceSpec::Cuda(index) = device else {
        return None;
    };
    let mut probe = imagelab_gpu::NvmlProbe::new().ok()?;
    let pid = std::process::id();
    let samples = probe.snapshot().ok()?;
    // CUDA_VISIBLE_DEVICES may renumber; with several GPUs visible, trust the index.
    let gpu = samples.get(index)?;
    gpu.processes
        .iter()
        .find(|p| p.pid == pid)
        .and_then(|p| p.used_mib)
}

fn params(model: BenchModel, steps: u32, batch: u32) -> GenerationParams {
    GenerationParams {
        prompt: PROMPT.into(),
        negative: NEGATIVE.into(),
        model: model.name.into(),
        width: model.image_size,
        height: model.image_size,
        steps,
        cfg: model.cfg(),
        sampler: SamplerName::Euler,
        scheduler: SchedulerName::Normal,
        seed: 1,
        batch,
        ..GenerationParams::default()
    }
}

fn timed<T>(device: DeviceSpec, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    sync(device);
    let start = Instant::now();
    let out = f()?;
    sync(device);
    Ok((out, start.elapsed().as_secs_f64()))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// How the random weights are made; a kept work dir reuses a checkpoint only when it was
/// written by the same generator (raise this when `models::random_tensor` changes).
const CHECKPOINT_GENERATION: u32 = 1;

/// The stem of the model's file names in the work folder.
fn file_stem(model: BenchModel) -> String {
    format!("bench_{}_g{CHECKPOINT_GENERATION}", model.name)
}

/// Every measurement for one model, and the files it was written to.
fn bench_model(
    model: BenchModel,
    device: DeviceSpec,
    dtype: DType,
    args: &BenchArgs,
    batch: u32,
    dir: &Path,
) -> Result<(Value, models::BenchFiles)> {
    let file_kind = if args.size == "small" {
        tch::Kind::Float
    } else {
        tch::Kind::Half
    };
    eprintln!("{}: writing random weights…", model.name);
    let files = models::write_files(model, dir, &file_stem(model), file_kind)?;
    let (path, file_bytes) = (files.checkpoint.clone(), files.bytes);
    for file in files.weight_files() {
        models::warm_page_cache(file)?;
    }
    // The model hash is cached per file; compute it first so the load measures weights only.
    imagelab_engine::model_hash::short_sha256(&path)?;

    eprintln!("{}: loading…", model.name);
    let choice = ModelChoice {
        clip: files.clip.clone(),
        vae: files.vae.clone(),
        memory: args.memory.settings(MemorySettings::default())?,
        tuning: args.tuning.tuning(),
        ..ModelChoice::new(&path, device, dtype)
    };
    reset_peak(device);
    let (pipeline, load_s) = timed(device, || Ok(Pipeline::load(&choice)?))?;
    let load_memory = allocator_figures(device);
    let weight_bytes: u64 = pipeline.memory_report().iter().map(|c| c.bytes).sum();

    // Each phase has its own prompt: PixArt-Σ keeps recent prompts' T5 encodings, and a
    // figure taken on a cached prompt would leave T5 out. (The shared negative stays
    // cached after the warm-up, as in a night run.)
    let phase = |mut p: GenerationParams, name: &str| {
        p.prompt = format!("{PROMPT}, {name}");
        p
    };
    // Warm-up: kernels chosen, allocator filled.
    let warm = phase(params(model, 2, 1), "warm-up");
    pipeline.generate(&warm, &mut |_| {})?;

    let text_prompt = format!("{PROMPT}, text encoder");
    let (_, text_s) = timed(device, || Ok(pipeline.encode_prompt(&text_prompt, None)?))?;

    eprintln!("{}: {} steps…", model.name, args.steps);
    let p = phase(params(model, args.steps, 1), "denoise");
    let mut stamps = Vec::new();
    let (latents, denoise_s) = timed(device, || {
        Ok(pipeline.sample_latents(&p, &mut |event| {
            if let StepEvent::Sampling { .. } = event {
                sync(device);
                stamps.push(Instant::now());
            }
        })?)
    })?;
    let step_s = median(
        stamps
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect(),
    );
    let tiling = pipeline.memory_settings().vae_tiling;
    let (_, decode_s) = timed(device, || {
        Ok(pipeline.decode_to_tensor_with(&latents, tiling)?)
    })?;

    let png = dir.join(format!("bench_{}.png", model.name));
    let _ = std::fs::remove_file(&png);
    reset_peak(device);
    let pe = phase(params(model, args.steps, 1), "one image");
    let (_, e2e_s) = timed(device, || {
        let images = pipeline.generate(&pe, &mut |_| {})?;
        let first = images.first().context("no image generated")?;
        let bytes = pipeline.encode_png(&pe, first)?;
        imagelab_engine::png_out::write_new_file(&png, &bytes)?;
        Ok(())
    })?;
    let image_memory = allocator_figures(device);

    let pb = phase(params(model, args.steps, batch), "batch");
    reset_peak(device);
    let (_, batch_s) = timed(device, || Ok(pipeline.generate(&pb, &mut |_| {})?))?;
    let batch_memory = allocator_figures(device);
    // LoRAs are merged into kept-loaded weights; an offloaded pipeline refuses them.
    let offloaded = pipeline.memory_settings().offload != imagelab_core::memory::Offload::None;
    let lora = match args.lora_rank {
        _ if model.is_pixart() => json!({ "skipped": "no LoRAs for PixArt-Σ yet" }),
        _ if offloaded => json!({ "skipped": "LoRAs need --offload none" }),
        0 => Value::Null,
        rank => {
            eprintln!("{}: a rank-{rank} LoRA…", model.name);
            lora::measure(&pipeline, model, &path, device, rank, dir)?
        }
    };

    let result = json!({
        "model": model.name,
        "network": if model.is_pixart() { "transformer" } else { "unet" },
        "image_size": model.image_size,
        "device": device.to_string(),
        "dtype": dtype,
        "steps": args.steps,
        "memory_settings": pipeline.memory_settings().to_string(),
        "tuning": pipeline.tuning(),
        "checkpoint_bytes": file_bytes,
        "weight_bytes_loaded": weight_bytes,
        "load_s": load_s,
        "load_gib_per_s": file_bytes as f64 / (1u64 << 30) as f64 / load_s,
        "text_encode_s": text_s,
        "unet_cfg_step_s": step_s,
        "denoise_s": denoise_s,
        "vae_decode_s": decode_s,
        "end_to_end_s_per_image": e2e_s,
        "batch": batch,
        "batch_images_per_s": batch as f64 / batch_s,
        "gpu_process_mib_after_run": process_gpu_mib(device),
        // libtorch's caching allocator, per phase (peaks reset at each phase's start);
        // null on the CPU.
        "allocator": {
            "load": load_memory,
            "image": image_memory,
            "batch": batch_memory,
        },
        "memory_report": pipeline.memory_report(),
        "lora": lora,
    });
    Ok((result, files))
}

/// The table: a label, where the figure sits in a model's JSON (a JSON pointer) and the
/// scale it is printed at. A figure that is absent or null prints "n/a".
fn print_table(results: &[Value]) {
    const GIB: f64 = 1.0 / (1u64 << 30) as f64;
    let rows: [(&str, &str, f64); 20] = [
        ("checkpoint GiB", "/checkpoint_bytes", GIB),
        ("load s", "/load_s", 1.0),
        ("load GiB/s", "/load_gib_per_s", 1.0),
        ("text encode ms", "/text_encode_s", 1e3),
        ("UNet CFG step ms", "/unet_cfg_step_s", 1e3),
        ("denoise s", "/denoise_s", 1.0),
        ("VAE decode ms", "/vae_decode_s", 1e3),
        ("end to end s/image", "/end_to_end_s_per_image", 1.0),
        ("batch images/s", "/batch_images_per_s", 1.0),
        ("GPU MiB (process)", "/gpu_process_mib_after_run", 1.0),
        ("peak alloc GiB load", "/allocator/load/peak_allocated", GIB),
        ("peak resv GiB load", "/allocator/load/peak_reserved", GIB),
        (
            "peak alloc GiB image",
            "/allocator/image/peak_allocated",
            GIB,
        ),
        ("peak resv GiB image", "/allocator/image/peak_reserved", GIB),
        (
            "peak alloc GiB batch",
            "/allocator/batch/peak_allocated",
            GIB,
        ),
        ("peak resv GiB batch", "/allocator/batch/peak_reserved", GIB),
        ("weights GiB loaded", "/weight_bytes_loaded", GIB),
        ("LoRA merge ms", "/lora/apply_s", 1e3),
        ("LoRA switch ms", "/lora/switch_s", 1e3),
        ("step with LoRA ms", "/lora/unet_cfg_step_s", 1e3),
    ];
    print!("{:<22}", "");
    for r in results {
        print!("{:>14}", r["model"].as_str().unwrap_or("?"));
    }
    println!();
    for (label, key, scale) in rows {
        print!("{label:<22}");
        for r in results {
            match r.pointer(key).and_then(Value::as_f64) {
                Some(v) => print!("{:>14.3}", v * scale),
                None => print!("{:>14}", "n/a"),
            }
        }
        println!();
    }
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let device: DeviceSpec = match &args.device {
        Some(d) => d.parse()?,
        None if tch::Cuda::is_available() => DeviceSpec::Cuda(0),
        None => DeviceSpec::Cpu,
    };
    if let DeviceSpec::Cuda(i) = device {
        if i as i64 >= tch::Cuda::device_count() {
            bail!(
                "{device} is not available (CUDA devices: {})",
                tch::Cuda::device_count()
            );
        }
    }
    let dtype: DType = match &args.dtype {
        Some(d) => d.parse()?,
        None if device == DeviceSpec::Cpu => DType::Fp32,
        None => DType::Fp16,
    };
    let models: Vec<BenchModel> = match (args.size.as_str(), args.model.as_str()) {
        ("full", "all") => vec![models::SDXL, models::SD15, models::PIXART],
        ("full", "sdxl") => vec![models::SDXL],
        ("full", "sd15") => vec![models::SD15],
        ("full", "pixart") => vec![models::PIXART],
        ("small", "all") => vec![models::SDXL_SMALL, models::SD15_SMALL, models::PIXART_SMALL],
        ("small", "sdxl") => vec![models::SDXL_SMALL],
        ("small", "sd15") => vec![models::SD15_SMALL],
        ("small", "pixart") => vec![models::PIXART_SMALL],
        (size, model) => {
            bail!("unknown --size {size:?} / --model {model:?} (full|small, sdxl|sd15|pixart|all)")
        }
    };
    if args.steps < 2 {
        bail!("--steps must be at least 2 (the step time is measured between steps)");
    }
    let batch = args
        .batch
        .unwrap_or(if args.size == "small" { 2 } else { 4 });
    let temp = tempfile_dir(args.work_dir.as_deref())?;
    let dir = temp.path();
    // Keep the model-hash cache of the throwaway checkpoints out of the user's settings.
    std::env::set_var("AIIMAGEGEN_HOME", dir.join("home"));
    let mut results = Vec::new();
    for model in models {
        let (result, files) = bench_model(model, device, dtype, &args, batch, dir)?;
        results.push(result);
        // The model's pipeline is gone: give its cached blocks back to the driver so the
        // next model's NVML figure and reserved peaks do not include them.
        imagelab_engine::empty_cache();
        if matches!(temp, WorkDir::Temp(_)) {
            files.remove();
        }
    }
    print_table(&results);
    if let Some(path) = &args.json {
        let doc = json!({
            "engine": imagelab_core::ENGINE_VERSION,
            "size": args.size,
            "results": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The work folder: the user's (kept) or a temporary one (removed on drop).
enum WorkDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Kept(p) => p,
            WorkDir::Temp(t) => t.path(),
        }
    }
}

fn tempfile_dir(given: Option<&Path>) -> Result<WorkDir> {
    match given {
        Some(p) => {
            std::fs::create_dir_all(p)?;
            Ok(WorkDir::Kept(p.to_path_buf()))
        }
        None => Ok(WorkDir::Temp(tempfile::tempdir()?)),
    }
}
