//! `imagelab generate` end to end on tiny random checkpoints (made by the engine's
//! reference script): PNGs with A1111 and JSON metadata, never overwritten, img2img, batches,
//! overrides, headless mode with per-instance logs, and mismatched parts refused.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{fixtures, Sandbox};

/// A sandbox with the tiny checkpoints and standalone parts in its model folders.
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let f = fixtures();
    for name in ["sd1", "sd2", "sdxl"] {
        std::fs::copy(
            f.join(format!("{name}.safetensors")),
            sb.path(&format!("models/checkpoints/{name}.safetensors")),
        )
        .unwrap();
    }
    std::fs::copy(
        f.join("sd1_vae.safetensors"),
        sb.path("models/vae/tiny_vae.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        f.join("sd1_clip_l.safetensors"),
        sb.path("models/clip/tiny_clip_l.safetensors"),
    )
    .unwrap();
    sb
}

/// A small fast run; the test's own flags replace these defaults.
fn run(sb: &Sandbox, args: &[&str]) -> Output {
    let defaults = [
        ("--device", "cpu"),
        ("--width", "64"),
        ("--height", "64"),
        ("--steps", "2"),
        ("--prompt", "a tiny lighthouse"),
    ];
    let mut cmd = sb.generate();
    for (flag, value) in defaults {
        if !args.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn texts(path: &Path) -> BTreeMap<String, String> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let mut map = BTreeMap::new();
    for t in &info.uncompressed_latin1_text {
        map.insert(t.keyword.clone(), t.text.clone());
    }
    for t in &info.utf8_text {
        map.insert(t.keyword.clone(), t.get_text().unwrap());
    }
    map
}

fn pixels(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height, buf)
}

#[test]
fn generates_a_png_with_a1111_and_json_metadata() {
    let sb = sandbox();
    let stdout = ok(&run(
        &sb,
        &["--model", "sdxl", "--seed", "7", "--negative", "blurry"],
    ));
    let files = sb.outputs();
    assert_eq!(files.len(), 1);
    assert_eq!(stdout.trim(), files[0].display().to_string());
    assert_eq!(files[0].file_name().unwrap(), "imagelab_00001.png");
    let (w, h, _) = pixels(&files[0]);
    assert_eq!((w, h), (64, 64));
    let meta = texts(&files[0]);
    let parameters = &meta["parameters"];
    assert!(parameters.starts_with("a tiny lighthouse\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 7, Size: 64x64, Model hash: "), "{parameters}");
    assert!(parameters.contains(", Model: sdxl,"), "{parameters}");
    let spec: serde_json::Value = serde_json::from_str(&meta["imagelab"]).unwrap();
    assert_eq!(spec["seed"], 7);
    assert_eq!(spec["params"]["sampler"], "euler");
    assert_eq!(spec["model"]["family"], "sdxl");
    assert_eq!(spec["model"]["model_hash"].as_str().unwrap().len(), 10);
    assert!(spec["engine"].as_str().unwrap().starts_with("imagelab "));

    // The same seed and settings give the same pixels, in a new file.
    ok(&run(
        &sb,
        &["--model", "sdxl", "--seed", "7", "--negative", "blurry"],
    ));
    let files = sb.outputs();
    assert_eq!(files.len(), 2);
    assert_eq!(pixels(&files[0]).2, pixels(&files[1]).2);
}

#[test]
fn every_family_generates_and_random_seeds_are_recorded() {
    let sb = sandbox();
    for model in ["sd1", "sd2", "sdxl"] {
        let out = run(&sb, &["--model", model, "--json"]);
        let json: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
        let seed = json["seed"].as_i64().unwrap();
        assert!(seed >= 0);
        let path = PathBuf::from(json["images"][0].as_str().unwrap());
        let spec: serde_json::Value = serde_json::from_str(&texts(&path)["imagelab"]).unwrap();
        assert_eq!(spec["seed"].as_i64().unwrap(), seed, "{model}");
        assert_eq!(spec["model"]["family"], model);
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("seed {seed}")));
    }
}

