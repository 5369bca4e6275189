//! Family classification on hand-made name/shape tables and hand-written safetensors files.

use super::*;
use crate::safetensors_header::tests::write;

fn unet(name: &str) -> String {
    format!("{UNET_PREFIX}.{name}")
}

/// The tensors that decide a family: the first conv, one cross-attention key, the label
/// embedding for SDXL, and one tensor under each text encoder prefix.
fn table(
    in_channels: i64,
    context: i64,
    adm: bool,
    encoders: &[&str],
) -> BTreeMap<String, Vec<i64>> {
    let mut shapes = BTreeMap::new();
    shapes.insert(unet("input_blocks.0.0.weight"), vec![8, in_channels, 3, 3]);
    shapes.insert(
        unet("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"),
        vec![8, context],
    );
    if adm {
        shapes.insert(unet("label_emb.0.0.weight"), vec![8, 2816]);
    }
    for prefix in encoders {
        shapes.insert(format!("{prefix}.x.weight"), vec![2]);
    }
    shapes
}

#[test]
fn families_are_told_apart_by_names_and_shapes() {
    let family = |t: &BTreeMap<String, Vec<i64>>| classify(t).unwrap().family;
    assert_eq!(
        family(&table(4, 32, false, &[SD1_CLIP_PREFIX])),
        Family::Sd1
    );
    assert_eq!(family(&table(4, 768, false, &[])), Family::Sd1);
    assert_eq!(
        family(&table(4, 32, false, &[SD2_CLIP_PREFIX])),
        Family::Sd2
    );
    assert_eq!(family(&table(4, 1024, false, &[])), Family::Sd2);
    let sdxl = &[SDXL_CLIP_L_PREFIX, SDXL_CLIP_G_PREFIX];
    assert_eq!(family(&table(4, 64, true, sdxl)), Family::Sdxl);
    assert_eq!(family(&table(4, 2048, true, &[])), Family::Sdxl);
    assert_eq!(
        classify(&table(4, 768, false, &[])).unwrap().context_width,
        768
    );
}

#[test]
fn what_is_not_a_runnable_checkpoint_is_said() {
    let mut lora = BTreeMap::new();
    lora.insert("lora_unet_down.weight".to_string(), vec![4, 4]);
    assert_eq!(classify(&lora), Err(ClassifyError::NoUnet));
    assert!(ClassifyError::NoUnet.to_string().contains("no UNet"));
    let mut bare = table(4, 768, false, &[]);
    bare.retain(|n, _| !n.contains("attn2"));
    assert_eq!(classify(&bare), Err(ClassifyError::NoCrossAttention));
    let odd = classify(&table(4, 512, false, &[])).unwrap_err();
    assert!(
        odd.to_string().contains("cross-attention width 512"),
        "{odd}"
    );
    let inpaint = classify(&table(9, 768, false, &[])).unwrap_err();
    assert_eq!(
        inpaint,
        ClassifyError::NotTextToImage {
            family: Family::Sd1,
            in_channels: 9
        }
    );
    assert!(inpaint.to_string().contains("9-channel"), "{inpaint}");
    let refiner = table(
        4,
        1280,
        true,
        &["conditioner.embedders", SDXL_REFINER_CLIP_G_PREFIX],
    );
    assert_eq!(classify(&refiner), Err(ClassifyError::Refiner));
}

#[test]
fn v_prediction_follows_the_key_and_the_sd2_probe_spread() {
    let wide = [-0.5, 0.5, -0.4, 0.4];
    let narrow = [0.01, -0.01, 0.02, 0.0];
    assert_eq!(prediction(Family::Sd1, true, None), Prediction::V);
    assert_eq!(prediction(Family::Sd2, false, Some(&wide)), Prediction::V);
    assert_eq!(
        prediction(Family::Sd2, false, Some(&narrow)),
        Prediction::Eps
    );
    // The spread rule is ComfyUI's for SD 2.x only.
    assert_eq!(prediction(Family::Sd1, false, Some(&wide)), Prediction::Eps);
    assert_eq!(prediction(Family::Sd2, false, None), Prediction::Eps);
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A header-only file of `shapes` (zero-filled F32 data), plus the SD 2.x probe when given.
fn write_model(path: &Path, shapes: &BTreeMap<String, Vec<i64>>, probe: Option<&[f32]>) {
    let mut tensors: Vec<(&str, &str, Vec<i64>, Vec<u8>)> = shapes
        .iter()
        .map(|(n, s)| {
            let numel: i64 = s.iter().product();
            (n.as_str(), "F32", s.clone(), vec![0u8; numel as usize * 4])
        })
        .collect();
    if let Some(values) = probe {
        tensors.push((
            SD2_V_PROBE,
            "F32",
            vec![values.len() as i64],
            f32_bytes(values),
        ));
    }
    write(path, &tensors);
}

#[test]
fn files_are_inspected_from_their_header() {
    let dir = tempfile::tempdir().unwrap();
    let label = |name: &str, shapes: &BTreeMap<String, Vec<i64>>, probe: Option<&[f32]>| {
        let path = dir.path().join(name);
        write_model(&path, shapes, probe);
        inspect(&path).map(|d| d.label())
    };
    let sd2 = table(4, 32, false, &[SD2_CLIP_PREFIX]);
    assert_eq!(
        label("a", &table(4, 32, false, &[SD1_CLIP_PREFIX]), None).unwrap(),
        "sd1"
    );
    assert_eq!(
        label("b", &sd2, Some(&[-0.5, 0.5, -0.3, 0.3])).unwrap(),
        "sd2-v"
    );
    assert_eq!(
        label("c", &sd2, Some(&[0.0, 0.01, 0.0, 0.01])).unwrap(),
        "sd2"
    );
    let sdxl = table(4, 64, true, &[SDXL_CLIP_L_PREFIX, SDXL_CLIP_G_PREFIX]);
    assert_eq!(label("d", &sdxl, None).unwrap(), "sdxl");
    let err = label("odd.safetensors", &table(4, 512, false, &[]), None).unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("odd.safetensors") && err.contains("width 512"),
        "{err}"
    );
}

