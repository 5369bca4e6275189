//! Holds the VAE to diffusers' AutoencoderKL on a small random model: encoder mean and
//! decoder output within 1e-4, the three file layouts bit-identical, bad shapes named.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, load_tensors, run_reference};
use imagelab_engine::vae::{
    detect_layout, diffusers_to_ldm_key, rgb8_to_tensor, tensor_to_rgb8, vae_weights_from_file,
    AutoencoderKl, VaeConfig, VaeLayout,
};
use imagelab_engine::weights::WeightFile;
use imagelab_engine::EngineError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::Tensor;

/// Runs the reference once per test binary; every test reads its files.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vae_parity");
        std::fs::create_dir_all(&dir).unwrap();
        run_reference("vae_ref.py", &dir, &["--seed", "1234"]);
        dir
    })
}

fn load_vae(file: &str) -> imagelab_engine::Result<(VaeLayout, AutoencoderKl)> {
    let file = WeightFile::open(&reference_dir().join(file))?;
    let layout = detect_layout(file.shapes().keys()).unwrap();
    let w = vae_weights_from_file(file)?;
    let cfg = VaeConfig::detect(&w)?;
    Ok((layout, AutoencoderKl::load(&w, &cfg)?))
}

#[test]
fn single_file_matches_diffusers() {
    let io = load_tensors(&reference_dir().join("io.safetensors"));
    let (layout, vae) = load_vae("vae_checkpoint.safetensors").unwrap();
    assert_eq!(layout, VaeLayout::Checkpoint);
    let cfg = vae.config();
    assert_eq!(cfg.block_out_channels, vec![32, 64]);
    assert_eq!(cfg.channel_multipliers(), vec![1, 2]);
    assert_eq!(
        (
            cfg.base_channels(),
            cfg.layers_per_block,
            cfg.latent_channels
        ),
        (32, 1, 4)
    );
    assert_eq!(
        (cfg.in_channels, cfg.out_channels, cfg.downscale_factor()),
        (3, 3, 2)
    );
    assert!(cfg.mid_attention && cfg.quant_convs);

    let mean = vae.encode(&io["images"]).unwrap();
    assert_close("encoder latent mean", &mean, &io["latent_mean"], 1e-4);
    let decoded = vae.decode(&io["latents"]).unwrap();
    assert_close("decoder output", &decoded, &io["decoded"], 1e-4);
}

#[test]
fn all_layouts_give_bit_identical_outputs() {
    let io = load_tensors(&reference_dir().join("io.safetensors"));
    let (_, reference) = load_vae("vae_checkpoint.safetensors").unwrap();
    let expected_mean = reference.encode(&io["images"]).unwrap();
    let expected_image = reference.decode(&io["latents"]).unwrap();
    for (file, expected_layout) in [
        ("vae_diffusers.safetensors", VaeLayout::Diffusers),
        ("vae_bare_ldm.safetensors", VaeLayout::BareLdm),
    ] {
        let (layout, vae) = load_vae(file).unwrap();
        assert_eq!(layout, expected_layout, "{file}");
        assert_eq!(vae.config(), reference.config(), "{file}");
        assert!(
            vae.encode(&io["images"]).unwrap().equal(&expected_mean),
            "{file}: encode differs"
        );
        assert!(
            vae.decode(&io["latents"]).unwrap().equal(&expected_image),
            "{file}: decode differs"
        );
    }
}

#[test]
fn later_vae_shape_matches_diffusers_in_every_layout() {
    // 16 latent channels, no quant convs, no mid attention, 2 layers per block.
    let io = load_tensors(&reference_dir().join("vae16_io.safetensors"));
    let (_, vae) = load_vae("vae16_vae_checkpoint.safetensors").unwrap();
    let cfg = vae.config();
    assert_eq!((cfg.latent_channels, cfg.layers_per_block), (16, 2));
    assert!(!cfg.mid_attention && !cfg.quant_convs);
    let mean = vae.encode(&io["images"]).unwrap();
    assert_close(
        "16-channel encoder latent mean",
        &mean,
        &io["latent_mean"],
        1e-4,
    );
    let decoded = vae.decode(&io["latents"]).unwrap();
    assert_close("16-channel decoder output", &decoded, &io["decoded"], 1e-4);
    for file in [
        "vae16_vae_diffusers.safetensors",
        "vae16_vae_bare_ldm.safetensors",
    ] {
        let (_, other) = load_vae(file).unwrap();
        assert!(
            other.encode(&io["images"]).unwrap().equal(&mean),
            "{file}: encode differs"
        );
        assert!(
            other.decode(&io["latents"]).unwrap().equal(&decoded),
            "{file}: decode differs"
        );
    }
}

#[test]
fn wrong_shapes_are_named() {
    for (file, tensor) in [
        (
            "vae_bad_attention.safetensors",
            "first_stage_model.decoder.mid.attn_1.k.weight",
        ),
        (
            "vae_bad_conv.safetensors",
            "first_stage_model.decoder.up.0.block.1.conv2.weight",
        ),
    ] {
        match load_vae(file) {
            Err(EngineError::ShapeMismatch { name, .. }) => assert_eq!(name, tensor, "{file}"),
            other => panic!("{file}: expected a shape mismatch naming {tensor}, got {other:?}"),
        }
    }
}

