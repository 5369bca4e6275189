//! A throwaway app folder for CLI tests: `models/{checkpoints,vae,clip}`, `output/` and a
//! settings folder, with `imagelab generate` commands that see only that folder.
#![allow(dead_code, clippy::unwrap_used)]

pub mod daemon;
pub mod procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        for sub in [
            "models/checkpoints",
            "models/vae",
            "models/clip",
            "output",
            "home",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `imagelab generate` in the sandbox.
    pub fn generate(&self) -> Command {
        let mut cmd = self.imagelab();
        cmd.arg("generate");
        cmd
    }

    /// `imagelab` in the sandbox, with no `IMAGELAB_*` or `INSTANCE_ID` leaking in from the
    /// test's own environment.
    pub fn imagelab(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagelab"));
        cmd.current_dir(self.dir.path())
            .env("AIIMAGEGEN_HOME", self.path("home"))
            .env("IMAGELAB_APP_DIR", self.dir.path())
            .env("CUDA_VISIBLE_DEVICES", "");
        for (key, _) in std::env::vars() {
            if (key.starts_with("IMAGELAB_") && key != "IMAGELAB_APP_DIR") || key == "INSTANCE_ID" {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// The files in `output/`, sorted.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path("output"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }
}

/// A sandbox with `jobs/` and the tiny SD 1.5 checkpoint as `models/checkpoints/tiny`.
pub fn tiny_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("jobs")).unwrap();
    std::fs::copy(
        fixtures().join("sd1.safetensors"),
        sb.path("models/checkpoints/tiny.safetensors"),
    )
    .unwrap();
    sb
}

/// Tiny checkpoints, built once per test binary by the engine's pipeline reference.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| run_reference("pipeline_ref.py")).path()
}

/// A tiny PixArt-Σ (a diffusers folder, and ComfyUI's files under `comfy/`), built once
/// per test binary by the engine's PixArt pipeline reference.
pub fn pixart_fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| run_reference("pixart_pipeline_ref.py"))
        .path()
}

/// Runs one of the engine's reference scripts into a new temporary folder.
fn run_reference(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/reference")
        .join(script);
    let python = std::env::var_os("IMAGELAB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/imagelab/venv/bin/python")
        });
    let out = Command::new(python)
        .arg(&script)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}
