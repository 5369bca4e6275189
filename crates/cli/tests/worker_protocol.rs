//! `imagelab worker --device cpu` spoken to over its line protocol, as the daemon does:
//! progress with latent previews, load/unload answered by the models it holds, a cancel
//! that stops a running job with nothing written, and bad lines answered without dying.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::{fixtures, Sandbox};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn start(sb: &Sandbox) -> Worker {
        let mut child = sb
            .imagelab()
            .args(["worker", "--device", "cpu"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut worker = Worker {
            child,
            stdin,
            lines,
        };
        assert_eq!(worker.next()["event"], "ready");
        worker
    }

    fn send_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn send(&mut self, command: Value) {
        self.send_line(&command.to_string());
    }

    /// The next event line, decoded.
    fn next(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(180))
            .expect("the worker answered within 3 minutes");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
    }
}

fn sandbox_with_model() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::copy(
        fixtures().join("sd1.safetensors"),
        sb.path("models/checkpoints/tiny.safetensors"),
    )
    .unwrap();
    sb
}

fn generate(sb: &Sandbox, job: u64, steps: u32, preview_every: usize) -> Value {
    json!({
        "op": "generate",
        "job": job,
        "params": {"model": "tiny", "prompt": "a fox", "width": 64, "height": 64,
                   "steps": steps, "seed": 3},
        "output_dir": sb.path("output"),
        "stems": [format!("job{job}")],
        "preview_every": preview_every,
    })
}

/// The decoded size of a progress line's preview PNG.
fn preview_size(event: &Value) -> (u32, u32) {
    let preview = &event["preview"];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(preview["png_base64"].as_str().unwrap())
        .unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap()
        .info()
        .clone();
    assert_eq!(
        (info.width, info.height),
        (
            preview["width"].as_u64().unwrap() as u32,
            preview["height"].as_u64().unwrap() as u32
        ),
        "the preview's stated size is its PNG's"
    );
    (info.width, info.height)
}

#[test]
fn jobs_report_progress_with_previews_and_loads_report_models() {
    let sb = sandbox_with_model();
    let mut worker = Worker::start(&sb);

    worker.send(generate(&sb, 1, 3, 1));
    for step in 1..=3 {
        let event = worker.next();
        assert_eq!(event["event"], "progress", "{event}");
        assert_eq!(
            (event["done"].as_u64(), event["total"].as_u64()),
            (Some(step), Some(3))
        );
        // 64×64 pixels → an 8×8 latent.
        assert_eq!(preview_size(&event), (8, 8), "step {step}");
    }
    let done = worker.next();
    assert_eq!(done["event"], "done", "{done}");
    assert_eq!(done["outputs"], json!(["job1.png"]));
    assert!(sb.path("output/job1.png").exists());
    let models = worker.next();
    assert_eq!(models["event"], "models", "{models}");
    assert_eq!(models["loaded"], json!(["tiny.safetensors"]));

    // Every second step only, and none with preview_every 0.
    worker.send(generate(&sb, 2, 4, 2));
    let with_preview: Vec<bool> = (0..4)
        .map(|_| !worker.next()["preview"].is_null())
        .collect();
    assert_eq!(with_preview, [false, true, false, true]);
    assert_eq!(worker.next()["event"], "done");
    assert_eq!(worker.next()["event"], "models");
    worker.send(generate(&sb, 3, 2, 0));
    assert!(worker.next()["preview"].is_null());
    assert!(worker.next()["preview"].is_null());
    assert_eq!(worker.next()["event"], "done");
    assert_eq!(worker.next()["event"], "models");

    worker.send(json!({"op": "unload", "model": null}));
    let models = worker.next();
    assert_eq!(
        (&models["event"], &models["loaded"]),
        (&json!("models"), &json!([]))
    );
    worker.send(json!({"op": "load", "model": "tiny"}));
    let models = worker.next();
    assert_eq!(models["loaded"], json!(["tiny.safetensors"]), "{models}");
    assert!(!models["vram"].as_array().unwrap().is_empty(), "{models}");
    worker.send(json!({"op": "unload", "model": "tiny.safetensors"}));
    assert_eq!(worker.next()["loaded"], json!([]));
    worker.send(json!({"op": "load", "model": "missing"}));
    let failed = worker.next();
    assert_eq!(
        (&failed["event"], &failed["job"]),
        (&json!("failed"), &json!(0))
    );
}

