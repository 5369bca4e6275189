//! The `imagelab` command line: `generate` (the engine in-process, no daemon), `bench`,
//! `gpus` / `gpu-pick`, `prompts` / `profiles` (themes, templates and style profiles) and
//! `analyze` (favorites analytics from `jobs.log`). Every flag of `generate` can also come
//! from an `IMAGELAB_*` environment variable, which is the headless mode for cron jobs and
//! containers.

mod analyze;
mod bench;
mod client_cmds;
mod daemon_cmd;
mod generate;
mod gpus;
mod logging;
mod memory_args;
mod memory_need;
mod models;
mod night;
mod prompts;
mod watch;
mod worker;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "imagelab",
    version,
    about = "Local Stable Diffusion on your own NVIDIA GPUs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (HTTP API on 127.0.0.1 with the durable queue), or `daemon status`.
    Daemon(client_cmds::DaemonArgs),
    /// The engine as a daemon's child process (JSON lines on stdin/stdout); not for people.
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
    /// Queue jobs on the daemon: the same flags as `generate`, or --file JOB.yaml.
    Submit(client_cmds::SubmitArgs),
    /// List the daemon's jobs.
    Jobs(client_cmds::JobsArgs),
    /// Overnight themed runs on the daemon: `night --theme A --until 07:00`, `night status`,
    /// `night stop`.
    Night(night::NightArgs),
    /// Show one job.
    Job(client_cmds::JobArgs),
    /// Cancel a queued or running job.
    Cancel(client_cmds::CancelArgs),
    /// Move a queued job to another priority (interactive, normal, background).
    Priority(client_cmds::PriorityArgs),
    /// Pause or resume the queue, show its counts, or clear its finished jobs.
    Queue(client_cmds::QueueArgs),
    /// Star a job's images or one image (optionally rated 1–5).
    Fav(client_cmds::FavArgs),
    /// Remove a star.
    Unfav(client_cmds::FavArgs),
    /// List the starred jobs and images.
    Favs(client_cmds::FavsArgs),
    /// Follow the daemon live: a progress bar per worker and job changes (--json: events).
    Watch(watch::WatchArgs),
    /// List the daemon's checkpoints (with their family), VAEs and text encoders.
    Models(models::ModelsArgs),
    /// Generate images now, in this process (no daemon needed).
    Generate(Box<generate::GenerateArgs>),
    /// List the GPUs: memory, utilization, temperature, power and their processes.
    Gpus(gpus::GpusArgs),
    /// Measure load, text encoding, UNet step, denoise, VAE decode and end-to-end speed on
    /// random-weight SDXL and SD 1.5 models (nothing downloaded; `--size small` for CI).
    Bench(bench::BenchArgs),
    /// Print the indices of idle GPUs (for CUDA_VISIBLE_DEVICES); exit 1 if too few, 2 without NVML.
    GpuPick(gpus::PickArgs),
    /// Print prompts from a theme or a template (random draws, or every combination with --all).
    Prompts(prompts::PromptsArgs),
    /// List the style profiles (mature ones only with --mature), or import A1111/Fooocus styles.
    Profiles(prompts::ProfilesArgs),
    /// Favorite rates by model, profile and settings from jobs.log and PNG folders; reports
    /// (HTML, Markdown, JSON) and a theme of the winners.
    Analyze(analyze::AnalyzeArgs),
}

/// The daemon and its workers talk through pipes and sockets whose far end may die: they
/// keep Rust's default (SIGPIPE ignored, so a write fails and is handled).
fn runs_a_service(command: &Command) -> bool {
    match command {
        Command::Daemon(args) => args.action.is_none(),
        Command::Worker(_) => true,
        _ => false,
    }
}

/// Every other command ends quietly when its output is closed (`imagelab jobs | head`), as
/// `ls` and `git` do: the default SIGPIPE action, instead of `println!` panicking on EPIPE.
fn quiet_on_closed_output() {
    // SAFETY: resetting a signal to its default action, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if !runs_a_service(&cli.command) {
        quiet_on_closed_output();
    }
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args),
        Command::Daemon(args) => client_cmds::run_daemon(args),
        Command::Submit(args) => {
            // Only flags typed on this command line are refused, not the IMAGELAB_*
            // variables a headless setup exports for `generate`.
            let typed = matches
                .subcommand_matches("submit")
                .map(memory_args::typed_on_command_line)
                .unwrap_or_default();
            client_cmds::run_submit(args, &typed)
        }
        Command::Worker(args) => worker::run(args),
        Command::Jobs(args) => client_cmds::run_jobs(args),
        Command::Night(args) => night::run(args),
        Command::Job(args) => client_cmds::run_job(args),
        Command::Cancel(args) => client_cmds::run_cancel(args),
        Command::Queue(args) => client_cmds::run_queue(args),
        Command::Priority(args) => client_cmds::run_priority(args),
        Command::Fav(args) => client_cmds::run_fav(args),
        Command::Unfav(args) => client_cmds::run_unfav(args),
        Command::Favs(args) => client_cmds::run_favs(args),
        Command::Watch(args) => watch::run(args),
        Command::Models(args) => models::run(args),
        Command::Gpus(args) => gpus::run_gpus(args),
        Command::GpuPick(args) => gpus::run_pick(args),
        Command::Prompts(args) => prompts::run_prompts(args),
        Command::Profiles(args) => prompts::run_profiles(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
