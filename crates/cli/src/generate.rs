//! `imagelab generate`: one run of the engine in this process, from flags or `IMAGELAB_*`
//! environment variables, with a progress bar and PNGs that record how they were made.

use crate::logging;
use crate::memory_args::MemoryArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use imagelab_core::memory::{choose_for_free_memory, MemorySettings};
use imagelab_core::{
    config::Config, parse_sampler_label, paths, DType, DeviceSpec, GenerationParams, SchedulerName,
};
use imagelab_engine::pipeline::{ModelChoice, Pipeline, Placement, StepEvent};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug, Default)]
pub struct GenerateArgs {
    /// What to draw.
    #[arg(long, env = "IMAGELAB_PROMPT", default_value = "")]
    pub prompt: String,
    /// What to avoid.
    #[arg(long, env = "IMAGELAB_NEGATIVE")]
    pub negative: Option<String>,
    /// A checkpoint in models/checkpoints (extension optional), or a path to one.
    #[arg(long, env = "IMAGELAB_MODEL")]
    pub model: Option<String>,
    /// A VAE in models/vae replacing the checkpoint's own.
    #[arg(long, env = "IMAGELAB_VAE")]
    pub vae: Option<String>,
    /// Text encoder weights in models/clip replacing the checkpoint's own.
    #[arg(long, env = "IMAGELAB_CLIP")]
    pub clip: Option<String>,
    /// A LoRA in models/loras: name, name:weight or name:unet_weight:te_weight
    /// (repeatable; `<lora:name:weight>` in the prompt does the same).
    #[arg(long = "lora", value_name = "NAME[:WEIGHT[:TE_WEIGHT]]")]
    pub loras: Vec<String>,
    #[arg(long, env = "IMAGELAB_WIDTH")]
    pub width: Option<u32>,
    #[arg(long, env = "IMAGELAB_HEIGHT")]
    pub height: Option<u32>,
    #[arg(long, env = "IMAGELAB_STEPS")]
    pub steps: Option<u32>,
    #[arg(long, env = "IMAGELAB_CFG")]
    pub cfg: Option<f64>,
    /// A ComfyUI sampler name (euler, dpmpp_2m, …) or an A1111 label ("DPM++ 2M Karras").
    #[arg(long, env = "IMAGELAB_SAMPLER")]
    pub sampler: Option<String>,
    /// normal, karras, exponential, sgm_uniform, simple, ddim_uniform or beta.
    #[arg(long, env = "IMAGELAB_SCHEDULER")]
    pub scheduler: Option<String>,
    /// −1 for a random seed (the seed used is printed and recorded).
    #[arg(long, env = "IMAGELAB_SEED", allow_hyphen_values = true)]
    pub seed: Option<i64>,
    /// Images made together from one noise tensor.
    #[arg(long, env = "IMAGELAB_BATCH")]
    pub batch: Option<u32>,
    /// 1 = last text-encoder layer, 2 = penultimate, …
    #[arg(long, env = "IMAGELAB_CLIP_SKIP")]
    pub clip_skip: Option<u32>,
    /// cpu, cuda or cuda:N (default: cuda when available).
    #[arg(long, env = "IMAGELAB_DEVICE")]
    pub device: Option<String>,
    /// Split layout: the UNet's device (default: --device).
    #[arg(long, env = "IMAGELAB_UNET_DEVICE")]
    pub unet_device: Option<String>,
    /// Split layout: the text encoders' device (default: --device).
    #[arg(long, env = "IMAGELAB_TEXT_DEVICE")]
    pub text_device: Option<String>,
    /// Split layout: the VAE's device (default: --device).
    #[arg(long, env = "IMAGELAB_VAE_DEVICE")]
    pub vae_device: Option<String>,
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on the CPU).
    #[arg(long, env = "IMAGELAB_DTYPE")]
    pub dtype: Option<String>,
    /// Start from this image (img2img).
    #[arg(long, env = "IMAGELAB_INIT_IMAGE")]
    pub init_image: Option<PathBuf>,
    /// How much of the schedule img2img re-runs (0–1].
    #[arg(long, env = "IMAGELAB_STRENGTH")]
    pub strength: Option<f64>,
    /// Write here instead of output/ (never overwritten).
    #[arg(long, env = "IMAGELAB_OUT")]
    pub out: Option<PathBuf>,
    #[arg(long, env = "IMAGELAB_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[arg(long, env = "IMAGELAB_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,
    #[arg(long, env = "IMAGELAB_JOBS_DIR")]
    pub jobs_dir: Option<PathBuf>,
    /// Print the result as JSON (paths and seed) for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Fills generation parameters from the saved defaults, then the flags.
