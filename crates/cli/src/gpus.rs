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
    let local = local_gpus(&args);
    // A daemon with the Slurm backend also knows the cluster's nodes (a login node has no
    // GPU of its own, so that may be all there is to show).
    let nodes = crate::client_cmds::client()
        .and_then(|c| Ok(c.gpus()?))
        .map(|status| status.slurm_nodes)
        .unwrap_or_default();
    if !nodes.is_empty() && !args.json {
        print!("{}", slurm_table(&nodes));
    }
    match local {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(_) if !nodes.is_empty() => Ok(ExitCode::SUCCESS),
        Err(code) => Ok(exit(code)),
    }
}

/// The local GPUs through NVML, printed; the exit code when they cannot be read.
fn local_gpus(args: &GpusArgs) -> std::result::Result<(), i32> {
    let fail = |e: imagelab_gpu::GpuError| {
        eprintln!("error: {e}");
        e.exit_code()
    };
    let mut probe = NvmlProbe::new().map_err(fail)?;
    let policy = policy().map_err(|e| {
        eprintln!("error: {e:#}");
        1
    })?;
    let report = gpus_report(&mut probe, &policy, &BTreeSet::new()).map_err(fail)?;
    if args.json {
        match report.to_json() {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(1);
            }
        }
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// The cluster's nodes as Slurm reports them.
fn slurm_table(nodes: &[imagelab_core::events::SlurmNodeView]) -> String {
    let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    let mut out = String::from("slurm nodes (through the daemon):\n");
    for n in nodes {
        out.push_str(&format!(
            "  {:<width$}  {:<6}  gres {}  used {}\n",
            n.name, n.state, n.gres, n.gres_used
        ));
    }
    out
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
