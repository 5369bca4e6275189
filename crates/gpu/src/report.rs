//! `imagelab gpus`: one look at every GPU, as a human table or as JSON.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::GpuError;
use crate::policy::{IdlePolicy, IdlePolicyConfig};
use crate::sample::{GpuProbe, GpuSample};

/// What `imagelab gpus --json` prints: `{"gpus": [...]}`, an object so fields can be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpusReport {
    pub gpus: Vec<GpuStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuStatus {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// Whether the config lets imagelab use this GPU.
    pub selected: bool,
    pub memory: MemoryStatus,
    pub utilization_pct: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub processes: Vec<ProcessStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStatus {
    pub total_mib: u64,
    pub used_mib: u64,
    pub free_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub pid: u32,
    pub user: String,
    pub used_mib: Option<u64>,
    /// One of our workers (its PID is in the set the caller passed).
    pub ours: bool,
}

/// Takes one snapshot and describes it; `own_pids` are our workers' PIDs (empty outside the daemon).
pub fn gpus_report(
    probe: &mut dyn GpuProbe,
    config: &IdlePolicyConfig,
    own_pids: &BTreeSet<u32>,
) -> Result<GpusReport, GpuError> {
    let policy = IdlePolicy::new(config.clone())?;
    let samples = probe.snapshot()?;
    let gpus = samples
        .iter()
        .map(|gpu| status_of(gpu, policy.is_selected(gpu), own_pids))
        .collect();
    Ok(GpusReport { gpus })
}

fn status_of(gpu: &GpuSample, selected: bool, own_pids: &BTreeSet<u32>) -> GpuStatus {
    GpuStatus {
        index: gpu.index,
        uuid: gpu.uuid.clone(),
        name: gpu.name.clone(),
        selected,
        memory: MemoryStatus {
            total_mib: gpu.memory_total_mib,
            used_mib: gpu.memory_used_mib,
            free_mib: gpu.memory_free_mib,
        },
        utilization_pct: gpu.utilization_pct,
        temperature_c: gpu.temperature_c,
        power_w: gpu.power_w,
        processes: gpu
            .processes
            .iter()
            .map(|p| ProcessStatus {
                pid: p.pid,
                user: p.user.clone(),
                used_mib: p.used_mib,
                ours: own_pids.contains(&p.pid),
            })
            .collect(),
    }
}

impl GpusReport {
    /// Pretty JSON; serializing these plain structs cannot fail, but a failure would still
    /// be reported rather than panicking.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// An aligned table, one row per GPU with its processes indented beneath.
    pub fn to_table(&self) -> String {
        if self.gpus.is_empty() {
            return "No GPUs found.\n".to_string();
        }
        let header = [
            "IDX",
            "UUID",
            "NAME",
            "MEMORY USED/TOTAL",
            "FREE",
            "UTIL",
            "TEMP",
            "POWER",
            "USE",
        ];
        let rows: Vec<[String; 9]> = self.gpus.iter().map(row_of).collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        push_row(&mut out, &header.map(String::from), &widths);
        for (gpu, row) in self.gpus.iter().zip(&rows) {
            push_row(&mut out, row, &widths);
            for p in &gpu.processes {
                let memory = p
                    .used_mib
                    .map_or("? MiB".to_string(), |m| format!("{m} MiB"));
                let ours = if p.ours { "  (ours)" } else { "" };
                out.push_str(&format!(
                    "      pid {:<8} {:<12} {memory}{ours}\n",
                    p.pid, p.user
                ));
            }
        }
        out
    }
}

impl fmt::Display for GpusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table())
    }
}

fn row_of(gpu: &GpuStatus) -> [String; 9] {
    let unknown = || "-".to_string();
    [
        gpu.index.to_string(),
        gpu.uuid.clone(),
        gpu.name.clone(),
        format!("{} / {} MiB", gpu.memory.used_mib, gpu.memory.total_mib),
        format!("{} MiB", gpu.memory.free_mib),
        gpu.utilization_pct
            .map_or_else(unknown, |u| format!("{u}%")),
        gpu.temperature_c.map_or_else(unknown, |t| format!("{t}°C")),
        gpu.power_w.map_or_else(unknown, |w| format!("{w:.0} W")),
        if gpu.selected { "yes" } else { "no" }.to_string(),
    ]
}

fn push_row(out: &mut String, cells: &[String; 9], widths: &[usize; 9]) {
    let line: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect();
    out.push_str(line.join("  ").trim_end());
    out.push('\n');
}
