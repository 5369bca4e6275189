//! `imagelab worker`: the engine as a child process of the daemon. It reads one
//! `WorkerCommand` per line on stdin (generate, load, unload, cancel) and answers with
//! `WorkerEvent` lines on stdout, keeping the last few models loaded (the pipeline cache),
//! until stdin closes. Stdin is read on a thread of its own ([`inbox`]), so a cancel stops
//! a running job at the next step boundary; progress lines carry a latent preview every
//! `preview_every` steps.

mod inbox;

use anyhow::Result;
use clap::Args;
use imagelab_core::config::Config;
use imagelab_core::events::ComponentVram;
use imagelab_core::worker::{WorkRequest, WorkerCommand, WorkerEvent};
use imagelab_core::{paths, DType, DeviceSpec, GenerationParams};
use imagelab_engine::pipeline::{ModelChoice, PipelineCache, Placement, Step, StepEvent};
use imagelab_engine::preview::PREVIEW_MAX_SIDE;
use imagelab_engine::EngineError;
use inbox::Inbox;
use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// cpu, cuda or cuda:N (the daemon sets CUDA_VISIBLE_DEVICES, so usually cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on the CPU).
    #[arg(long)]
    pub dtype: Option<String>,
    /// The split layout of a GPU pair: the UNet on the first visible GPU, the text
    /// encoders and VAE on the second (the daemon's `--worker cuda:N+M`).
    #[arg(long)]
    pub split: bool,
    /// Run the one job in this file (a `WorkRequest` as JSON), write its events to stdout
    /// and exit: how a Slurm job runs the engine. Exits 0 when the job is done, 3 when it
    /// failed (the `failed` line says why).
    #[arg(long, value_name = "FILE")]
    pub one_job: Option<std::path::PathBuf>,
}

/// Where the components go: one device, or the pair of a split worker.
fn placement(device: DeviceSpec, split: bool) -> Result<Placement> {
    if !split {
        return Ok(Placement::single(device));
    }
    if device == DeviceSpec::Cpu {
        anyhow::bail!("--split needs --device cuda (two visible GPUs)");
    }
    Ok(Placement {
        unet: DeviceSpec::Cuda(0),
        text_encoders: DeviceSpec::Cuda(1),
        vae: DeviceSpec::Cuda(1),
    })
}

/// The names a load takes: a checkpoint, and the VAE and text encoders replacing its own.
#[derive(Clone, Copy)]
struct ModelNames<'a> {
    model: &'a str,
    vae: Option<&'a str>,
    clip: Option<&'a str>,
}

impl<'a> ModelNames<'a> {
    fn of(params: &'a GenerationParams) -> ModelNames<'a> {
        ModelNames {
            model: &params.model,
            vae: params.vae.as_deref(),
            clip: params.clip.as_deref(),
        }
    }
}

/// What a job or a load asks for: the files resolved inside their folders, on this
/// worker's devices, with the config's `memory:` modes (read for every job, so an edited
/// config applies to the next load). A name that does not resolve is the error's text.
fn choice(
    config: &Config,
    names: ModelNames<'_>,
    placement: Placement,
    dtype: DType,
) -> std::result::Result<ModelChoice, String> {
    let folders = config.folders();
    let resolve = |folder: std::path::PathBuf, name: &str, what: &'static str| {
        paths::resolve_model_file(&folder, name, what, false).map_err(|e| e.to_string())
    };
    let checkpoint = resolve(folders.checkpoints(), names.model, "model")?;
    let vae = names
        .vae
        .map(|n| resolve(folders.vae(), n, "vae"))
        .transpose()?;
    let clip = names
        .clip
        .map(|n| resolve(folders.clip(), n, "clip"))
        .transpose()?;
    Ok(ModelChoice {
        vae,
        clip,
        placement,
        memory: config.memory,
        ..ModelChoice::new(checkpoint, placement.unet, dtype)
    })
}

