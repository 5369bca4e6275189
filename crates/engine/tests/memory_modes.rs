//! Memory modes and speed switches on the tiny SD 1.x / 2.x / SDXL checkpoints of
//! `pipeline_ref.py`: each must compute what the default pipeline computes. Offload
//! (model and sequential) rebuilds the same layers from the same weights, so it must be
//! bit-identical; sliced attention, sequential CFG, fused projections and channels-last
//! change the order of floating-point operations, so they must agree to fp32 rounding.
//! Also: offloaded components report no resident bytes, and a damaged block fails the
//! load, not a step, under sequential offload.
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_core::memory::{AttentionMode, CfgBatching, MemorySettings, Offload};
use imagelab_core::{DType, DeviceSpec};
use imagelab_engine::pipeline::{ModelChoice, Pipeline, Tuning};
use imagelab_engine::unet::{sdxl_vector, BlockOptions, UNet, UNetConfig, UNetInput, UNetOptions};
use imagelab_engine::weights::{WeightFile, Weights};
use tch::{Kind, Tensor};

use common::{pipeline_model as model, pipeline_models as reference_dir, tiny_params as params};

fn choice(name: &str, memory: MemorySettings, tuning: Tuning) -> ModelChoice {
    ModelChoice {
        memory,
        tuning,
        ..ModelChoice::new(model(name), DeviceSpec::Cpu, DType::Fp32)
    }
}

/// Final latents and decoded images.
fn run(choice: &ModelChoice) -> (Tensor, Tensor) {
    let pipeline = Pipeline::load(choice).unwrap();
    assert_eq!(pipeline.memory_settings(), choice.memory);
    let latents = pipeline.sample_latents(&params(), &mut |_| {}).unwrap();
    let images = pipeline.decode_to_tensor(&latents).unwrap();
    (latents, images)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The largest difference relative to the largest magnitude of `a`: reordered fp32 sums
/// differ by a few ulps per operation, which three steps with CFG 5 amplify.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    max_abs_diff(a, b) / a.abs().max().double_value(&[])
}

const FAMILIES: [&str; 3] = ["sd1", "sd2", "sdxl"];

/// Relative agreement for reordered arithmetic; measured up to about 1e-5 (printed
/// with `--nocapture`). A real error (a wrong head split, a lost mask, a skipped block) is
/// of order 1.
const REL_TOLERANCE: f64 = 1e-4;

#[test]
fn offload_is_bit_identical_to_keeping_everything_loaded() {
    for name in FAMILIES {
        let base = run(&choice(name, MemorySettings::default(), Tuning::default()));
        for offload in [Offload::Model, Offload::Sequential] {
            let memory = MemorySettings {
                offload,
                ..MemorySettings::default()
            };
            let got = run(&choice(name, memory, Tuning::default()));
            assert!(base.0.equal(&got.0), "{name} {offload}: latents differ");
            assert!(base.1.equal(&got.1), "{name} {offload}: images differ");
        }
    }
}

#[test]
fn sliced_attention_and_sequential_cfg_agree_with_the_default() {
    for name in FAMILIES {
        let base = run(&choice(name, MemorySettings::default(), Tuning::default()));
        let variants = [
            MemorySettings {
                // 7 queries per slice: the 8x8 latent's 64 tokens leave a remainder.
                attention: AttentionMode::Sliced {
                    query_chunk: Some(7),
                },
                ..MemorySettings::default()
            },
            MemorySettings {
                cfg_batching: CfgBatching::Sequential,
                ..MemorySettings::default()
            },
            // Both halves through each streamed block before the next is built.
            MemorySettings {
                cfg_batching: CfgBatching::Sequential,
                offload: Offload::Sequential,
                ..MemorySettings::default()
            },
        ];
        for memory in variants {
            let got = run(&choice(name, memory, Tuning::default()));
            let err = rel_diff(&base.0, &got.0);
            let image_err = max_abs_diff(&base.1, &got.1);
            eprintln!("{name} [{memory}]: latents {err:.2e} (relative), images {image_err:.2e}");
            assert!(
                err < REL_TOLERANCE,
                "{name} [{memory}]: latents differ by {err}"
            );
            assert!(
                image_err < 1e-3,
                "{name} [{memory}]: images differ by {image_err}"
            );
        }
    }
}

