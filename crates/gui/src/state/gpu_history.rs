//! The GPU history page as data: for each GPU, its utilization, memory and temperature over
//! the window as lines in a unit square, the stretches when our jobs ran and when the idle
//! policy held our jobs back (with why), and a sentence that sums it up; and the Slurm
//! cluster's nodes, one line each, when the daemon hands jobs to Slurm.

use imagelab_core::events::{GpuHistory, GpuHistoryView};

/// Temperatures are drawn against this ceiling.
pub const MAX_TEMPERATURE_C: f64 = 100.0;

/// A stretch of the window, as shares of its width.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    /// Why the policy held our jobs back (blocked bands only).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuGraph {
    /// "GPU 0 · NVIDIA H200".
    pub title: String,
    /// (x, y) in [0, 1]²: time across the window, the value up.
    pub utilization: Vec<(f64, f64)>,
    pub memory: Vec<(f64, f64)>,
    pub temperature: Vec<(f64, f64)>,
    pub ours: Vec<Band>,
    pub blocked: Vec<Band>,
    pub summary: String,
}

/// The graphs at `now_ms`.
pub fn gpu_graphs(view: &GpuHistoryView, now_ms: u64) -> Vec<GpuGraph> {
    let window = (view.window_secs.max(1) * 1000) as f64;
    view.gpus.iter().map(|g| graph(g, now_ms, window)).collect()
}

fn graph(gpu: &GpuHistory, now_ms: u64, window: f64) -> GpuGraph {
    let start = now_ms as f64 - window;
    let x = |at: u64| ((at as f64 - start) / window).clamp(0.0, 1.0);
    let points = &gpu.points;
    let line = |value: &dyn Fn(usize) -> Option<f64>| -> Vec<(f64, f64)> {
        (0..points.len())
            .filter_map(|i| value(i).map(|v| (x(points[i].at_ms), v.clamp(0.0, 1.0))))
            .collect()
    };
    let total = gpu.memory_total_mib.max(1) as f64;
    let utilization = line(&|i| points[i].utilization_pct.map(|u| u as f64 / 100.0));
    let memory = line(&|i| Some(points[i].memory_used_mib as f64 / total));
    let temperature = line(&|i| {
        points[i]
            .temperature_c
            .map(|t| t as f64 / MAX_TEMPERATURE_C)
    });
    let ours = bands(gpu, &x, |p| (!p.our_jobs.is_empty()).then_some(None));
    let blocked = bands(gpu, &x, |p| {
        (!p.idle && p.our_jobs.is_empty()).then(|| p.reason.clone())
    });
    GpuGraph {
        title: format!("GPU {} · {}", gpu.index, gpu.name),
        summary: summary(gpu, &ours, &blocked),
        utilization,
        memory,
        temperature,
        ours,
        blocked,
    }
}

/// Runs of consecutive samples `pick` marks, each ending where the next sample begins.
fn bands(
    gpu: &GpuHistory,
    x: &dyn Fn(u64) -> f64,
    pick: impl Fn(&imagelab_core::events::GpuHistoryPoint) -> Option<Option<String>>,
) -> Vec<Band> {
    let points = &gpu.points;
    let mut out: Vec<Band> = Vec::new();
    let mut open: Option<Band> = None;
    for (i, p) in points.iter().enumerate() {
        let end = points.get(i + 1).map_or(x(p.at_ms), |n| x(n.at_ms));
        match (pick(p), open.as_mut()) {
            (Some(_), Some(band)) => band.to = end,
            (Some(reason), None) => {
                open = Some(Band {
                    from: x(p.at_ms),
                    to: end,
                    reason,
                })
            }
            (None, _) => out.extend(open.take()),
        }
    }
    out.extend(open);
    out
}

fn share(bands: &[Band]) -> f64 {
    bands.iter().map(|b| b.to - b.from).sum::<f64>() * 100.0
}

fn summary(gpu: &GpuHistory, ours: &[Band], blocked: &[Band]) -> String {
    let Some(last) = gpu.points.last() else {
        return format!("GPU {}: no samples yet", gpu.index);
    };
    let mut now = vec![match last.utilization_pct {
        Some(u) => format!("{u}% busy"),
        None => "utilization unknown".to_string(),
    }];
    now.push(format!(
        "{:.1} of {:.1} GiB",
        last.memory_used_mib as f64 / 1024.0,
        gpu.memory_total_mib as f64 / 1024.0
    ));
    if let Some(t) = last.temperature_c {
        now.push(format!("{t} °C"));
    }
    let mut text = format!(
        "GPU {} now {} · our jobs ran {:.0}% of the window",
        gpu.index,
        now.join(", "),
        share(ours)
    );
    if !blocked.is_empty() {
        let why = blocked
            .iter()
            .rev()
            .find_map(|b| b.reason.clone())
            .unwrap_or_else(|| "not idle".into());
        text.push_str(&format!(" · held back {:.0}%: {why}", share(blocked)));
    }
    text
}