#[test]
fn a_cancel_stops_the_running_job_and_bad_lines_do_not_stop_the_worker() {
    let sb = sandbox_with_model();
    let mut worker = Worker::start(&sb);

    // 1000 steps take seconds even on a fast CPU: the cancel lands mid-job.
    worker.send(generate(&sb, 5, 1000, 0));
    let first = worker.next();
    assert_eq!(first["event"], "progress", "{first}");
    worker.send(json!({"op": "cancel", "job": 5}));
    let mut last_step = first["done"].as_u64().unwrap();
    let ended = loop {
        let event = worker.next();
        if event["event"] != "progress" {
            break event;
        }
        last_step = event["done"].as_u64().unwrap();
    };
    assert_eq!(ended, json!({"event": "cancelled", "job": 5}));
    assert!(last_step < 1000, "stopped early, after step {last_step}");
    assert_eq!(worker.next()["event"], "models");
    assert!(
        sb.outputs().is_empty(),
        "nothing written: {:?}",
        sb.outputs()
    );

    worker.send_line("this is not json");
    let failed = worker.next();
    assert_eq!(failed["event"], "failed", "{failed}");
    assert_eq!(failed["job"], 0);
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("malformed request"));
    // A cancel of nothing running is ignored; the worker still serves.
    worker.send(json!({"op": "cancel", "job": 99}));
    worker.send(generate(&sb, 6, 1, 0));
    assert_eq!(worker.next()["event"], "progress");
    assert_eq!(worker.next()["event"], "done");
    assert_eq!(worker.next()["event"], "models");
    assert!(sb.path("output/job6.png").exists());
}

#[test]
fn a_split_worker_needs_cuda() {
    let sb = Sandbox::new();
    let out = sb
        .imagelab()
        .args(["worker", "--device", "cpu", "--split"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a CPU worker cannot split");
    assert!(err.contains("--split"), "{err}");
}

/// `(component, bytes)` of a `models` event's VRAM report.
fn vram(models: &Value) -> Vec<(String, u64)> {
    models["vram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["component"].as_str().unwrap().to_string(),
                c["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_worker_reads_the_memory_section_of_the_config_for_every_load() {
    let sb = sandbox_with_model();
    let config = sb.path("home/config.yaml");
    std::fs::write(&config, "memory: { offload: model }\n").unwrap();
    let mut worker = Worker::start(&sb);
    worker.send(json!({"op": "load", "model": "tiny"}));
    let models = worker.next();
    assert_eq!(models["loaded"], json!(["tiny.safetensors"]), "{models}");
    // Offloaded: the VAE and the text encoder hold nothing between jobs.
    for (component, bytes) in vram(&models) {
        assert_eq!(
            bytes > 0,
            component == "unet",
            "{component}: {bytes} in {models}"
        );
    }
    // The user edits the config (say after an out-of-memory error is gone): the next load
    // replaces the cached copy with one that keeps everything resident.
    std::fs::write(&config, "memory: { offload: none }\n").unwrap();
    worker.send(json!({"op": "load", "model": "tiny"}));
    let models = worker.next();
    assert_eq!(
        models["loaded"],
        json!(["tiny.safetensors"]),
        "one copy: {models}"
    );
    assert!(
        vram(&models).iter().all(|(_, bytes)| *bytes > 0),
        "{models}"
    );
    // A bad value is a failed load naming the file's field, and the worker goes on.
    std::fs::write(&config, "memory: { offload: disk }\n").unwrap();
    worker.send(json!({"op": "load", "model": "tiny"}));
    let failed = worker.next();
    assert_eq!(failed["event"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("disk"),
        "{failed}"
    );
}
