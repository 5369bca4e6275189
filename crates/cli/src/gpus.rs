//! `imagelab gpus` and `imagelab gpu-pick`: the GPU introspection commands, thin wrappers
//! over the `imagelab-gpu` crate (NVML behind a probe, the non-sharing idle policy).

use anyhow::Result;
use clap::Args;
use imagelab_core::config::Config;
use imagelab_gpu::{
    cuda_visible_devices, gpus_report, pick, IdlePolicyConfig, NvmlProbe, PickOptions, SystemClock,
};
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct GpusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PickArgs {
    /// How many idle GPUs are needed.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Wait until enough GPUs are idle instead of exiting 1.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 1).
    #[arg(long, requires = "wait")]
    pub timeout: Option<f64>,
    /// Only GPUs with at least this much free memory.
    #[arg(long, default_value_t = 0)]
    pub min_free_mib: u64,
}

/// The policy with the GPUs the user selected in the settings file.
fn policy() -> Result<IdlePolicyConfig> {
    Ok(crate::daemon_cmd::policy_config(&Config::load()?))
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

pub fn run_gpus(args: GpusArgs) -> Result<ExitCode> {
    let mut probe = match NvmlProbe::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit(e.exit_code()));
        }
    };
    match gpus_report(&mut probe, &policy()?, &BTreeSet::new()) {
        Ok(report) if args.json => println!("{}", report.to_json()?),
        Ok(report) => print!("{}", report.to_table()),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit(e.exit_code()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_pick(args: PickArgs) -> Result<ExitCode> {
    let mut probe = match NvmlProbe::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit(e.exit_code()));
        }
    };
    let options = PickOptions {
        count: args.count,
        wait: args.wait,
        timeout: args.timeout.map(Duration::from_secs_f64),
        min_free_mib: args.min_free_mib,
        own_pids: BTreeSet::new(),
    };
    match pick(
        &mut probe,
        &policy()?,
        &options,
        &mut SystemClock::default(),
    ) {
        Ok(picked) => {
            println!("{}", cuda_visible_devices(&picked));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(exit(e.exit_code()))
        }
    }
}