/// Merges the job's LoRAs (tags and list) into the cached pipeline; the set of the last
/// job is replaced, so a job without LoRAs gets the weights as loaded. Points the
/// pipeline's prompt embeddings at the configured folder.
fn merge_loras(
    config: &Config,
    params: &GenerationParams,
    pipeline: &imagelab_engine::pipeline::Pipeline,
) -> std::result::Result<(), EngineError> {
    let wanted = params.requested_loras()?;
    let folders = config.folders();
    let loras = imagelab_engine::lora::resolve(&folders.loras(), &wanted)?;
    pipeline.set_embeddings_folder(Some(folders.embeddings()));
    pipeline.set_loras(&loras)
}

fn emit(event: &WorkerEvent) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, event)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Errors another attempt cannot fix: the input or the model file is wrong.
fn retryable(err: &EngineError) -> bool {
    !matches!(
        err,
        EngineError::Invalid { .. }
            | EngineError::PickleRefused { .. }
            | EngineError::UnknownArchitecture { .. }
            | EngineError::CorruptSafetensors { .. }
            | EngineError::BadTokenizer { .. }
            | EngineError::Incompatible { .. }
            | EngineError::MissingTensor { .. }
            | EngineError::ShapeMismatch { .. }
    )
}

/// The preview of step `done`, when this step is one of every `preview_every` (0: none).
/// A preview that cannot be made is logged and left out; it never fails the job.
fn preview_for(
    step: &Step<'_>,
    done: usize,
    every: usize,
) -> Option<imagelab_core::events::Preview> {
    if every == 0 || !done.is_multiple_of(every) {
        return None;
    }
    step.preview(PREVIEW_MAX_SIDE)
        .inspect_err(|e| tracing::warn!("no preview for step {done}: {e}"))
        .ok()
        .flatten()
}

/// `IMAGELAB_WORKER_PANIC_AT_STEP=N` makes the worker panic at step N of every job: the
/// tests' way to check that a panic is logged in its job's span before the worker dies.
const ENV_PANIC_AT_STEP: &str = "IMAGELAB_WORKER_PANIC_AT_STEP";

/// What the worker keeps between jobs.
struct Worker {
    cache: PipelineCache,
    device: Placement,
    dtype: DType,
    inbox: Inbox,
    panic_at_step: Option<usize>,
}

/// Runs one job inside its span (the id and attempt the daemon sent), so every line the
/// worker writes meanwhile, a panic's included, is the job's; the span's close line holds
/// the job's whole time.
fn run_job(request: &WorkRequest, worker: &mut Worker) -> Result<WorkerEvent> {
    let _job = imagelab_logging::job_span!(request.job, request.attempt).entered();
    let p = &request.params;
    tracing::info!(
        model = %p.model,
        size = %format_args!("{}x{}", p.width, p.height),
        steps = p.steps,
        batch = p.batch,
        seed = p.seed,
        "generating"
    );
    let event = run_one(request, worker)?;
    match &event {
        WorkerEvent::Done { outputs, .. } => tracing::info!(images = outputs.len(), "done"),
        WorkerEvent::Failed {
            error, retryable, ..
        } => tracing::warn!(%error, retryable, "failed"),
        WorkerEvent::Cancelled { .. } => tracing::info!("cancelled"),
        _ => {}
    }
    Ok(event)
}

