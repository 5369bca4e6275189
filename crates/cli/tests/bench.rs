//! `imagelab bench --device cpu --size small`: runs in seconds with no Python and no
//! downloaded weights, prints the table and writes every figure as JSON.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn cpu_small_bench_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_imagelab"))
        .args([
            "bench", "--device", "cpu", "--size", "small", "--steps", "4", "--json",
        ])
        .arg(&json)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        // No Python may be needed: make any attempt to run one fail.
        .env("IMAGELAB_PYTHON", "/nonexistent/python")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for label in [
        "load GiB/s",
        "UNet CFG step ms",
        "VAE decode ms",
        "batch images/s",
    ] {
        assert!(stdout.contains(label), "{stdout}");
    }
    // The allocator's peaks are rows of the table too, "n/a" on the CPU.
    let peak_row = stdout
        .lines()
        .find(|l| l.starts_with("peak alloc GiB image"))
        .unwrap_or_else(|| panic!("no allocator peak row:\n{stdout}"));
    assert!(peak_row.contains("n/a"), "{peak_row}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let results = doc["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sdxl_small", "sd15_small", "pixart_small"]);
    for r in results {
        let pixart = r["model"] == "pixart_small";
        for key in [
            "load_s",
            "load_gib_per_s",
            "text_encode_s",
            "unet_cfg_step_s",
            "denoise_s",
            "vae_decode_s",
            "end_to_end_s_per_image",
            "batch_images_per_s",
        ] {
            let v = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(v > 0.0 && v.is_finite(), "{key} = {v}");
        }
        // The CPU has no GPU memory figure; the loaded weights equal the file's (fp32 both).
        assert!(r["gpu_process_mib_after_run"].is_null());
        // Nor allocator figures: every phase is there, and null.
        let allocator = r["allocator"].as_object().unwrap();
        for phase in ["load", "image", "batch"] {
            assert!(allocator[phase].is_null(), "{phase}: {}", allocator[phase]);
        }
        assert!(r["weight_bytes_loaded"].as_u64().unwrap() > 0);
        let report = r["memory_report"].as_array().unwrap();
        let parts: Vec<&str> = report
            .iter()
            .map(|c| c["component"].as_str().unwrap())
            .collect();
        if pixart {
            // PixArt-Σ's three files, each loaded; no LoRAs for it yet.
            assert_eq!(r["network"], "transformer");
            assert_eq!(parts, ["transformer", "t5", "vae"]);
            assert!(report.iter().all(|c| c["bytes"].as_u64().unwrap() > 0));
            assert_eq!(r["lora"]["skipped"], "no LoRAs for PixArt-Σ yet");
            continue;
        }
        // The rank-32 LoRA on every attention and feed-forward layer: merged, switched, stepped.
        let lora = &r["lora"];
        assert_eq!(lora["rank"], 32);
        assert!(lora["modules"].as_u64().unwrap() > 10, "{lora}");
        for key in ["apply_s", "switch_s", "remove_s", "unet_cfg_step_s"] {
            assert!(lora[key].as_f64().unwrap() > 0.0, "{key}: {lora}");
        }
        assert!(parts.contains(&"unet"), "{parts:?}");
    }
    // The SDXL model really is SDXL: two text encoders in the report.
    let sdxl = results[0]["memory_report"].as_array().unwrap();
    assert_eq!(sdxl.len(), 4);
}

#[test]
fn bad_bench_flags_are_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_imagelab"))
        .args(["bench", "--device", "cpu", "--size", "huge"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size"));
}

#[test]
fn bench_measures_a_memory_mode_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_imagelab"))
        .args([
            "bench",
            "--device",
            "cpu",
            "--size",
            "small",
            "--model",
            "sdxl",
            "--steps",
            "2",
            "--batch",
            "1",
            "--low-vram",
            "--no-fused-qkv",
            "--json",
        ])
        .arg(&json)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &doc["results"][0];
    assert_eq!(
        r["memory_settings"],
        "attention=sdpa offload=model cfg_batching=sequential vae_tiling=512,128"
    );
    assert_eq!(r["tuning"]["fused_qkv"], false);
    assert_eq!(r["lora"]["skipped"], "LoRAs need --offload none");
    // Offloaded text encoders and VAE hold nothing between uses; the UNet stays.
    for c in r["memory_report"].as_array().unwrap() {
        let bytes = c["bytes"].as_u64().unwrap();
        if c["component"] == "unet" {
            assert!(bytes > 0);
        } else {
            assert_eq!(bytes, 0, "{c}");
        }
    }
}
