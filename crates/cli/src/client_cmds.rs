//! The daemon and its client commands: `imagelab daemon [status]`, `submit`, `jobs`, `job`,
//! `cancel` and `queue pause|resume|status`. The client side talks to the daemon found
//! through `daemon.json` in the settings folder.

use crate::generate::{build_params, GenerateArgs};
use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use imagelab_client::Client;
use imagelab_core::api::{JobPriority, JobSource, JobView, ListQuery, SubmitBatch, SubmitRequest};
use imagelab_core::config::{settings_dir, Config};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
    /// A worker to run jobs on: `cpu`, `cuda:N`, or a split pair `cuda:N+M` (UNet on N,
    /// text encoders and VAE on M); repeat for several. Default: one per GPU selected in
    /// config.yaml, found through NVML (none without NVML).
    #[arg(long = "worker")]
    pub workers: Vec<String>,
    /// Hand jobs to Slurm (config.yaml's `slurm:` section says how); with no `--worker`
    /// and no `workers:` list, Slurm alone runs them (a login node has no GPU).
    #[arg(long)]
    pub slurm: bool,
}

#[derive(Subcommand, Debug)]
pub enum DaemonAction {
    /// Is the daemon running, and what is in its queue?
    Status,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Priority {
    Interactive,
    Normal,
    Background,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// A YAML (or JSON) job file: a submit request (`spec:` with the generation settings,
    /// `priority:`, `count:`, …); see jobs/example.yaml. Flags are ignored when given.
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "normal")]
    pub priority: Priority,
    /// Run only on this GPU (UUID).
    #[arg(long)]
    pub gpu: Option<String>,
    /// Queue N jobs with N seeds (seed, seed+1, …; random per job with seed −1).
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    #[command(flatten)]
    pub params: Box<GenerateArgs>,
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    /// queued, leased, done, failed, dead or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    pub id: u64,
    #[arg(long)]
    pub json: bool,
    /// Print the job's whole story instead: every line the daemon and its workers logged
    /// for it (submit, lease, load, encode, each step, decode, write, its end), in time
    /// order, each marked with the process that wrote it.
    #[arg(long)]
    pub log: bool,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    pub id: u64,
}

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[arg(value_enum)]
    pub action: QueueAction,
}

#[derive(Args, Debug)]
pub struct PriorityArgs {
    pub id: u64,
    #[arg(value_enum)]
    pub priority: Priority,
}

/// `imagelab priority ID LEVEL`: move a queued (or running) job to another priority.
pub fn run_priority(args: PriorityArgs) -> Result<ExitCode> {
    let job = client()?.set_priority(args.id, wire_priority(args.priority))?;
    println!("job {} is now {:?} priority", job.id, job.priority);
    Ok(ExitCode::SUCCESS)
}