pub(crate) fn build_params(args: &GenerateArgs, config: &Config) -> Result<GenerationParams> {
    let mut p = config.default_params();
    p.prompt = args.prompt.clone();
    if let Some(n) = &args.negative {
        p.negative = n.clone();
    }
    p.width = args.width.unwrap_or(p.width);
    p.height = args.height.unwrap_or(p.height);
    p.steps = args.steps.unwrap_or(p.steps);
    p.cfg = args.cfg.unwrap_or(p.cfg);
    p.seed = args.seed.unwrap_or(p.seed);
    p.batch = args.batch.unwrap_or(p.batch);
    p.clip_skip = args.clip_skip.or(p.clip_skip);
    p.strength = args.strength.unwrap_or(p.strength);
    if let Some(label) = &args.sampler {
        let (sampler, implied_schedule) = parse_sampler_label(label)?;
        p.sampler = sampler;
        if let Some(s) = implied_schedule {
            p.scheduler = s;
        }
    }
    if let Some(s) = &args.scheduler {
        p.scheduler = s.parse::<SchedulerName>()?;
    }
    p.vae = args.vae.clone();
    p.clip = args.clip.clone();
    p.loras = args
        .loras
        .iter()
        .map(|text| imagelab_core::lora::LoraRef::parse(text, "--lora"))
        .collect::<Result<_, _>>()?;
    p.init_image = args.init_image.as_ref().map(|p| p.display().to_string());
    Ok(p)
}

/// A family's recommended steps and CFG (PixArt-Σ: 20 and 4.5) where neither the flags nor
/// the saved defaults chose them; returns what it applied, for the log.
fn apply_recommended(
    params: &mut GenerationParams,
    family: imagelab_core::family::Family,
    args: &GenerateArgs,
    config: &Config,
) -> Vec<String> {
    let Some(recommended) = family.recommended() else {
        return Vec::new();
    };
    let stock = imagelab_core::config::GenerationDefaults::default();
    let mut applied = Vec::new();
    if args.steps.is_none() && config.defaults.steps == stock.steps {
        params.steps = recommended.steps;
        applied.push(format!("{} steps", params.steps));
    }
    if args.cfg.is_none() && config.defaults.cfg == stock.cfg {
        params.cfg = recommended.cfg;
        applied.push(format!("CFG {}", params.cfg));
    }
    applied
}

/// The checkpoint's family's recommended steps and CFG ([`apply_recommended`]), said on
/// stderr; returns whether it is a PixArt-Σ model. An unreadable file counts as not: the
/// load names what is wrong with it.
pub(crate) fn apply_family_recommendation(
    params: &mut GenerationParams,
    checkpoint: &Path,
    args: &GenerateArgs,
    config: &Config,
) -> bool {
    let pixart = imagelab_engine::checkpoint::is_pixart(checkpoint).unwrap_or(false);
    if pixart {
        let family = imagelab_core::family::Family::PixArtSigma;
        let applied = apply_recommended(params, family, args, config);
        if !applied.is_empty() {
            eprintln!(
                "{}: its recommended {}",
                family.as_str(),
                applied.join(", ")
            );
        }
    }
    pixart
}

/// Explains where checkpoints go when there is none; not an error, there is nothing to do.
fn explain_missing_checkpoint(checkpoints: &Path) {
    eprintln!(
        "No checkpoint to generate with.\n\n\
         Put a Stable Diffusion checkpoint (.safetensors, single-file layout) in\n  {}\n\
         for example sd_xl_base_1.0.safetensors (SDXL), v1-5-pruned-emaonly.safetensors (SD 1.5)\n\
         or v2-1_768-ema-pruned.safetensors (SD 2.1), or a diffusers folder (with model_index.json).\n\
         Optional: VAEs in {}, text encoders in {}.\n\
         Then: imagelab generate --model <file name> --prompt \"a lighthouse at dusk\"",
        checkpoints.display(),
        checkpoints.with_file_name("vae").display(),
        checkpoints.with_file_name("clip").display(),
    );
}