#[test]
fn diffusers_folders_are_told_apart_by_layout() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path();
    std::fs::create_dir_all(folder.join("text_encoder")).unwrap();
    std::fs::create_dir_all(folder.join("scheduler")).unwrap();
    assert_eq!(inspect(folder).unwrap().label(), "sd1");
    std::fs::write(
        folder.join("text_encoder/config.json"),
        r#"{"hidden_act":"gelu"}"#,
    )
    .unwrap();
    std::fs::write(
        folder.join("scheduler/scheduler_config.json"),
        r#"{"prediction_type":"v_prediction"}"#,
    )
    .unwrap();
    assert_eq!(inspect(folder).unwrap().label(), "sd2-v");
    std::fs::create_dir_all(folder.join("text_encoder_2")).unwrap();
    assert_eq!(DiffusersLayout::read(folder).family(), Family::Sdxl);
}

/// The tensors that mark a PixArt transformer in `layout` ("diffusers" or "original").
fn pixart_table(prefix: &str, layout: &str) -> BTreeMap<String, Vec<i64>> {
    let names: [(&str, Vec<i64>); 3] = match layout {
        "original" => [
            ("t_block.1.weight", vec![6912, 1152]),
            ("x_embedder.proj.weight", vec![1152, 4, 2, 2]),
            ("y_embedder.y_proj.fc1.weight", vec![1152, 4096]),
        ],
        _ => [
            ("adaln_single.linear.weight", vec![6912, 1152]),
            ("pos_embed.proj.weight", vec![1152, 4, 2, 2]),
            ("caption_projection.linear_1.weight", vec![1152, 4096]),
        ],
    };
    names
        .into_iter()
        .map(|(n, s)| (format!("{prefix}{n}"), s))
        .collect()
}

#[test]
fn pixart_sigma_is_recognised_in_both_layouts_under_any_prefix() {
    for layout in ["diffusers", "original"] {
        for prefix in ["", "model.diffusion_model.", "model."] {
            let got = classify(&pixart_table(prefix, layout)).unwrap();
            assert_eq!(got.family, Family::PixArtSigma, "{layout} {prefix:?}");
            assert_eq!((got.in_channels, got.context_width), (4, 4096));
        }
    }
    assert_eq!(Family::PixArtSigma.as_str(), "pixart-sigma");
    // `imagelab models` reads the same off a file's header.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PixArt-Sigma-XL-2-1024-MS.safetensors");
    write_model(&file, &pixart_table("", "original"), None);
    assert_eq!(inspect(&file).unwrap().label(), "pixart-sigma");
    assert_eq!(Family::PixArtSigma.latent_scale(), 0.13025);
    // A key that merely ends like a marker (no dot before it) is not taken for one.
    let mut odd = BTreeMap::new();
    odd.insert("xt_block.1.weight".to_string(), vec![2, 2]);
    assert_eq!(classify(&odd), Err(ClassifyError::NoUnet));
}

#[test]
fn pixart_alpha_is_refused_by_name() {
    let mut alpha = pixart_table("", "original");
    alpha.insert("csize_embedder.mlp.0.weight".into(), vec![1152, 256]);
    let err = classify(&alpha).unwrap_err();
    assert_eq!(
        err,
        ClassifyError::PixArtAlpha {
            key: "csize_embedder.mlp.0.weight".into()
        }
    );
    assert!(err.to_string().contains("PixArt-Σ only"), "{err}");
}

#[test]
fn pixart_folders_are_told_apart_by_their_pipeline_class() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path();
    std::fs::create_dir_all(folder.join("transformer")).unwrap();
    assert_eq!(inspect(folder).unwrap().label(), "pixart-sigma");
    std::fs::write(
        folder.join("model_index.json"),
        r#"{"_class_name":"PixArtAlphaPipeline"}"#,
    )
    .unwrap();
    let err = inspect(folder).unwrap_err().to_string();
    assert!(err.contains("PixArtAlphaPipeline"), "{err}");
    std::fs::write(
        folder.join("model_index.json"),
        r#"{"_class_name":"PixArtSigmaPipeline"}"#,
    )
    .unwrap();
    assert_eq!(inspect(folder).unwrap().label(), "pixart-sigma");
}