fn wire_priority(p: Priority) -> JobPriority {
    match p {
        Priority::Interactive => JobPriority::Interactive,
        Priority::Normal => JobPriority::Normal,
        Priority::Background => JobPriority::Background,
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum QueueAction {
    Pause,
    Resume,
    Status,
    /// Remove finished, failed, dead and cancelled jobs (jobs.log keeps them).
    Clear,
}

pub(crate) fn client() -> Result<Client> {
    Ok(Client::from_daemon_json(&settings_dir())?)
}

pub fn run_daemon(args: DaemonArgs) -> Result<ExitCode> {
    match args.action {
        Some(DaemonAction::Status) => {
            let client = client()?;
            let health = client.health()?;
            let status = client.status()?;
            println!(
                "daemon {} (protocol {}): running",
                health.version, health.protocol
            );
            println!(
                "queue: {}",
                if status.paused { "paused" } else { "running" }
            );
            for (state, count) in &status.counts {
                println!("  {state:<10} {count}");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => crate::daemon_cmd::run(&args.workers, args.slurm),
    }
}

/// PixArt-Σ's recommended steps and CFG for a job on a PixArt checkpoint in the local
/// models folder, where neither flags nor saved defaults chose them (as `generate` does).
/// A model that does not resolve here is left for the daemon to judge.
fn apply_family_recommendation(
    spec: &mut imagelab_core::GenerationParams,
    args: &GenerateArgs,
    config: &Config,
) {
    let checkpoints = config.folders().checkpoints();
    let Ok(path) =
        imagelab_core::paths::resolve_model_file(&checkpoints, &spec.model, "model", true)
    else {
        return;
    };
    crate::generate::apply_family_recommendation(spec, &path, args, config);
}

fn request_from_args(args: &SubmitArgs) -> Result<SubmitRequest> {
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        let mut request: SubmitRequest = serde_yaml::from_str(&text)
            .with_context(|| format!("job file {} is not valid", path.display()))?;
        request.source = JobSource::Cli;
        return Ok(request);
    }
    let config = Config::load()?;
    let mut spec = build_params(&args.params, &config)?;
    spec.model = args.params.model.clone().unwrap_or_default();
    apply_family_recommendation(&mut spec, &args.params, &config);
    spec.validate()?;
    Ok(SubmitRequest {
        spec,
        style: None,
        priority: wire_priority(args.priority),
        count: args.count,
        gpu: args.gpu.clone(),
        source: JobSource::Cli,
    })
}

/// `typed`: the memory-mode flags given on the command line (see `memory_args`).
pub fn run_submit(args: SubmitArgs, typed: &[&str]) -> Result<ExitCode> {
    // Memory modes belong to the workers (config.yaml's `memory:` section), not to a job:
    // say so rather than accept a flag that would change nothing.
    let given = typed;
    if !given.is_empty() {
        anyhow::bail!(
            "{} applies to `imagelab generate` only; the daemon's workers take their memory modes from the memory: section of config.yaml",
            given.join(", ")
        );
    }
    let request = request_from_args(&args)?;
    let response = client()?.submit_batch(&SubmitBatch {
        jobs: with_fresh_prompts(&request)?,
    })?;
    for warning in &response.warnings {
        eprintln!("warning: {warning}");
    }
    // `--json` (shared with generate) prints {"ids":[…]} instead of one id per line.
    if args.params.json {
        println!(
            "{}",
            serde_json::json!({ "ids": response.ids, "warnings": response.warnings })
        );
    } else {
        for id in &response.ids {
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The submissions for `request`: a prompt with template syntax (`{a|b}`, `__colors__`)
/// becomes one job per image of `--count`, each drawn afresh with the themes folder's
/// wildcards (as dynamicprompts does for A1111's batch count).
fn with_fresh_prompts(request: &SubmitRequest) -> Result<Vec<SubmitRequest>> {
    let wildcards_dir = Config::load()?.folders().wildcards();
    let expand = || -> Result<Vec<SubmitRequest>, imagelab_prompts::TemplateError> {
        if !imagelab_prompts::is_template(&request.spec.prompt)? {
            return Ok(vec![request.clone()]);
        }
        let wildcards = imagelab_prompts::Wildcards::load_dir(&wildcards_dir)?;
        imagelab_prompts::expand_count(request, &wildcards, rand::random())
    };
    expand().context("the prompt's template")
}

fn one_line(job: &JobView) -> String {
    let prompt: String = job.spec.prompt.chars().take(48).collect();
    format!(
        "{:>6}  {:<9}  {:<11}  {:<20}  {prompt}",
        job.id,
        job.state,
        format!("{:?}", job.priority).to_lowercase(),
        job.spec.model
    )
}

pub fn run_jobs(args: JobsArgs) -> Result<ExitCode> {
    let jobs = client()?.list(&ListQuery {
        state: args.state.clone(),
        limit: args.limit,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        println!(
            "{:>6}  {:<9}  {:<11}  {:<20}  prompt",
            "id", "state", "priority", "model"
        );
        for job in &jobs {
            println!("{}", one_line(job));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_job(args: JobArgs) -> Result<ExitCode> {
    if args.log {
        return print_job_log(args.id, args.json);
    }
    let job = client()?.get(args.id)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        println!("{}", one_line(&job));
        println!(
            "seed(s): {:?}, attempts {}/{}",
            job.seeds, job.attempts, job.max_attempts
        );
        if job.interruptions > 0 {
            println!(
                "interrupted {} time{} by a daemon stop or crash (restarted each time; no attempt used)",
                job.interruptions,
                if job.interruptions == 1 { "" } else { "s" }
            );
        }
        if let Some(error) = &job.error {
            println!("error: {error}");
        }
        for output in &job.outputs {
            println!("output: {output}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_job_log(id: u64, json: bool) -> Result<ExitCode> {
    let log = client()?.job_log(id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&log)?);
        return Ok(ExitCode::SUCCESS);
    }
    if log.lines.is_empty() {
        eprintln!("job {id}: no log lines (the log files may have been removed)");
    }
    for line in &log.lines {
        println!("{:<6} {}", line.source, line.text);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_cancel(args: CancelArgs) -> Result<ExitCode> {
    let job = client()?.cancel(args.id)?;
    println!("{}", one_line(&job));
    Ok(ExitCode::SUCCESS)
}

pub fn run_queue(args: QueueArgs) -> Result<ExitCode> {
    let client = client()?;
    let status = match args.action {
        QueueAction::Pause => client.pause()?,
        QueueAction::Resume => client.resume()?,
        QueueAction::Status => client.status()?,
        QueueAction::Clear => {
            let cleared = client.clear_finished()?;
            println!("removed {} finished jobs", cleared.removed);
            client.status()?
        }
    };
    println!("queue {}", if status.paused { "paused" } else { "running" });
    for (state, count) in &status.counts {
        println!("  {state:<10} {count}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct FavArgs {
    /// A job id, or an image (a file name in output/, or a path to one there).
    pub target: String,
    /// A 1–5 rating beside the star.
    #[arg(long)]
    pub rating: Option<u8>,
}

#[derive(Args, Debug)]
pub struct FavsArgs {
    #[arg(long)]
    pub json: bool,
}

/// A job id when the target is a number, else the image's name inside output/.
fn favorite_request(
    target: &str,
    rating: Option<u8>,
) -> Result<imagelab_core::api::FavoriteRequest> {
    if let Ok(job) = target.parse::<u64>() {
        return Ok(imagelab_core::api::FavoriteRequest {
            job: Some(job),
            image: None,
            rating,
        });
    }
    let output = Config::load()?.folders().output;
    let path = std::path::Path::new(target);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    // A path into output/ becomes its name there; a bare name is taken as one already.
    let name = match (absolute.canonicalize(), output.canonicalize()) {
        (Ok(file), Ok(dir)) if file.starts_with(&dir) => {
            file.strip_prefix(&dir)?.display().to_string()
        }
        _ => target.to_string(),
    };
    Ok(imagelab_core::api::FavoriteRequest {
        job: None,
        image: Some(name),
        rating,
    })
}

pub fn run_fav(args: FavArgs) -> Result<ExitCode> {
    let favorite = client()?.favorite(&favorite_request(&args.target, args.rating)?)?;
    let what = favorite
        .job
        .map(|j| format!("job {j}"))
        .or(favorite.image)
        .unwrap_or_default();
    match favorite.rating {
        Some(r) => println!("starred {what} ({r}/5)"),
        None => println!("starred {what}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_unfav(args: FavArgs) -> Result<ExitCode> {
    let answer = client()?.unfavorite(&favorite_request(&args.target, None)?)?;
    let removed = answer["removed"].as_bool().unwrap_or(false);
    println!(
        "{}",
        if removed {
            "unstarred"
        } else {
            "was not starred"
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_favs(args: FavsArgs) -> Result<ExitCode> {
    let favorites = client()?.favorites()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&favorites)?);
    } else {
        for f in &favorites {
            let what = f
                .job
                .map(|j| format!("job {j}"))
                .or(f.image.clone())
                .unwrap_or_default();
            let rating = f.rating.map(|r| format!("  {r}/5")).unwrap_or_default();
            println!("{what}{rating}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
