//! Manual check on a real machine, before the CLI is wired: `cargo run -p imagelab-gpu --example
//! nvml_gpus [-- --json | -- --pick N]` prints what `imagelab gpus` / `gpu-pick` would, and exits
//! with their statuses (2 when NVML is unavailable).

use std::collections::BTreeSet;
use std::process::ExitCode;

use imagelab_gpu::{
    cuda_visible_devices, gpus_report, pick, IdlePolicyConfig, NvmlProbe, PickOptions, SystemClock,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = IdlePolicyConfig::default();
    let mut probe = match NvmlProbe::new() {
        Ok(probe) => probe,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit_byte(e.exit_code()));
        }
    };
    if args.first().map(String::as_str) == Some("--pick") {
        let count = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);
        let options = PickOptions {
            count,
            ..PickOptions::default()
        };
        return match pick(&mut probe, &config, &options, &mut SystemClock::new()) {
            Ok(picked) => {
                println!("{}", cuda_visible_devices(&picked));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(exit_byte(e.exit_code()))
            }
        };
    }
    match gpus_report(&mut probe, &config, &BTreeSet::new()) {
        Ok(report) if args.first().map(String::as_str) == Some("--json") => {
            match report.to_json() {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_byte(e.exit_code()))
        }
    }
}

fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}
