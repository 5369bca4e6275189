//! Build-script helper shared by the crates that link libtorch (engine, CLI): keeps
//! `libtorch_cuda` linked and puts libtorch's folder on the runpath.
//!
//! Why: the default `--as-needed` link drops `libtorch_cuda.so`, because no symbol of ours
//! refers to it directly; libtorch then silently reports "no CUDA" at run time. Linking it
//! with `--no-as-needed` keeps it in the `NEEDED` list (check with `readelf -d`).

use std::path::PathBuf;
use std::process::Command;

/// Finds libtorch's `lib` folder the same way torch-sys does: `LIBTORCH_LIB`, `LIBTORCH`, else the
/// `torch` package of the `python3` on `PATH` (with `LIBTORCH_USE_PYTORCH=1`).
fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH_LIB") {
        return Some(PathBuf::from(dir));
    }
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import torch, os; print(os.path.dirname(torch.__file__))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(dir.trim()).join("lib"))
}

/// libtorch's header folder (`include`, beside `lib`), found by the same lookup as its
/// libraries; `None` when libtorch or its headers are not found. The C++ API headers sit
/// below it in `torch/csrc/api/include`.
pub fn libtorch_include_dir() -> Option<PathBuf> {
    let include = libtorch_lib_dir()?.parent()?.join("include");
    include.is_dir().then_some(include)
}

/// The `_GLIBCXX_USE_CXX11_ABI` value C++ compiled against libtorch must use: as torch-sys
/// decides it, `LIBTORCH_CXX11_ABI` or else 1 (the torch 2.11 pip wheel reports 1:
/// `python -c 'import torch; print(torch._C._GLIBCXX_USE_CXX11_ABI)'`).
pub fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned())
}

/// Emits the link arguments; call it from a build script.
pub fn link_torch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let Some(lib) = libtorch_lib_dir() else {
        println!("cargo:warning=libtorch not found; CUDA will not be linked explicitly");
        return;
    };
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
