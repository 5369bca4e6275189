//! `imagelab generate` with a tiny PixArt-Σ in ComfyUI's layout (the transformer in
//! models/checkpoints, T5 and its spiece.model in models/clip, the VAE in models/vae):
//! the family's recommended steps and CFG when none are chosen, the metadata, and the
//! missing T5 named; `imagelab submit` applying the same recommendation, and a daemon's
//! CPU worker running a PixArt-Σ job to its image.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::{imagelab, start_daemon, stdout};
use common::{pixart_fixtures, Sandbox};
use std::process::Output;

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let comfy = pixart_fixtures().join("comfy");
    for (from, to) in [
        (
            "pixart.safetensors",
            "models/checkpoints/pixart.safetensors",
        ),
        ("clip/t5.safetensors", "models/clip/t5.safetensors"),
        ("clip/spiece.model", "models/clip/spiece.model"),
        ("vae.safetensors", "models/vae/pixart_vae.safetensors"),
    ] {
        std::fs::copy(comfy.join(from), sb.path(to)).unwrap();
    }
    sb
}

fn generate(sb: &Sandbox, extra: &[&str]) -> Output {
    sb.generate()
        .args(["--device", "cpu", "--model", "pixart", "--width", "96"])
        .args(["--height", "64", "--seed", "5", "--vae", "pixart_vae"])
        .args(["--prompt", "A Lighthouse at Dusk"])
        .args(extra)
        .output()
        .unwrap()
}

fn parameters_of(path: &std::path::Path) -> (String, serde_json::Value) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let text = |key: &str| {
        info.uncompressed_latin1_text
            .iter()
            .find(|t| t.keyword == key)
            .map(|t| t.text.clone())
            .or_else(|| {
                info.utf8_text
                    .iter()
                    .find(|t| t.keyword == key)
                    .map(|t| t.get_text().unwrap())
            })
            .unwrap()
    };
    let spec = serde_json::from_str(&text("imagelab")).unwrap();
    (text("parameters"), spec)
}

#[test]
fn generates_with_the_recommended_settings_unless_others_are_chosen() {
    let sb = sandbox();
    let out = generate(&sb, &["--clip", "t5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("pixart-sigma: its recommended 20 steps, CFG 4.5"),
        "{stderr}"
    );
    let files = sb.outputs();
    assert_eq!(files.len(), 1);
    let (parameters, spec) = parameters_of(&files[0]);
    assert!(
        parameters.contains("Steps: 20, Sampler: Euler")
            && parameters.contains("CFG scale: 4.5")
            && parameters.contains("Size: 96x64"),
        "{parameters}"
    );
    assert!(
        parameters.starts_with("A Lighthouse at Dusk\n"),
        "{parameters}"
    );
    assert_eq!(spec["model"]["family"], "pixart_sigma");
    assert_eq!(spec["model"]["clip_name"], "t5");
    assert_eq!(spec["model"]["vae_name"], "pixart_vae");

    // Chosen settings win over the recommended ones.
    let out = generate(&sb, &["--clip", "t5", "--steps", "3", "--cfg", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("recommended"), "{stderr}");
    let files = sb.outputs();
    let (parameters, _) = parameters_of(&files[1]);
    assert!(
        parameters.contains("Steps: 3,") && parameters.contains("CFG scale: 2,"),
        "{parameters}"
    );
}

#[test]
fn a_transformer_without_its_t5_is_refused_naming_the_flag_and_writes_nothing() {
    let sb = sandbox();
    let out = generate(&sb, &["--steps", "2"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--clip") && stderr.contains("pixart.safetensors"),
        "{stderr}"
    );
    assert!(sb.outputs().is_empty());
    // A width PixArt's patches cannot tile is refused by name too.
    let out = generate(&sb, &["--clip", "t5", "--steps", "2", "--width", "72"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("width"),
        "{stderr}"
    );
    assert!(sb.outputs().is_empty());
}

#[test]
fn submit_gives_a_pixart_job_its_recommended_settings_unless_others_are_chosen() {
    let sb = sandbox();
    // No worker: the jobs wait in the queue, where their specs can be read back.
    let _daemon = start_daemon(&sb, &[]);
    let submit = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "submit",
            "--model",
            "pixart",
            "--clip",
            "t5",
            "--vae",
            "pixart_vae",
            "--prompt",
            "A Lighthouse",
            "--width",
            "96",
            "--height",
            "64",
        ];
        args.extend_from_slice(extra);
        let id = stdout(&imagelab(&sb, &args)).trim().to_string();
        let job = stdout(&imagelab(&sb, &["job", &id, "--json"]));
        serde_json::from_str(&job).unwrap()
    };
    let job = submit(&[]);
    assert_eq!(
        (job["spec"]["steps"].as_u64(), job["spec"]["cfg"].as_f64()),
        (Some(20), Some(4.5))
    );
    let job = submit(&["--steps", "6"]);
    assert_eq!(
        (job["spec"]["steps"].as_u64(), job["spec"]["cfg"].as_f64()),
        (Some(6), Some(4.5))
    );
}

#[test]
fn a_daemons_worker_runs_a_pixart_job_to_its_image() {
    let sb = sandbox();
    let _daemon = start_daemon(&sb, &["--worker", "cpu"]);
    let args = [
        "submit",
        "--model",
        "pixart",
        "--clip",
        "t5",
        "--vae",
        "pixart_vae",
        "--prompt",
        "A Lighthouse",
        "--width",
        "96",
        "--height",
        "64",
        "--steps",
        "3",
        "--seed",
        "4",
    ];
    let id = stdout(&imagelab(&sb, &args)).trim().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let job = loop {
        let job: serde_json::Value =
            serde_json::from_str(&stdout(&imagelab(&sb, &["job", &id, "--json"]))).unwrap();
        if job["state"] != "queued" && job["state"] != "leased" {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never finished: {job}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(job["state"], "done", "{job}");
    let name = job["outputs"][0].as_str().unwrap();
    let (parameters, spec) = parameters_of(&sb.path("output").join(name));
    assert_eq!(spec["model"]["family"], "pixart_sigma");
    assert!(
        parameters.contains("Steps: 3,") && parameters.contains("CFG scale: 4.5"),
        "{parameters}"
    );
}
