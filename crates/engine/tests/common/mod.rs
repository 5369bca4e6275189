//! Shared harness for parity tests: runs a Python reference script (diffusers,
//! transformers, k-diffusion from the project venv) that writes random weights, inputs and
//! expected outputs as safetensors, and compares tensors by relative error.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::Tensor;

/// The Python with torch/diffusers/transformers: `$IMAGELAB_PYTHON`, else the setup venv.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("IMAGELAB_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("IMAGELAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/imagelab")
        });
    cache.join("venv/bin/python")
}

/// Runs `tests/reference/<script>` with `args` after `--out <dir>`; panics with the
/// script's output when it fails, so a broken reference is loud, never a silent skip.
pub fn run_reference(script: &str, out_dir: &Path, args: &[&str]) {
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let output = Command::new(python())
        .arg(&script_path)
        .arg("--out")
        .arg(out_dir)
        .args(args)
        .env("PYTHONHASHSEED", "0")
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} with {:?}: {e} (run scripts/setup.sh first)",
                script,
                python()
            )
        });
    assert!(
        output.status.success(),
        "reference {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Loads every tensor of a safetensors file written by a reference script.
pub fn load_tensors(path: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// ‖actual − expected‖ / ‖expected‖ in float64.
pub fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size(), "shape mismatch");
    let a = actual
        .to_kind(tch::Kind::Double)
        .to_device(tch::Device::Cpu);
    let e = expected
        .to_kind(tch::Kind::Double)
        .to_device(tch::Device::Cpu);
    let num = (&a - &e).norm().double_value(&[]);
    let den = e.norm().double_value(&[]).max(1e-30);
    num / den
}

/// Asserts the relative error is at most `tol`, printing it either way.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) {
    let err = relative_error(actual, expected);
    println!("{what}: relative error {err:.3e} (tolerance {tol:.0e})");
    assert!(
        err <= tol,
        "{what}: relative error {err:.3e} exceeds {tol:.0e}"
    );
}

/// The tiny SD 1.x / 2.x / SDXL checkpoints (and parts) of `pipeline_ref.py`, written once
/// into a folder that the speed-and-memory test binaries share (cargo runs test binaries
/// one after another; the marker is written only after the reference finished). Points
/// `AIIMAGEGEN_HOME` inside it, so the model-hash cache never touches the user's settings.
pub fn pipeline_models() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("perf_memory");
        std::fs::create_dir_all(&dir).unwrap();
        std::env::set_var("AIIMAGEGEN_HOME", dir.join("home"));
        if !dir.join("done").exists() {
            run_reference("pipeline_ref.py", &dir, &[]);
            std::fs::write(dir.join("done"), b"").unwrap();
        }
        dir
    })
}

/// One checkpoint of [`pipeline_models`]: `sd1`, `sd2`, `sdxl`, …
pub fn pipeline_model(name: &str) -> PathBuf {
    pipeline_models().join(format!("{name}.safetensors"))
}

/// A 64×64, 3-step Euler run with CFG 5 and seed 7: small enough for the CPU, guided so
/// both halves of CFG run.
pub fn tiny_params() -> imagelab_core::GenerationParams {
    imagelab_core::GenerationParams {
        prompt: "a lighthouse at dusk".into(),
        negative: "blurry".into(),
        model: "tiny".into(),
        width: 64,
        height: 64,
        steps: 3,
        cfg: 5.0,
        sampler: imagelab_core::SamplerName::Euler,
        scheduler: imagelab_core::SchedulerName::Normal,
        seed: 7,
        ..imagelab_core::GenerationParams::default()
    }
}

/// Runs the reference `script` once for a test binary, into a temporary folder kept in
/// `dir`; model hashes are cached in the settings folder, so `AIIMAGEGEN_HOME` points
/// inside it and tests never touch `$HOME`.
pub fn reference_once(dir: &'static OnceLock<tempfile::TempDir>, script: &str) -> &'static Path {
    dir.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("AIIMAGEGEN_HOME", dir.path().join("home"));
        run_reference(script, dir.path(), &[]);
        dir
    })
    .path()
}

/// What pipeline_ref.py (and the scripts built on it) run diffusers with: its prompts,
/// 4 Euler steps on the `normal` schedule, CFG 5, seed 424242, 64×64.
pub fn pipeline_ref_params() -> imagelab_core::GenerationParams {
    imagelab_core::GenerationParams {
        prompt: "a lighthouse at dusk, volumetric light".into(),
        negative: "blurry, low quality".into(),
        steps: 4,
        seed: 424242,
        ..tiny_params()
    }
}

/// A pipeline's memory report as `component → bytes`.
pub fn report_by_component(
    pipeline: &imagelab_engine::pipeline::Pipeline,
) -> std::collections::BTreeMap<String, u64> {
    pipeline
        .memory_report()
        .into_iter()
        .map(|c| (c.component, c.bytes))
        .collect()
}