#[test]
fn out_files_are_never_overwritten() {
    let sb = sandbox();
    ok(&run(
        &sb,
        &["--model", "sd1", "--seed", "1", "--out", "mine.png"],
    ));
    let before = std::fs::read(sb.path("mine.png")).unwrap();
    let out = run(&sb, &["--model", "sd1", "--seed", "2", "--out", "mine.png"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read(sb.path("mine.png")).unwrap(), before);
}

#[test]
fn batches_turbo_settings_and_a1111_labels_work() {
    let sb = sandbox();
    let out = ok(&run(
        &sb,
        &["--model", "sdxl", "--batch", "2", "--seed", "3", "--json"],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["images"].as_array().unwrap().len(), 2);
    let second = PathBuf::from(json["images"][1].as_str().unwrap());
    assert!(texts(&second)["parameters"].contains("Batch size: 2, Batch pos: 1"));

    ok(&run(
        &sb,
        &["--model", "sdxl", "--steps", "1", "--cfg", "1"],
    ));
    let out = ok(&run(
        &sb,
        &["--model", "sd1", "--sampler", "DPM++ 2M Karras", "--json"],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let parameters = texts(Path::new(json["images"][0].as_str().unwrap()))["parameters"].clone();
    assert!(
        parameters.contains("Sampler: DPM++ 2M, Schedule type: Karras"),
        "{parameters}"
    );
}

#[test]
fn img2img_starts_from_the_init_image() {
    let sb = sandbox();
    ok(&run(
        &sb,
        &["--model", "sd1", "--seed", "5", "--out", "init.png"],
    ));
    let out = ok(&run(
        &sb,
        &[
            "--model",
            "sd1",
            "--seed",
            "5",
            "--init-image",
            "init.png",
            "--strength",
            "0.5",
            "--json",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let path = PathBuf::from(json["images"][0].as_str().unwrap());
    assert!(texts(&path)["parameters"].contains("Denoising strength: 0.5"));
    assert_ne!(pixels(&path).2, pixels(&sb.path("init.png")).2);
    let out = run(
        &sb,
        &[
            "--model",
            "sd1",
            "--width",
            "128",
            "--init-image",
            "init.png",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("init_image") && err.contains("64x64") && err.contains("128x64"),
        "{err}"
    );
}

#[test]
fn vae_and_clip_overrides_must_fit_the_model() {
    let sb = sandbox();
    let out = ok(&run(
        &sb,
        &[
            "--model",
            "sd1",
            "--vae",
            "tiny_vae",
            "--clip",
            "tiny_clip_l",
            "--seed",
            "9",
            "--json",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let parameters = texts(Path::new(json["images"][0].as_str().unwrap()))["parameters"].clone();
    assert!(parameters.contains("VAE: tiny_vae"), "{parameters}");
    // SD 2.x needs a 128-wide OpenCLIP encoder here; the 64-wide CLIP-L does not fit.
    let out = run(&sb, &["--model", "sd2", "--clip", "tiny_clip_l"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("tiny_clip_l.safetensors")
            && err.contains("does not fit"),
        "{err}"
    );
    // A text encoder file is not a VAE.
    std::fs::copy(
        sb.path("models/clip/tiny_clip_l.safetensors"),
        sb.path("models/vae/not_a_vae.safetensors"),
    )
    .unwrap();
    let out = run(&sb, &["--model", "sd1", "--vae", "not_a_vae"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not_a_vae.safetensors") && err.contains("VAE"),
        "{err}"
    );
    assert_eq!(sb.outputs().len(), 1);
}

#[test]
fn headless_mode_reads_the_environment_and_logs_per_instance() {
    let sb = sandbox();
    let out = sb
        .generate()
        .env("IMAGELAB_PROMPT", "a headless lighthouse")
        .env("IMAGELAB_MODEL", "sd1")
        .env("IMAGELAB_WIDTH", "64")
        .env("IMAGELAB_HEIGHT", "64")
        .env("IMAGELAB_STEPS", "1")
        .env("IMAGELAB_SEED", "11")
        .env("IMAGELAB_DEVICE", "cpu")
        .env("INSTANCE_ID", "night-42")
        .output()
        .unwrap();
    ok(&out);
    let files = sb.outputs();
    assert_eq!(files.len(), 1);
    assert!(texts(&files[0])["parameters"].starts_with("a headless lighthouse\nSteps: 1,"));
    let log = std::fs::read_to_string(sb.path("home/logs/generate-night-42.log")).unwrap();
    assert!(
        log.contains("sd1.safetensors") && log.contains("wrote"),
        "{log}"
    );
}

#[test]
fn placement_and_vae_tiling_flags() {
    let sb = sandbox();
    let base = [
        "--model", "sdxl", "--seed", "3", "--width", "128", "--height", "128",
    ];
    ok(&run(&sb, &base));
    let split = [
        &base[..],
        &[
            "--unet-device",
            "cpu",
            "--text-device",
            "cpu",
            "--vae-device",
            "cpu",
        ],
    ]
    .concat();
    ok(&run(&sb, &split));
    ok(&run(&sb, &[&base[..], &["--vae-tiling", "64,32"]].concat()));
    let files = sb.outputs();
    assert_eq!(files.len(), 3);
    let (plain, split, tiled) = (
        pixels(&files[0]).2,
        pixels(&files[1]).2,
        pixels(&files[2]).2,
    );
    // Split placement on one device is the same computation: identical pixels.
    assert_eq!(plain, split);
    // Tiling is approximate (see the engine's vae_tiled tests): close, not equal.
    let mean_diff = plain
        .iter()
        .zip(&tiled)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / plain.len() as f64;
    assert!(
        mean_diff < 40.0,
        "tiled decode differs by {mean_diff} on average"
    );

    for (flag, value, needle) in [
        ("--vae-tiling", "100,8", "--vae-tiling"),
        ("--vae-tiling", "64,64", "--vae-tiling"),
        ("--text-device", "cuda:99", "cuda:99"),
        ("--vae-device", "gpu", "device"),
        ("--attention", "flash", "--attention"),
        ("--attention", "sliced:0", "sliced:0"),
        ("--offload", "disk", "--offload"),
        ("--cfg-batching", "parallel", "--cfg-batching"),
    ] {
        let out = run(&sb, &[&base[..], &[flag, value]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn low_vram_and_memory_mode_flags() {
    let sb = sandbox();
    let base = [
        "--model", "sdxl", "--seed", "5", "--width", "128", "--height", "128",
    ];
    // --low-vram tiles the VAE; the same tiling alone isolates its other parts (offload:
    // exact; sequential CFG: fp32 rounding, at most one 8-bit level).
    ok(&run(&sb, &[&base[..], &["--vae-tiling", "on"]].concat()));
    ok(&run(&sb, &[&base[..], &["--low-vram"]].concat()));
    ok(&run(&sb, &base));
    // Sequential offload with sliced attention, from the environment as a container sets it.
    let out = sb
        .generate()
        .args([
            "--device",
            "cpu",
            "--steps",
            "2",
            "--prompt",
            "a tiny lighthouse",
        ])
        .args(base)
        .env("IMAGELAB_OFFLOAD", "sequential")
        .env("IMAGELAB_ATTENTION", "sliced:16")
        .env("INSTANCE_ID", "streamed")
        .output()
        .unwrap();
    ok(&out);
    // The settings reached the loaded UNet, not only the command line.
    let log = std::fs::read_to_string(sb.path("home/logs/generate-streamed.log")).unwrap();
    assert!(
        log.contains("offload=sequential")
            && log.contains("stream_blocks: true")
            && log.contains("query_chunk: Some(16)"),
        "{log}"
    );
    let other_seed = [
        "--model", "sdxl", "--seed", "6", "--width", "128", "--height", "128",
    ];
    ok(&run(&sb, &other_seed));
    let files = sb.outputs();
    assert_eq!(files.len(), 5);
    let images: Vec<Vec<u8>> = files.iter().map(|f| pixels(f).2).collect();
    let worst = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    let low = worst(&images[0], &images[1]);
    assert!(low <= 1, "--low-vram differs from --vae-tiling on by {low}");
    // Offload is exact and sliced attention rounds differently: at most one level.
    let streamed = worst(&images[2], &images[3]);
    assert!(streamed <= 1, "sequential offload differs by {streamed}");
    // The comparison can fail: another seed changes pixels by far more than that.
    assert!(worst(&images[2], &images[4]) > 16);
}

/// A small kohya LoRA for the tiny SD 1.x model: one rank-4 pair on the first attention
/// block's `proj_in` (a 1×1 convolution of 32 channels) and one on a text-encoder layer.
fn write_tiny_lora(path: &Path) {
    let tensors: [(&str, Vec<usize>); 6] = [
        (
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
            vec![4, 32, 1, 1],
        ),
        (
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight",
            vec![32, 4, 1, 1],
        ),
        ("lora_unet_down_blocks_0_attentions_0_proj_in.alpha", vec![]),
        (
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
            vec![4, 64],
        ),
        (
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight",
            vec![128, 4],
        ),
        ("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha", vec![]),
    ];
    write_random_safetensors(path, &tensors, |name| {
        name.ends_with("alpha").then_some(4.0)
    });
}

/// F32 tensors of seeded pseudo-random values in ±0.75 (or `fixed(name)` throughout).
fn write_random_safetensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>)],
    fixed: impl Fn(&str) -> Option<f32>,
) {
    let (mut header, mut data) = (serde_json::Map::new(), Vec::<u8>::new());
    let mut state = 12345u64;
    for (name, shape) in tensors {
        let count: usize = shape.iter().product();
        let start = data.len();
        for _ in 0..count {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let value = fixed(name)
                .unwrap_or_else(|| ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.5);
            data.extend_from_slice(&value.to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn loras_from_the_flag_and_from_a_prompt_tag_are_the_same_and_bad_ones_are_refused() {
    let sb = sandbox();
    std::fs::create_dir_all(sb.path("models/loras")).unwrap();
    write_tiny_lora(&sb.path("models/loras/tiny_lora.safetensors"));
    let image = |args: &[&str]| {
        let base = ["--model", "sd1", "--seed", "5", "--json"];
        let out = ok(&run(&sb, &[&base[..], args].concat()));
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        PathBuf::from(json["images"][0].as_str().unwrap())
    };
    let plain = image(&[]);
    let flagged = image(&["--lora", "tiny_lora:0.8"]);
    let tagged = image(&["--prompt", "a tiny lighthouse<lora:tiny_lora:0.8>"]);
    assert_ne!(pixels(&plain), pixels(&flagged), "the LoRA changed nothing");
    assert_eq!(pixels(&flagged), pixels(&tagged));
    let spec = texts(&flagged)["imagelab"].clone();
    assert!(
        spec.contains("\"loras\"") && spec.contains("tiny_lora"),
        "{spec}"
    );
    // The tag stays in the recorded prompt, as A1111 keeps it, and --lora becomes one; the
    // hash is A1111's: sha256 of the tensor data after the safetensors header, 12 digits.
    let bytes = std::fs::read(sb.path("models/loras/tiny_lora.safetensors")).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        &bytes[8 + header..],
    ));
    let hashes = format!("Lora hashes: \"tiny_lora: {}\"", &hex::encode(digest)[..12]);
    for image in [&flagged, &tagged] {
        let parameters = texts(image)["parameters"].clone();
        assert!(parameters.contains("<lora:tiny_lora:0.8>"), "{parameters}");
        assert!(parameters.contains(&hashes), "{parameters} lacks {hashes}");
    }

    let before = sb.outputs().len();
    for (args, named) in [
        (vec!["--lora", "missing_lora"], "missing_lora"),
        (vec!["--lora", "tiny_lora:strong"], "strong"),
        (vec!["--prompt", "a <lora:tiny_lora:0.5"], "<lora:"),
        (vec!["--lora", "../escape"], "escape"),
    ] {
        let out = run(&sb, &[&["--model", "sd1"][..], &args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(named),
            "{args:?}: {err}"
        );
    }
    // A LoRA for another family fails naming the file and the key.
    let out = run(&sb, &["--model", "sdxl", "--lora", "tiny_lora"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("tiny_lora.safetensors") && err.contains("lora_"),
        "{err}"
    );
    assert_eq!(sb.outputs().len(), before, "a refused LoRA left an image");
}

#[test]
fn embeddings_by_comfyui_and_a1111_names_are_the_same_and_recorded_with_their_hash() {
    let sb = sandbox();
    std::fs::create_dir_all(sb.path("models/embeddings")).unwrap();
    let file = sb.path("models/embeddings/tiny_neg.safetensors");
    write_random_safetensors(&file, &[("emb_params", vec![2, 64])], |_| None);
    let image = |negative: &str| {
        let args = [
            "--model",
            "sd1",
            "--seed",
            "5",
            "--json",
            "--negative",
            negative,
        ];
        let out = ok(&run(&sb, &args));
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        PathBuf::from(json["images"][0].as_str().unwrap())
    };
    let plain = image("blurry");
    let comfy = image("blurry, embedding:tiny_neg");
    let a1111 = image("blurry, tiny_neg");
    assert_ne!(
        pixels(&plain),
        pixels(&comfy),
        "the embedding changed nothing"
    );
    assert_eq!(pixels(&comfy), pixels(&a1111));
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        std::fs::read(&file).unwrap(),
    ));
    let hashes = format!("TI hashes: \"tiny_neg: {}\"", &hex::encode(digest)[..12]);
    let parameters = texts(&a1111)["parameters"].clone();
    assert!(parameters.contains(&hashes), "{parameters} lacks {hashes}");
    assert!(!texts(&plain)["parameters"].contains("TI hashes"));

    let before = sb.outputs().len();
    let out = run(
        &sb,
        &["--model", "sd1", "--negative", "embedding:no_such_neg"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no_such_neg") && err.contains("tiny_neg"),
        "{err}"
    );
    // An SD 1.x embedding on SDXL fails naming the file.
    let out = run(
        &sb,
        &["--model", "sdxl", "--negative", "embedding:tiny_neg"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("tiny_neg.safetensors"),
        "{err}"
    );
    assert_eq!(
        sb.outputs().len(),
        before,
        "a refused embedding left an image"
    );
}
