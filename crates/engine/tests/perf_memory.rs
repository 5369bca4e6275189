//! Speed-and-memory features on the tiny SD 1.x / 2.x / SDXL checkpoints of
//! `pipeline_ref.py`: split placement gives the single-device result bit for bit, the
//! per-component byte accounting equals the file's tensor sizes in the loaded precision,
//! and the pipeline cache hits, evicts least-recently-used and frees what it evicts.
//! Paths that need CUDA run only where a GPU is present (they print a skip otherwise).
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_core::{DType, DeviceSpec};
use imagelab_engine::pipeline::{bytes_on, ModelChoice, Pipeline, PipelineCache, Placement};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use tch::{Kind, Tensor};

use common::{pipeline_model as model, tiny_params as params};

fn choice(name: &str, placement: Placement, dtype: DType) -> ModelChoice {
    ModelChoice {
        placement,
        ..ModelChoice::new(model(name), DeviceSpec::Cpu, dtype)
    }
}

/// Final latents and decoded images (both moved to the CPU).
fn run(choice: &ModelChoice) -> (Tensor, Tensor) {
    let pipeline = Pipeline::load(choice).unwrap();
    let latents = pipeline.sample_latents(&params(), &mut |_| {}).unwrap();
    let images = pipeline.decode_to_tensor(&latents).unwrap();
    (
        latents.to_device(tch::Device::Cpu),
        images.to_device(tch::Device::Cpu),
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn split_placement_is_bit_identical_to_one_device() {
    for name in ["sd1", "sdxl"] {
        let single = run(&choice(
            name,
            Placement::single(DeviceSpec::Cpu),
            DType::Fp32,
        ));
        let split = Placement {
            unet: DeviceSpec::Cpu,
            text_encoders: DeviceSpec::Cpu,
            vae: DeviceSpec::Cpu,
        };
        let pipeline = Pipeline::load(&choice(name, split, DType::Fp32)).unwrap();
        assert_eq!(pipeline.placement(), split);
        let both = run(&choice(name, split, DType::Fp32));
        assert!(single.0.equal(&both.0), "{name} latents differ");
        assert!(single.1.equal(&both.1), "{name} images differ");
    }
}

/// On a CUDA machine: two placements on the same GPU are identical to one device, and the
/// CPU+CUDA split agrees with the all-CUDA run to fp32 rounding (different kernels).
#[test]
fn split_placement_on_cuda() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA device");
        return;
    }
    let gpu = DeviceSpec::Cuda(0);
    let last = DeviceSpec::Cuda(tch::Cuda::device_count() as usize - 1);
    let single = run(&choice("sdxl", Placement::single(gpu), DType::Fp32));
    let same_gpu = run(&choice("sdxl", Placement::single(gpu), DType::Fp32));
    assert!(single.0.equal(&same_gpu.0) && single.1.equal(&same_gpu.1));
    for placement in [
        Placement {
            unet: gpu,
            text_encoders: DeviceSpec::Cpu,
            vae: DeviceSpec::Cpu,
        },
        Placement {
            unet: gpu,
            text_encoders: last,
            vae: last,
        },
    ] {
        let split = run(&choice("sdxl", placement, DType::Fp32));
        let err = max_abs_diff(&single.1, &split.1);
        assert!(err < 1e-3, "{placement}: images differ by {err}");
    }
}

/// Bytes of each component's tensors in the file, converted to `kind` (floats only; the
/// integer position ids keep their kind), keyed by the report's component names.
fn file_bytes(path: &Path, kind: Kind, encoders: &[&str]) -> BTreeMap<String, u64> {
    let mut prefixes = vec![
        ("unet".to_string(), "model.diffusion_model.".to_string()),
        ("vae".to_string(), "first_stage_model.".to_string()),
    ];
    for (i, p) in encoders.iter().enumerate() {
        prefixes.push((format!("text_encoder_{i}"), p.to_string()));
    }
    let mut out = BTreeMap::new();
    for (name, t) in Tensor::read_safetensors(path).unwrap() {
        let Some((component, _)) = prefixes.iter().find(|(_, p)| name.starts_with(p.as_str()))
        else {
            continue;
        };
        let size = if t.is_floating_point() {
            kind.elt_size_in_bytes()
        } else {
            t.kind().elt_size_in_bytes()
        };
        *out.entry(component.clone()).or_default() += t.numel() as u64 * size as u64;
    }
    out
}

use common::report_by_component as reported;