/// One row per Slurm node: its name, and its state with its GPUs, configured and in use.
pub fn slurm_node_rows(nodes: &[imagelab_core::events::SlurmNodeView]) -> Vec<(String, String)> {
    nodes
        .iter()
        .map(|n| {
            let used = match n.gres_used.as_str() {
                "" | "(null)" => "none".to_string(),
                used => used.to_string(),
            };
            let detail = format!("{} · GPUs {} · in use {used}", n.state, n.gres);
            (n.name.clone(), detail)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_core::events::GpuHistoryPoint;

    fn point(second: u64, util: u32, jobs: &[u64], reason: Option<&str>) -> GpuHistoryPoint {
        GpuHistoryPoint {
            at_ms: second * 1000,
            utilization_pct: Some(util),
            memory_used_mib: 12_288,
            temperature_c: Some(50),
            idle: reason.is_none() && jobs.is_empty(),
            reason: reason.map(String::from),
            our_jobs: jobs.to_vec(),
        }
    }

    fn view(points: Vec<GpuHistoryPoint>) -> GpuHistoryView {
        GpuHistoryView {
            window_secs: 100,
            nvml_error: None,
            gpus: vec![GpuHistory {
                index: 1,
                uuid: "GPU-b".into(),
                name: "NVIDIA H200".into(),
                memory_total_mib: 24_576,
                points,
            }],
        }
    }

    #[test]
    fn lines_bands_and_the_summary_follow_the_samples() {
        let stranger = "another process, PID 4711 of user alice, uses 18 GiB on GPU 1";
        // 0–40 s idle, 40–60 s someone else, 60–90 s our job 7, then idle to 100 s.
        let mut points = Vec::new();
        for s in (0..=100).step_by(10) {
            let (util, jobs, reason): (u32, &[u64], Option<&str>) = match s {
                40 | 50 => (90, &[], Some(stranger)),
                60..=80 => (99, &[7], Some("leased to job 7")),
                _ => (0, &[], None),
            };
            points.push(point(s, util, jobs, reason));
        }
        let graphs = gpu_graphs(&view(points), 100_000);
        let g = &graphs[0];
        assert_eq!(g.title, "GPU 1 · NVIDIA H200");
        assert_eq!(g.utilization.len(), 11);
        assert_eq!(g.utilization[0], (0.0, 0.0));
        assert_eq!(g.utilization[4], (0.4, 0.9));
        assert!((g.memory[0].1 - 0.5).abs() < 1e-9 && (g.temperature[0].1 - 0.5).abs() < 1e-9);
        assert_eq!(g.ours.len(), 1);
        assert!((g.ours[0].from - 0.6).abs() < 1e-9 && (g.ours[0].to - 0.9).abs() < 1e-9);
        assert_eq!(g.blocked.len(), 1);
        assert!((g.blocked[0].from - 0.4).abs() < 1e-9 && (g.blocked[0].to - 0.6).abs() < 1e-9);
        assert_eq!(g.blocked[0].reason.as_deref(), Some(stranger));
        assert_eq!(
            g.summary,
            format!("GPU 1 now 0% busy, 12.0 of 24.0 GiB, 50 °C · our jobs ran 30% of the window · held back 20%: {stranger}")
        );
    }

    #[test]
    fn old_samples_are_pinned_to_the_edge_and_no_samples_say_so() {
        let graphs = gpu_graphs(&view(vec![point(0, 10, &[], None)]), 500_000);
        assert_eq!(graphs[0].utilization, [(0.0, 0.1)]);
        assert!(graphs[0].ours.is_empty() && graphs[0].blocked.is_empty());
        assert_eq!(
            gpu_graphs(&view(vec![]), 0)[0].summary,
            "GPU 1: no samples yet"
        );
    }

    #[test]
    fn slurm_nodes_are_one_row_each() {
        let node = |name: &str, used: &str| imagelab_core::events::SlurmNodeView {
            name: name.into(),
            state: "mix".into(),
            gres: "gpu:2".into(),
            gres_used: used.into(),
        };
        assert_eq!(
            slurm_node_rows(&[node("n1", "gpu:1(IDX:0)"), node("n2", "")]),
            [
                (
                    "n1".to_string(),
                    "mix · GPUs gpu:2 · in use gpu:1(IDX:0)".to_string()
                ),
                (
                    "n2".to_string(),
                    "mix · GPUs gpu:2 · in use none".to_string()
                )
            ]
        );
    }
}