#[test]
fn the_low_vram_preset_runs_and_matches_the_tiled_default() {
    // The preset tiles the VAE; compare with the default settings plus the same tiling,
    // which isolates the offload and sequential-CFG parts.
    let tiled = MemorySettings {
        vae_tiling: MemorySettings::low_vram().vae_tiling,
        ..MemorySettings::default()
    };
    for name in ["sd1", "sdxl"] {
        let base = Pipeline::load(&choice(name, tiled, Tuning::default())).unwrap();
        let low =
            Pipeline::load(&choice(name, MemorySettings::low_vram(), Tuning::default())).unwrap();
        let a = base.generate(&params(), &mut |_| {}).unwrap();
        let b = low.generate(&params(), &mut |_| {}).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            let worst = x
                .pixels
                .iter()
                .zip(&y.pixels)
                .map(|(p, q)| p.abs_diff(*q))
                .max()
                .unwrap();
            // Sequential CFG differs from batched CFG by fp32 rounding only: at most one
            // level of 8-bit quantisation.
            assert!(worst <= 1, "{name}: pixels differ by {worst}");
        }
    }
}

#[test]
fn unfused_projections_agree_with_fused_ones() {
    for name in FAMILIES {
        let fused = run(&choice(name, MemorySettings::default(), Tuning::default()));
        let unfused = run(&choice(
            name,
            MemorySettings::default(),
            Tuning {
                fused_qkv: false,
                ..Tuning::default()
            },
        ));
        let err = rel_diff(&fused.0, &unfused.0);
        eprintln!("{name} unfused: latents {err:.2e} (relative)");
        assert!(err < REL_TOLERANCE, "{name}: latents differ by {err}");
    }
}

fn unet_weights(name: &str) -> Weights {
    Weights::from_file(WeightFile::open(&model(name)).unwrap()).at("model.diffusion_model")
}

/// Deterministic inputs in [-1, 1] (no global generator: other tests seed it concurrently).
fn wave(shape: &[i64], phase: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) * 0.37 + phase)
        .sin()
        .view(shape)
}

/// One UNet call on fixed inputs.
fn unet_output(name: &str, options: UNetOptions) -> Tensor {
    let w = unet_weights(name);
    let cfg = UNetConfig::detect(&w).unwrap();
    let unet = UNet::load_with(&w, &cfg, options).unwrap();
    let x = wave(&[2, cfg.in_channels, 8, 8], 0.1);
    let context = wave(&[2, 77, cfg.context_dim], 0.7);
    let t = Tensor::from_slice(&[500.0f32, 20.0]);
    let y = cfg.adm_in_channels.map(|adm| {
        let pooled = wave(&[2, adm - 6 * 256], 1.3);
        sdxl_vector(&pooled, (64, 64), (0, 0), (64, 64))
    });
    tch::no_grad(|| unet.forward(&x, &t, &context, y.as_ref()).unwrap())
}

#[test]
fn channels_last_unet_agrees_with_nchw() {
    // The pipeline enables channels-last on CUDA only; the layout logic is the same on
    // the CPU, where libtorch also has NHWC convolutions.
    for name in FAMILIES {
        let nchw = unet_output(name, UNetOptions::default());
        let nhwc = unet_output(
            name,
            UNetOptions {
                blocks: BlockOptions {
                    channels_last: true,
                    ..BlockOptions::default()
                },
                ..UNetOptions::default()
            },
        );
        assert!(nhwc.is_contiguous(), "callers get NCHW back");
        let err = rel_diff(&nchw, &nhwc);
        eprintln!("{name} channels-last: {err:.2e} (relative)");
        assert!(err < REL_TOLERANCE, "{name}: {err}");
        // And every switch at once, streamed: still the same function.
        let everything = unet_output(
            name,
            UNetOptions {
                blocks: BlockOptions {
                    attention: AttentionMode::Sliced {
                        query_chunk: Some(5),
                    },
                    fused_qkv: true,
                    channels_last: true,
                },
                stream_blocks: true,
            },
        );
        let err = rel_diff(&nchw, &everything);
        eprintln!("{name} all switches, streamed: {err:.2e} (relative)");
        assert!(err < REL_TOLERANCE, "{name}: {err}");
    }
}

