//! The binary keeps `libtorch_cuda` in its NEEDED list (the default `--as-needed` link would
//! drop it and CUDA would silently be unavailable), and finds libtorch through its runpath.
use std::process::Command;

#[test]
fn libtorch_cuda_stays_linked_and_libtorch_is_on_the_runpath() {
    let out = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_imagelab")])
        .output()
        .expect("readelf runs");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(
        dynamic.contains("[libtorch_cuda.so]"),
        "libtorch_cuda.so is not NEEDED:\n{dynamic}"
    );
    assert!(
        dynamic.contains("RUNPATH") && dynamic.contains("torch/lib"),
        "no runpath to torch/lib:\n{dynamic}"
    );
}
