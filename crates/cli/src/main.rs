//! The `imagelab` command line. Today: `generate` (the engine in-process, no daemon),
//! `gpus` / `gpu-pick`, and `bench`.
//! Every flag of `generate` can also come from an `IMAGELAB_*` environment variable, which
//! is the headless mode for cron jobs and containers.

mod bench;
mod generate;
mod gpus;
mod logging;

use clap::{Parser, Subcommand};
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
    /// Generate images now, in this process (no daemon needed).
    Generate(Box<generate::GenerateArgs>),
    /// List the GPUs: memory, utilization, temperature, power and their processes.
    Gpus(gpus::GpusArgs),
    /// Measure load, text encoding, UNet step, denoise, VAE decode and end-to-end speed on
    /// random-weight SDXL and SD 1.5 models (nothing downloaded; `--size small` for CI).
    Bench(bench::BenchArgs),
    /// Print the indices of idle GPUs (for CUDA_VISIBLE_DEVICES); exit 1 if too few, 2 without NVML.
    GpuPick(gpus::PickArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args),
        Command::Gpus(args) => gpus::run_gpus(args),
        Command::GpuPick(args) => gpus::run_pick(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            log::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
