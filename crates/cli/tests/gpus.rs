//! `imagelab gpus` / `gpu-pick` through the binary. Without libnvidia-ml (CI) they must say
//! so and exit 2, the status scripts rely on; with a driver they list or pick.
use std::process::Command;

fn nvml_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/usr/lib64/libnvidia-ml.so.1",
        "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

#[test]
fn without_nvml_both_commands_exit_2_with_a_clear_message() {
    let home = tempfile::tempdir().expect("temp dir");
    for args in [
        vec!["gpus"],
        vec!["gpus", "--json"],
        vec!["gpu-pick", "--count", "1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_imagelab"))
            .args(&args)
            .env("AIIMAGEGEN_HOME", home.path())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if nvml_present() {
            assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("NVML is unavailable") && err.contains("libnvidia-ml.so.1"),
                "{err}"
            );
        }
    }
}
