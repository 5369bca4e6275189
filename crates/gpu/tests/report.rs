//! `imagelab gpus`: the JSON shape scripts rely on and the human table.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use imagelab_gpu::{
    gpus_report, FakeClock, GpuError, IdlePolicyConfig, ScriptedProbe, EXIT_NVML_UNAVAILABLE,
};
use serde_json::json;

fn probe() -> ScriptedProbe {
    ScriptedProbe::new(FakeClock::new())
        .gpu(0, "GPU-aaaa", "NVIDIA H200", 143_771)
        .gpu(1, "GPU-bbbb", "NVIDIA H200", 143_771)
        .at(Duration::ZERO, 0, |g| {
            g.process_as(100, 874, "alice")
                .process_as(200, 1_000, "imagelab")
                .util(100)
                .temperature(52)
                .power(301.4)
        })
}

#[test]
fn json_shape() {
    let config = IdlePolicyConfig {
        gpus: vec!["GPU-aaaa".into()],
        ..IdlePolicyConfig::default()
    };
    let report = gpus_report(&mut probe(), &config, &[200].into()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(
        value["gpus"][0],
        json!({
            "index": 0,
            "uuid": "GPU-aaaa",
            "name": "NVIDIA H200",
            "selected": true,
            "memory": {"total_mib": 143771, "used_mib": 1874, "free_mib": 141897},
            "utilization_pct": 100,
            "temperature_c": 52,
            "power_w": 301.4,
            "processes": [
                {"pid": 100, "user": "alice", "used_mib": 874, "ours": false},
                {"pid": 200, "user": "imagelab", "used_mib": 1000, "ours": true}
            ]
        })
    );
    assert_eq!(value["gpus"][1]["selected"], json!(false));
    assert_eq!(value["gpus"][1]["processes"], json!([]));
}

#[test]
fn table_lists_gpus_and_processes() {
    let report = gpus_report(&mut probe(), &IdlePolicyConfig::default(), &BTreeSet::new()).unwrap();
    let table = report.to_table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("IDX  UUID"), "{table}");
    assert!(
        lines[1].starts_with("0    GPU-aaaa  NVIDIA H200  1874 / 143771 MiB"),
        "{table}"
    );
    assert!(
        lines[1].contains("100%") && lines[1].contains("52°C") && lines[1].contains("301 W"),
        "{table}"
    );
    assert!(
        lines[2].contains("pid 100") && lines[2].contains("alice") && lines[2].contains("874 MiB"),
        "{table}"
    );
    assert!(!lines[2].contains("(ours)"));
    assert!(lines[4].starts_with("1    GPU-bbbb"), "{table}");
    assert_eq!(lines.len(), 5);
}

#[test]
fn no_gpus_and_no_nvml() {
    let empty = gpus_report(
        &mut ScriptedProbe::new(FakeClock::new()),
        &IdlePolicyConfig::default(),
        &BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(empty.to_table(), "No GPUs found.\n");
    let err = gpus_report(
        &mut ScriptedProbe::unavailable("libnvidia-ml.so.1: cannot open shared object file"),
        &IdlePolicyConfig::default(),
        &BTreeSet::new(),
    )
    .unwrap_err();
    assert!(matches!(err, GpuError::NvmlUnavailable { .. }));
    assert_eq!(err.exit_code(), EXIT_NVML_UNAVAILABLE);
    assert!(
        err.to_string().contains("cannot open shared object file"),
        "{err}"
    );
}