use common::report_by_component as report;

#[test]
fn offloaded_components_hold_no_resident_bytes() {
    let full = report(
        &Pipeline::load(&choice(
            "sdxl",
            MemorySettings::default(),
            Tuning::default(),
        ))
        .unwrap(),
    );
    let model_offload = report(
        &Pipeline::load(&choice(
            "sdxl",
            MemorySettings {
                offload: Offload::Model,
                ..MemorySettings::default()
            },
            Tuning::default(),
        ))
        .unwrap(),
    );
    let sequential = report(
        &Pipeline::load(&choice(
            "sdxl",
            MemorySettings {
                offload: Offload::Sequential,
                ..MemorySettings::default()
            },
            Tuning::default(),
        ))
        .unwrap(),
    );
    assert_eq!(
        full.keys().collect::<Vec<_>>(),
        ["text_encoder_0", "text_encoder_1", "unet", "vae"]
    );
    assert!(full.values().all(|&b| b > 0), "{full:?}");
    for offloaded in [&model_offload, &sequential] {
        assert_eq!(
            offloaded.keys().collect::<Vec<_>>(),
            full.keys().collect::<Vec<_>>()
        );
        for part in ["text_encoder_0", "text_encoder_1", "vae"] {
            assert_eq!(offloaded[part], 0, "{part}: {offloaded:?}");
        }
    }
    // Model offload keeps the UNet whole; sequential keeps only its embeddings and `out`.
    assert_eq!(model_offload["unet"], full["unet"]);
    assert!(
        sequential["unet"] > 0 && sequential["unet"] * 5 < full["unet"],
        "{} of {}",
        sequential["unet"],
        full["unet"]
    );
}

#[test]
fn sequential_offload_checks_every_block_at_load() {
    // A checkpoint whose last output block has a mis-shaped convolution must fail to
    // load (naming the tensor) rather than fail in the middle of a job.
    let broken = reference_dir().join("sd1_broken_block.safetensors");
    let bad_name = "model.diffusion_model.output_blocks.2.0.out_layers.3.weight";
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(model("sd1"))
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            if name == bad_name {
                let trimmed = t.narrow(1, 0, t.size()[1] - 1).contiguous();
                (name, trimmed)
            } else {
                (name, t)
            }
        })
        .collect();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&bad_name), "the test model lacks {bad_name}");
    Tensor::write_safetensors(&tensors, &broken).unwrap();
    let sequential = ModelChoice {
        memory: MemorySettings {
            offload: Offload::Sequential,
            ..MemorySettings::default()
        },
        ..ModelChoice::new(&broken, DeviceSpec::Cpu, DType::Fp32)
    };
    let err = Pipeline::load(&sequential).unwrap_err().to_string();
    assert!(
        err.contains("output_blocks.2.0.out_layers.3.weight"),
        "{err}"
    );
}

#[test]
fn settings_reach_the_loaded_pipeline() {
    let memory = MemorySettings {
        attention: AttentionMode::Sliced {
            query_chunk: Some(7),
        },
        offload: Offload::Sequential,
        ..MemorySettings::default()
    };
    let pipeline = Pipeline::load(&choice(
        "sd1",
        memory,
        Tuning {
            fused_qkv: false,
            // Asked for, but the UNet is on the CPU: channels-last is for CUDA only.
            channels_last: true,
            cudnn_benchmark: true,
        },
    ))
    .unwrap();
    let options = pipeline.unet_options().expect("an SD model has a UNet");
    assert_eq!(options.blocks.attention, memory.attention);
    assert!(options.stream_blocks);
    assert!(!options.blocks.fused_qkv);
    assert!(!options.blocks.channels_last);
    let default =
        Pipeline::load(&choice("sd1", MemorySettings::default(), Tuning::default())).unwrap();
    let options = default.unet_options().expect("an SD model has a UNet");
    assert!(options.blocks.fused_qkv && !options.stream_blocks);
    assert_eq!(options.blocks.attention, AttentionMode::Sdpa);
}