#[test]
fn memory_report_equals_the_files_tensor_sizes() {
    let cases: [(&str, &[&str]); 2] = [
        ("sd1", &["cond_stage_model."]),
        (
            "sdxl",
            &["conditioner.embedders.0.", "conditioner.embedders.1."],
        ),
    ];
    for (name, encoders) in cases {
        let fp32 = Pipeline::load(&choice(
            name,
            Placement::single(DeviceSpec::Cpu),
            DType::Fp32,
        ))
        .unwrap();
        let want = file_bytes(&model(name), Kind::Float, encoders);
        assert_eq!(reported(&fp32), want, "{name} fp32");
        let report = fp32.memory_report();
        assert!(report
            .iter()
            .all(|c| c.device == DeviceSpec::Cpu && c.bytes > 0));
        assert_eq!(
            bytes_on(&report, DeviceSpec::Cpu),
            want.values().sum::<u64>()
        );

        let bf16 = Pipeline::load(&choice(
            name,
            Placement::single(DeviceSpec::Cpu),
            DType::Bf16,
        ))
        .unwrap();
        assert_eq!(
            reported(&bf16),
            file_bytes(&model(name), Kind::BFloat16, encoders),
            "{name} bf16"
        );
    }
}

#[test]
fn split_placement_reports_each_component_on_its_device() {
    let split = Placement {
        unet: DeviceSpec::Cpu,
        text_encoders: DeviceSpec::Cpu,
        vae: DeviceSpec::Cpu,
    };
    let pipeline = Pipeline::load(&choice("sdxl", split, DType::Fp32)).unwrap();
    let names: Vec<String> = pipeline
        .memory_report()
        .into_iter()
        .map(|c| c.component)
        .collect();
    assert_eq!(names, ["unet", "vae", "text_encoder_0", "text_encoder_1"]);
}

/// A cache whose loader counts the loads it runs.
fn counting_cache(capacity: usize) -> (PipelineCache, Rc<Cell<usize>>) {
    let loads = Rc::new(Cell::new(0));
    let counter = loads.clone();
    let cache = PipelineCache::with_loader(
        capacity,
        Box::new(move |c| {
            counter.set(counter.get() + 1);
            Pipeline::load(c)
        }),
    );
    (cache, loads)
}

fn cpu(name: &str) -> ModelChoice {
    choice(name, Placement::single(DeviceSpec::Cpu), DType::Fp32)
}

#[test]
fn cache_hits_cost_no_load_and_evict_least_recently_used() {
    let (mut cache, loads) = counting_cache(2);
    let sd1 = cache.get_or_load(&cpu("sd1")).unwrap();
    let again = cache.get_or_load(&cpu("sd1")).unwrap();
    assert!(Rc::ptr_eq(&sd1, &again), "a hit returns the same pipeline");
    assert_eq!(loads.get(), 1);

    let sd2 = cache.get_or_load(&cpu("sd2")).unwrap();
    let sd2_bytes: u64 = sd2.memory_report().iter().map(|c| c.bytes).sum();
    let sd2_weak = Rc::downgrade(&sd2);
    drop(sd2);
    // Touch sd1 so sd2 becomes the least recently used.
    cache.get_or_load(&cpu("sd1")).unwrap();
    let sdxl = cache.get_or_load(&cpu("sdxl")).unwrap();
    assert_eq!(loads.get(), 3);
    assert_eq!(cache.checkpoints(), [model("sd1"), model("sdxl")]);

    // The evicted pipeline is gone (its tensors freed), and the bytes say so.
    assert!(sd2_weak.upgrade().is_none(), "evicted pipeline still alive");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions), (2, 3, 1));
    assert_eq!(stats.evicted_bytes, sd2_bytes);
    let resident = [&sd1, &sdxl]
        .iter()
        .flat_map(|p| p.memory_report())
        .map(|c| c.bytes)
        .sum::<u64>();
    assert_eq!(cache.resident_bytes(), resident);

    // Another precision or placement is another entry; the sd1 entry is now oldest.
    cache
        .get_or_load(&choice(
            "sd1",
            Placement::single(DeviceSpec::Cpu),
            DType::Bf16,
        ))
        .unwrap();
    assert_eq!(loads.get(), 4);
    assert_eq!(cache.len(), 2);
    cache.clear();
    assert!(cache.is_empty() && cache.resident_bytes() == 0);
}

#[test]
fn a_changed_file_is_loaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.safetensors");
    std::fs::copy(model("sd1"), &copy).unwrap();
    let (mut cache, loads) = counting_cache(2);
    let c = ModelChoice::new(&copy, DeviceSpec::Cpu, DType::Fp32);
    cache.get_or_load(&c).unwrap();
    let file = std::fs::File::options().write(true).open(&copy).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    cache.get_or_load(&c).unwrap();
    assert_eq!(loads.get(), 2);
}

#[test]
fn a_zero_capacity_cache_always_loads() {
    let (mut cache, loads) = counting_cache(0);
    cache.get_or_load(&cpu("sd1")).unwrap();
    cache.get_or_load(&cpu("sd1")).unwrap();
    assert_eq!((loads.get(), cache.len()), (2, 0));
    assert!(cache.get_or_load(&cpu("missing")).is_err());
}