/// For a run where neither the flags, the environment nor config.yaml chose a memory mode:
/// what fits the GPU's free memory, as ComfyUI picks its low-VRAM modes on small cards
/// (`imagelab_core::memory::choose_for_free_memory`). `None` keeps the fastest settings;
/// so do the CPU, a split placement, a model whose files cannot be read and a GPU whose
/// free memory cannot be read.
fn automatic_memory(
    checkpoint: &Path,
    pixart: bool,
    parts: [Option<&Path>; 2],
    params: &GenerationParams,
    dtype: DType,
    placement: Placement,
) -> Option<MemorySettings> {
    let DeviceSpec::Cuda(index) = placement.unet else {
        return None;
    };
    if !placement.is_single() {
        return None;
    }
    let element_bytes = if dtype == DType::Fp32 { 4 } else { 2 };
    let run = (params.width, params.height, params.batch);
    let need = crate::memory_need::model_need(checkpoint, pixart, parts, element_bytes, run)?;
    let (free, _total) = imagelab_engine::free_and_total(index)?;
    let chosen = choose_for_free_memory(free, need)?;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    eprintln!(
        "note: cuda:{index} has {:.1} GiB free and this model needs about {:.1} GiB at {}x{}; \
         using memory modes [{chosen}] (choose your own with --low-vram, --offload or memory: in config.yaml)",
        gib(free),
        gib(need.unet + need.others + need.activations),
        params.width,
        params.height
    );
    Some(chosen)
}

/// Each component's device: its own flag, else `--device`'s choice.
fn pick_placement(args: &GenerateArgs, device: DeviceSpec) -> Result<Placement> {
    let or_default = |flag: &Option<String>| -> Result<DeviceSpec> {
        let spec = match flag {
            Some(d) => d.parse::<DeviceSpec>()?,
            None => device,
        };
        if let DeviceSpec::Cuda(i) = spec {
            let count = tch::Cuda::device_count();
            if i as i64 >= count {
                bail!("invalid device {spec}: {count} CUDA device(s) visible");
            }
        }
        Ok(spec)
    };
    Ok(Placement {
        unet: or_default(&args.unet_device)?,
        text_encoders: or_default(&args.text_device)?,
        vae: or_default(&args.vae_device)?,
    })
}

fn pick_device(args: &GenerateArgs, config: &Config) -> Result<(DeviceSpec, DType)> {
    let device = match &args.device {
        Some(d) => d.parse::<DeviceSpec>()?,
        None => config.device.unwrap_or(if tch::Cuda::is_available() {
            DeviceSpec::Cuda(0)
        } else {
            DeviceSpec::Cpu
        }),
    };
    let dtype = match &args.dtype {
        Some(d) => d.parse::<DType>()?,
        None => config.dtype.unwrap_or(if device == DeviceSpec::Cpu {
            DType::Fp32
        } else {
            DType::Fp16
        }),
    };
    let on_cpu = device == DeviceSpec::Cpu
        || [&args.unet_device, &args.text_device, &args.vae_device]
            .iter()
            .any(|d| d.as_deref().map(str::trim) == Some("cpu"));
    if on_cpu && dtype != DType::Fp32 {
        bail!("invalid dtype {dtype} on the CPU: the CPU runs in fp32 (use --dtype fp32, or --device cuda)");
    }
    if let DeviceSpec::Cuda(i) = device {
        let count = tch::Cuda::device_count();
        if i as i64 >= count {
            bail!("invalid device {device}: {count} CUDA device(s) visible (is the NVIDIA driver installed and libtorch_cuda linked?)");
        }
    }
    Ok((device, dtype))
}

fn random_seed() -> i64 {
    use rand::Rng;
    // 53 bits keeps the seed exact in JSON readers that parse numbers as doubles.
    rand::rng().random_range(0..(1i64 << 53))
}

pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    let log_path = logging::init("generate", logging::Kind::Engine)?.path;
    let mut config = Config::load()?;
    if let Some(d) = &args.models_dir {
        config.models_dir = d.clone();
    }
    if let Some(d) = &args.output_dir {
        config.output_dir = d.clone();
    }
    if let Some(d) = &args.jobs_dir {
        config.jobs_dir = d.clone();
    }
    let folders = config.folders();
    let mut params = build_params(&args, &config)?;

    let checkpoints = folders.checkpoints();
    let model_name = match &args.model {
        Some(m) => m.clone(),
        None => match paths::list_model_names(&checkpoints).as_slice() {
            [] => {
                explain_missing_checkpoint(&checkpoints);
                return Ok(ExitCode::SUCCESS);
            }
            [only] => only.clone(),
            several => bail!(
                "several checkpoints in {}; pick one with --model: {}",
                checkpoints.display(),
                several.join(", ")
            ),
        },
    };
    params.model = model_name.clone();
    params.validate()?;
    if params.seed < 0 {
        params.seed = random_seed();
    }
    let checkpoint = paths::resolve_model_file(&checkpoints, &model_name, "model", true)?;
    let vae = args
        .vae
        .as_deref()
        .map(|n| paths::resolve_model_file(&folders.vae(), n, "vae", false))
        .transpose()?;
    let clip = args
        .clip
        .as_deref()
        .map(|n| paths::resolve_model_file(&folders.clip(), n, "clip", false))
        .transpose()?;
    let loras = imagelab_engine::lora::resolve(&folders.loras(), &params.requested_loras()?)?;
    let pixart = apply_family_recommendation(&mut params, &checkpoint, &args, &config);
    if let Some(out) = &args.out {
        if out.exists() {
            bail!(
                "{} already exists; imagelab never overwrites an image",
                out.display()
            );
        }
    }
    let (device, dtype) = pick_device(&args, &config)?;
    let placement = pick_placement(&args, device)?;
    let mut memory = args.memory.settings(config.memory)?;
    if config.automatic_memory && args.memory.is_unset() && config.memory.is_default() {
        if let Some(chosen) = automatic_memory(
            &checkpoint,
            pixart,
            [clip.as_deref(), vae.as_deref()],
            &params,
            dtype,
            placement,
        ) {
            memory = chosen;
        }
    }
    tracing::info!(
        "generate: model={} device={placement} dtype={dtype} memory=[{memory}] params={}",
        checkpoint.display(),
        serde_json::to_string(&params)?
    );
    eprintln!("seed {}", params.seed);

    let spinner =
        ProgressBar::new_spinner().with_message(format!("loading {}", checkpoint.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let choice = ModelChoice {
        vae,
        clip,
        placement,
        memory,
        ..ModelChoice::new(checkpoint, placement.unet, dtype)
    };
    let pipeline =
        Pipeline::load(&choice).with_context(|| format!("cannot load model {model_name}"))?;
    pipeline
        .set_loras(&loras)
        .context("cannot merge the LoRAs")?;
    pipeline.set_embeddings_folder(Some(folders.embeddings()));
    spinner.finish_and_clear();
    tracing::info!(
        "loaded: memory=[{}] unet={:?} tuning={:?}",
        pipeline.memory_settings(),
        pipeline.unet_options(),
        pipeline.tuning()
    );

    let bar = ProgressBar::new(params.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} steps {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("sampling");
    let images = pipeline.generate(&params, &mut |event| match event {
        StepEvent::Sampling { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        StepEvent::Decoding => bar.set_message("decoding"),
    })?;
    bar.finish_and_clear();

    let mut written = Vec::new();
    for (index, image) in images.iter().enumerate() {
        let bytes = pipeline.encode_png(&params, image)?;
        let path = match &args.out {
            Some(out) if images.len() == 1 => {
                imagelab_engine::png_out::write_new_file(out, &bytes)?;
                out.clone()
            }
            Some(out) => {
                let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
                let numbered = out.with_file_name(format!("{stem}_{:02}.png", index + 1));
                imagelab_engine::png_out::write_new_file(&numbered, &bytes)?;
                numbered
            }
            None => imagelab_engine::png_out::write_numbered(&folders.output, "imagelab", &bytes)?,
        };
        tracing::info!("wrote {}", path.display());
        written.push(path);
    }
    if args.json {
        let paths: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!(
            "{}",
            serde_json::json!({ "seed": params.seed, "images": paths, "log": log_path })
        );
    } else {
        for p in &written {
            println!("{}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
