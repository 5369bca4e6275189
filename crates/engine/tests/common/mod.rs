//! Shared harness for parity tests: runs a Python reference script (diffusers,
//! transformers, k-diffusion from the project venv) that writes random weights, inputs and
//! expected outputs as safetensors, and compares tensors by relative error.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
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