fn run_one(request: &WorkRequest, worker: &mut Worker) -> Result<WorkerEvent> {
    let Worker {
        cache,
        device,
        dtype,
        inbox,
        panic_at_step,
    } = worker;
    let (device, dtype, panic_at_step) = (*device, *dtype, *panic_at_step);
    let cancelled = WorkerEvent::Cancelled { job: request.job };
    // A cancel may already wait behind the generate (or have come during an earlier job).
    if inbox.cancel_requested(request.job) {
        return Ok(cancelled);
    }
    let config = Config::load()?;
    let failed = |error: String, retryable: bool| WorkerEvent::Failed {
        job: request.job,
        error,
        retryable,
    };
    let wanted = match choice(&config, ModelNames::of(&request.params), device, dtype) {
        Ok(wanted) => wanted,
        Err(e) => return Ok(failed(e, false)),
    };
    let pipeline = match cache.get_or_load(&wanted) {
        Ok(p) => p,
        Err(e) => return Ok(failed(format!("{e}"), retryable(&e))),
    };
    if let Err(e) = merge_loras(&config, &request.params, &pipeline) {
        return Ok(failed(format!("{e}"), retryable(&e)));
    }
    // Loading can take a while; a cancel sent meanwhile saves the whole sampling run.
    if inbox.cancel_requested(request.job) {
        return Ok(cancelled);
    }
    let started = Instant::now();
    let mut steps = 0usize;
    let tiling = pipeline.memory_settings().vae_tiling;
    let images = pipeline.generate_until(&request.params, tiling, &mut |step| {
        if let StepEvent::Sampling { done, total } = step.event {
            if panic_at_step == Some(done) {
                panic!("{ENV_PANIC_AT_STEP}={done}: a panic the environment asked for");
            }
            steps = total;
            let _ = emit(&WorkerEvent::Progress {
                job: request.job,
                done,
                total,
                preview: preview_for(step, done, request.preview_every),
            });
        }
        // Checked at every step boundary and before decoding: stopping there leaves no
        // half-written image.
        if inbox.cancel_requested(request.job) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let images = match images {
        Ok(images) => images,
        Err(EngineError::Cancelled { done, total }) => {
            tracing::info!("cancelled after step {done} of {total}");
            return Ok(cancelled);
        }
        Err(e) => return Ok(failed(format!("{e}"), retryable(&e))),
    };
    let step_time_ms = (steps > 0).then(|| started.elapsed().as_secs_f64() * 1000.0 / steps as f64);
    let mut outputs = Vec::new();
    for (image, stem) in images.iter().zip(&request.stems) {
        let name = format!("{stem}.png");
        let _write = tracing::info_span!("write", file = %name).entered();
        let bytes = pipeline.encode_png(&request.params, image)?;
        if let Err(e) =
            imagelab_engine::png_out::write_replacing(&request.output_dir.join(&name), &bytes)
        {
            return Ok(failed(e.to_string(), true));
        }
        outputs.push(name);
    }
    Ok(WorkerEvent::Done {
        job: request.job,
        seeds: vec![request.params.seed; outputs.len()],
        outputs,
        model_hash: Some(pipeline.info.model_hash.clone()),
        step_time_ms,
    })
}

/// The cache's checkpoints by file name and what their components hold.
fn models_event(cache: &PipelineCache) -> WorkerEvent {
    let mut loaded = Vec::new();
    let mut vram = Vec::new();
    for pipeline in cache.pipelines() {
        let model = file_name(&pipeline.info.model_path);
        for part in pipeline.memory_report() {
            vram.push(ComponentVram {
                model: model.clone(),
                component: part.component,
                device: part.device.to_string(),
                bytes: part.bytes,
            });
        }
        loaded.push(model);
    }
    WorkerEvent::Models { loaded, vram }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn load(
    names: ModelNames<'_>,
    cache: &mut PipelineCache,
    device: Placement,
    dtype: DType,
) -> std::result::Result<(), String> {
    let config = Config::load().map_err(|e| e.to_string())?;
    let wanted = choice(&config, names, device, dtype)?;
    cache
        .get_or_load(&wanted)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn unload(model: Option<&str>, cache: &mut PipelineCache) {
    match model {
        None => cache.clear(),
        Some(name) => {
            let wanted: Vec<_> = cache
                .checkpoints()
                .into_iter()
                .filter(|path| file_name(path) == name || path.as_os_str() == name)
                .collect();
            for path in wanted {
                cache.remove(&path);
            }
        }
    }
}

fn panic_at_step() -> Result<Option<usize>> {
    match std::env::var(ENV_PANIC_AT_STEP) {
        Err(_) => Ok(None),
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{ENV_PANIC_AT_STEP}={value:?} is not a step number")),
    }
}

/// `--one-job FILE`: the job in `file`, its events on stdout, and an exit code that says
/// how it went (for Slurm's accounting; the daemon reads the events).
fn run_file(file: &std::path::Path, worker: &mut Worker) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read the job file {}: {e}", file.display()))?;
    let request: WorkRequest = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a job request: {e}", file.display()))?;
    emit(&WorkerEvent::Ready {
        pid: std::process::id(),
    })?;
    let event = run_job(&request, worker)?;
    emit(&event)?;
    Ok(match event {
        WorkerEvent::Done { .. } => ExitCode::SUCCESS,
        _ => ExitCode::from(3),
    })
}

pub fn run(args: WorkerArgs) -> Result<ExitCode> {
    crate::logging::init("worker", crate::logging::Kind::Engine)?;
    let device: DeviceSpec = args.device.parse()?;
    let dtype = match &args.dtype {
        Some(d) => d.parse::<DType>()?,
        None if device == DeviceSpec::Cpu => DType::Fp32,
        None => DType::Fp16,
    };
    let device = placement(device, args.split)?;
    tracing::info!(device = %device.unet, %dtype, split = args.split, "worker ready");
    let mut worker = Worker {
        cache: PipelineCache::new(Config::load()?.pipeline_cache_size),
        device,
        dtype,
        inbox: if args.one_job.is_some() {
            Inbox::silent()
        } else {
            Inbox::stdin()
        },
        panic_at_step: panic_at_step()?,
    };
    if let Some(file) = &args.one_job {
        return run_file(file, &mut worker);
    }
    emit(&WorkerEvent::Ready {
        pid: std::process::id(),
    })?;
    while let Some(incoming) = worker.inbox.next() {
        let event = match incoming {
            Ok(WorkerCommand::Generate(request)) => {
                let event = run_job(&request, &mut worker)?;
                emit(&event)?;
                models_event(&worker.cache)
            }
            Ok(WorkerCommand::Load { model, vae, clip }) => {
                tracing::info!("load {model} (vae {vae:?}, clip {clip:?})");
                let names = ModelNames {
                    model: &model,
                    vae: vae.as_deref(),
                    clip: clip.as_deref(),
                };
                match load(names, &mut worker.cache, worker.device, worker.dtype) {
                    Ok(()) => models_event(&worker.cache),
                    Err(error) => WorkerEvent::Failed {
                        job: 0,
                        error,
                        retryable: false,
                    },
                }
            }
            Ok(WorkerCommand::Unload { model }) => {
                tracing::info!("unload {}", model.as_deref().unwrap_or("every model"));
                unload(model.as_deref(), &mut worker.cache);
                models_event(&worker.cache)
            }
            // A cancel that arrives between jobs has nothing to stop.
            Ok(WorkerCommand::Cancel { .. }) => continue,
            Err(error) => WorkerEvent::Failed {
                job: 0,
                error,
                retryable: false,
            },
        };
        emit(&event)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["checkpoints", "vae", "clip"] {
            std::fs::create_dir_all(dir.path().join("models").join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("models/checkpoints/m.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("models/vae/v.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("models/clip/c.safetensors"), b"x").unwrap();
        let config = Config {
            models_dir: dir.path().join("models"),
            ..Config::default()
        };
        (dir, config)
    }

    #[test]
    fn a_jobs_vae_and_clip_replace_the_checkpoints_own() {
        let (dir, config) = lab();
        let names = ModelNames {
            model: "m.safetensors",
            vae: Some("v.safetensors"),
            clip: Some("c.safetensors"),
        };
        let placement = Placement::single(DeviceSpec::Cpu);
        let wanted = choice(&config, names, placement, DType::Fp32).unwrap();
        let models = dir.path().join("models");
        assert_eq!(wanted.checkpoint, models.join("checkpoints/m.safetensors"));
        assert_eq!(wanted.vae, Some(models.join("vae/v.safetensors")));
        assert_eq!(wanted.clip, Some(models.join("clip/c.safetensors")));
        let plain = ModelNames {
            vae: None,
            clip: None,
            ..names
        };
        let wanted = choice(&config, plain, placement, DType::Fp32).unwrap();
        assert_eq!((wanted.vae, wanted.clip), (None, None));
    }

    #[test]
    fn a_vae_outside_its_folder_is_refused_by_name() {
        let (_dir, config) = lab();
        let names = ModelNames {
            model: "m.safetensors",
            vae: Some("../checkpoints/m.safetensors"),
            clip: None,
        };
        let placement = Placement::single(DeviceSpec::Cpu);
        let error = choice(&config, names, placement, DType::Fp32).unwrap_err();
        assert!(error.contains("vae"), "{error}");
    }
}
