//! The queue page's worker cards as data: each worker's device or GPU pair, its state in
//! words (with the idle policy's reason when it is blocked), the job it runs, and what
//! each loaded checkpoint holds per component.

use super::vram::{component_label, human_bytes};
use imagelab_core::events::{GpuStatusView, WorkerState, WorkerStatus};

/// One worker as its card shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCard {
    pub name: String,
    /// "gpu0 · GPU 0 NVIDIA H200", "pair · GPU 0 + GPU 1", "cpu · CPU".
    pub title: String,
    /// "idle", "busy with job #12", "blocked: another process, PID 4711 …".
    pub state: String,
    /// The state's short name, for the card's style (`idle`, `busy`, `blocked`, `down`, …).
    pub kind: &'static str,
    /// The job it runs, whose preview the card shows.
    pub job: Option<u64>,
    /// One line per loaded checkpoint: "sdxl.safetensors: UNet (checkpoint) 4.78 GiB, VAE 160 MiB".
    pub models: Vec<String>,
}

/// A card per worker, in the daemon's order.
pub fn worker_cards(status: &GpuStatusView) -> Vec<WorkerCard> {
    status.workers.iter().map(|w| card(status, w)).collect()
}

fn card(status: &GpuStatusView, worker: &WorkerStatus) -> WorkerCard {
    let (state, job) = match &worker.state {
        WorkerState::Starting => ("starting".to_string(), None),
        WorkerState::Idle => ("idle".to_string(), None),
        WorkerState::Busy { job } => (format!("busy with job #{job}"), Some(*job)),
        WorkerState::Loading { model } => (format!("loading {model}"), None),
        WorkerState::Blocked { reason } => (format!("blocked: {reason}"), None),
        WorkerState::Down { error } => (format!("down: {error}"), None),
    };
    WorkerCard {
        name: worker.name.clone(),
        title: format!("{} · {}", worker.name, devices(status, worker)),
        state,
        kind: worker.state.name(),
        job,
        models: model_lines(worker),
    }
}

/// The worker's GPUs as NVML names them, or "CPU".
fn devices(status: &GpuStatusView, worker: &WorkerStatus) -> String {
    if worker.device == "cpu" {
        return "CPU".to_string();
    }
    let named: Vec<String> = worker
        .gpus
        .iter()
        .map(|uuid| match status.gpus.iter().find(|g| &g.uuid == uuid) {
            Some(g) if worker.gpus.len() == 1 => format!("GPU {} {}", g.index, g.name),
            Some(g) => format!("GPU {}", g.index),
            None => uuid.clone(),
        })
        .collect();
    named.join(" + ")
}

/// Each checkpoint in the worker's cache with its parts' sizes (and the device, when the
/// parts are on more than one).
fn model_lines(worker: &WorkerStatus) -> Vec<String> {
    let mut lines = Vec::new();
    for model in &worker.models_loaded {
        let parts: Vec<_> = worker.vram.iter().filter(|p| &p.model == model).collect();
        let spread = parts.iter().any(|p| p.device != parts[0].device);
        let described: Vec<String> = parts
            .iter()
            .map(|p| {
                let mut text =
                    format!("{} {}", component_label(&p.component), human_bytes(p.bytes));
                if spread {
                    text.push_str(&format!(" on {}", p.device));
                }
                text
            })
            .collect();
        lines.push(if described.is_empty() {
            model.clone()
        } else {
            format!("{model}: {}", described.join(", "))
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_core::events::{ComponentVram, GpuView};

    fn gpu(index: u32, uuid: &str) -> GpuView {
        GpuView {
            index,
            uuid: uuid.into(),
            name: "NVIDIA H200".into(),
            memory_total_mib: 143_771,
            memory_used_mib: 18_432,
            utilization_pct: 0,
            idle: false,
            reason: None,
        }
    }

    fn worker(name: &str, device: &str, gpus: &[&str], state: WorkerState) -> WorkerStatus {
        WorkerStatus {
            name: name.into(),
            device: device.into(),
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
            state,
            models_loaded: Vec::new(),
            vram: Vec::new(),
            pid: Some(10),
        }
    }

    fn part(model: &str, component: &str, device: &str, mib: u64) -> ComponentVram {
        ComponentVram {
            model: model.into(),
            component: component.into(),
            device: device.into(),
            bytes: mib << 20,
        }
    }

    #[test]
    fn cards_name_the_device_the_state_and_the_reason() {
        let reason = "another process, PID 4711 of user alice, uses 18 GiB on GPU 1";
        let mut busy = worker("gpu0", "cuda", &["GPU-a"], WorkerState::Busy { job: 12 });
        busy.models_loaded = vec!["sdxl.safetensors".into()];
        busy.vram = vec![
            part("sdxl.safetensors", "unet", "cuda:0", 4896),
            part("sdxl.safetensors", "vae", "cuda:0", 160),
        ];
        let status = GpuStatusView {
            nvml_error: None,
            gpus: vec![gpu(0, "GPU-a"), gpu(1, "GPU-b"), gpu(2, "GPU-c")],
            workers: vec![
                busy,
                worker(
                    "gpu1",
                    "cuda",
                    &["GPU-b"],
                    WorkerState::Blocked {
                        reason: reason.into(),
                    },
                ),
                worker("pair", "cuda", &["GPU-c", "GPU-x"], WorkerState::Idle),
                worker(
                    "cpu",
                    "cpu",
                    &["cpu"],
                    WorkerState::Down {
                        error: "no torch".into(),
                    },
                ),
            ],
            ..Default::default()
        };
        let cards = worker_cards(&status);
        assert_eq!(cards[0].title, "gpu0 · GPU 0 NVIDIA H200");
        assert_eq!(
            (cards[0].state.as_str(), cards[0].job),
            ("busy with job #12", Some(12))
        );
        assert_eq!(
            cards[0].models,
            ["sdxl.safetensors: UNet (checkpoint) 4.78 GiB, VAE 160 MiB"]
        );
        assert_eq!(cards[1].state, format!("blocked: {reason}"));
        assert_eq!((cards[1].kind, cards[1].job), ("blocked", None));
        // A pair names both GPUs; one NVML does not list keeps its UUID.
        assert_eq!(cards[2].title, "pair · GPU 2 + GPU-x");
        assert_eq!(cards[2].state, "idle");
        assert_eq!(cards[3].title, "cpu · CPU");
        assert_eq!(
            (cards[3].state.as_str(), cards[3].kind),
            ("down: no torch", "down")
        );
    }

    #[test]
    fn parts_on_several_devices_say_where() {
        let mut split = worker("pair", "cuda", &["GPU-a", "GPU-b"], WorkerState::Idle);
        split.models_loaded = vec!["a".into(), "b".into()];
        split.vram = vec![
            part("a", "unet", "cuda:0", 2048),
            part("a", "vae", "cuda:1", 160),
        ];
        let status = GpuStatusView {
            workers: vec![split],
            ..Default::default()
        };
        let cards = worker_cards(&status);
        // A cached model without VRAM figures is still listed.
        assert_eq!(
            cards[0].models,
            [
                "a: UNet (checkpoint) 2.00 GiB on cuda:0, VAE 160 MiB on cuda:1",
                "b"
            ]
        );
    }
}