#[test]
fn the_cache_applies_per_job_modes_without_a_load_and_replaces_a_copy_with_other_modes() {
    let mut cache = imagelab_engine::pipeline::PipelineCache::new(2);
    let base = choice("sd1", MemorySettings::default(), Tuning::default());
    let first = cache.get_or_load(&base).unwrap();
    // CFG batching and VAE tiling change per job: a hit, applied to the cached pipeline.
    let per_job = ModelChoice {
        memory: MemorySettings {
            cfg_batching: CfgBatching::Sequential,
            vae_tiling: MemorySettings::low_vram().vae_tiling,
            ..MemorySettings::default()
        },
        ..base.clone()
    };
    let again = cache.get_or_load(&per_job).unwrap();
    assert!(std::rc::Rc::ptr_eq(&first, &again));
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(again.memory_settings(), per_job.memory);
    // Offload changes what is loaded: a new load, which replaces the copy with the old
    // modes even though the cache has room for two.
    let offloaded = ModelChoice {
        memory: MemorySettings::low_vram(),
        ..base.clone()
    };
    let third = cache.get_or_load(&offloaded).unwrap();
    assert!(!std::rc::Rc::ptr_eq(&first, &third));
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.evictions, cache.len()), (2, 1, 1));
    // Another model is kept beside it.
    cache
        .get_or_load(&choice("sd2", MemorySettings::default(), Tuning::default()))
        .unwrap();
    assert_eq!(cache.len(), 2);
}

#[test]
fn forward_many_equals_separate_calls_for_any_inputs() {
    // Three inputs of different batch and spatial sizes, through resident and streamed
    // blocks: each output must be what a call of its own gives.
    let w = unet_weights("sdxl");
    let cfg = UNetConfig::detect(&w).unwrap();
    let inputs: Vec<(Tensor, Tensor, Tensor, Option<Tensor>)> = [(1, 8, 8), (2, 8, 16), (1, 16, 8)]
        .iter()
        .enumerate()
        .map(|(i, &(b, h, wd))| {
            let phase = i as f64;
            let x = wave(&[b, cfg.in_channels, h, wd], 0.1 + phase);
            let t = Tensor::from_slice(&vec![300.0f32 + 100.0 * phase as f32; b as usize]);
            let context = wave(&[b, 77, cfg.context_dim], 0.5 + phase);
            let y = cfg.adm_in_channels.map(|adm| {
                sdxl_vector(
                    &wave(&[b, adm - 6 * 256], 0.9 + phase),
                    (64, 64),
                    (0, 0),
                    (64, 64),
                )
            });
            (x, t, context, y)
        })
        .collect();
    for stream_blocks in [false, true] {
        let unet = UNet::load_with(
            &w,
            &cfg,
            UNetOptions {
                stream_blocks,
                ..UNetOptions::default()
            },
        )
        .unwrap();
        let batch: Vec<_> = inputs
            .iter()
            .map(|(x, t, c, y)| UNetInput {
                x,
                timesteps: t,
                context: c,
                y: y.as_ref(),
            })
            .collect();
        let together = tch::no_grad(|| unet.forward_many(&batch).unwrap());
        assert_eq!(together.len(), 3);
        for ((x, t, c, y), got) in inputs.iter().zip(&together) {
            let alone = tch::no_grad(|| unet.forward(x, t, c, y.as_ref()).unwrap());
            assert_eq!(got.size(), x.size());
            assert!(
                got.equal(&alone),
                "streamed={stream_blocks}: {:?}",
                x.size()
            );
        }
        assert!(unet.forward_many(&[]).unwrap().is_empty());
    }
}