#[test]
fn a_file_without_a_vae_is_refused() {
    let file = WeightFile::open(&reference_dir().join("io.safetensors")).unwrap();
    match vae_weights_from_file(file) {
        Err(EngineError::UnknownArchitecture { reason, .. }) => {
            assert!(reason.contains("no VAE tensors"), "{reason}")
        }
        other => panic!("expected UnknownArchitecture, got {other:?}"),
    }
}

#[test]
fn detect_names_the_tensor_that_does_not_fit() {
    // A UNet-only view has no VAE tensors at all.
    let file = WeightFile::open(&reference_dir().join("vae_checkpoint.safetensors")).unwrap();
    let unet = imagelab_engine::weights::Weights::from_file(file).at("model.diffusion_model");
    match VaeConfig::detect(&unet) {
        Err(EngineError::UnknownArchitecture { reason, .. }) => {
            assert!(reason.contains("encoder.conv_in.weight"), "{reason}")
        }
        other => panic!("expected UnknownArchitecture, got {other:?}"),
    }
}

#[test]
fn diffusers_keys_map_to_ldm_names() {
    let cases = [
        (
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
            "encoder.down.1.block.0.nin_shortcut.weight",
        ),
        (
            "encoder.down_blocks.0.downsamplers.0.conv.bias",
            "encoder.down.0.downsample.conv.bias",
        ),
        (
            "decoder.up_blocks.0.resnets.2.norm1.weight",
            "decoder.up.3.block.2.norm1.weight",
        ),
        (
            "decoder.up_blocks.3.upsamplers.0.conv.weight",
            "decoder.up.0.upsample.conv.weight",
        ),
        (
            "decoder.mid_block.resnets.1.conv2.bias",
            "decoder.mid.block_2.conv2.bias",
        ),
        (
            "encoder.mid_block.attentions.0.to_out.0.weight",
            "encoder.mid.attn_1.proj_out.weight",
        ),
        (
            "encoder.mid_block.attentions.0.group_norm.bias",
            "encoder.mid.attn_1.norm.bias",
        ),
        (
            "decoder.mid_block.attentions.0.query.weight",
            "decoder.mid.attn_1.q.weight",
        ),
        (
            "decoder.mid_block.attentions.0.proj_attn.bias",
            "decoder.mid.attn_1.proj_out.bias",
        ),
        ("encoder.conv_norm_out.weight", "encoder.norm_out.weight"),
        ("post_quant_conv.bias", "post_quant_conv.bias"),
    ];
    for (diffusers, ldm) in cases {
        assert_eq!(
            diffusers_to_ldm_key(diffusers, 4).as_deref(),
            Some(ldm),
            "{diffusers}"
        );
    }
    assert_eq!(
        diffusers_to_ldm_key("decoder.up_blocks.4.resnets.0.norm1.weight", 4),
        None
    );
    assert_eq!(
        diffusers_to_ldm_key("text_model.embeddings.position_ids", 4),
        None
    );
}

#[test]
fn rgb8_round_trip_is_exact() {
    let (width, height) = (7u32, 5u32);
    // Every byte value appears, in a layout where R/G/B and x/y cannot be confused.
    let rgb: Vec<u8> = (0..width * height * 3)
        .map(|i| ((i * 37 + i / 3) % 256) as u8)
        .collect();
    let all: Vec<u8> = (0..=255).collect();
    for (w, h, bytes) in [(width, height, rgb), (16, 16, all.repeat(3))] {
        let t = rgb8_to_tensor(w, h, &bytes).unwrap();
        assert_eq!(t.size(), [1, 3, i64::from(h), i64::from(w)]);
        // Pixel (x=1, y=0), green channel.
        let g = t.double_value(&[0, 1, 0, 1]);
        assert!(
            (g - (f64::from(bytes[4]) / 127.5 - 1.0)).abs() < 1e-6,
            "{g}"
        );
        let back = tensor_to_rgb8(&t).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].0, back[0].1), (w, h));
        assert_eq!(back[0].2, bytes);
    }
}

#[test]
fn rgb8_output_clamps_and_truncates_per_image() {
    let t = Tensor::from_slice(&[-3.0f32, 0.0, 1.0, 5.0, 0.999, -0.999]).reshape([2, 3, 1, 1]);
    let images = tensor_to_rgb8(&t).unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0], (1, 1, vec![0, 127, 255]));
    // 255 * 0.9995 = 254.87 and 255 * 0.0005 = 0.13 truncate (ComfyUI's SaveImage).
    assert_eq!(images[1], (1, 1, vec![255, 254, 0]));
    assert!(rgb8_to_tensor(2, 2, &[0; 11]).is_err());
    assert!(tensor_to_rgb8(&Tensor::zeros(
        [3, 4, 4],
        (tch::Kind::Float, tch::Device::Cpu)
    ))
    .is_err());
}
