//! What a model needs on the GPU, from its files' safetensors headers (no tensor is read),
//! for the automatic memory choice: a single-file SD checkpoint, PixArt-Σ's three files in
//! ComfyUI's layout, or a diffusers folder of either family, with `--clip` / `--vae` in
//! place of its own parts.

use imagelab_core::memory::{MemoryNeed, ModelPart};
use imagelab_core::safetensors_header::{read_header, SafetensorsHeader};
use std::path::Path;

/// The headers of a diffusers component folder's safetensors files (shards together); the
/// `.fp16.` variants only where the folder has nothing else, as the loaders choose.
fn component_headers(dir: &Path) -> Option<Vec<SafetensorsHeader>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    let variant = |p: &std::path::PathBuf| p.to_string_lossy().contains(".fp16.");
    if files.iter().any(|p| !variant(p)) {
        files.retain(|p| !variant(p));
    }
    if files.is_empty() {
        return None;
    }
    files.iter().map(|p| read_header(p).ok()).collect()
}

fn one(path: &Path) -> Option<Vec<SafetensorsHeader>> {
    Some(vec![read_header(path).ok()?])
}

/// The parts of a diffusers folder: the denoiser (`transformer/` or `unet/`), the text
/// encoders together (`--clip` instead), the VAE (`--vae` instead).
fn folder_parts(
    folder: &Path,
    [clip, vae]: [Option<&Path>; 2],
) -> Option<[Vec<SafetensorsHeader>; 3]> {
    let denoiser = component_headers(&folder.join("transformer"))
        .or_else(|| component_headers(&folder.join("unet")))?;
    let text = match clip {
        Some(file) => one(file)?,
        None => {
            let mut all = component_headers(&folder.join("text_encoder"))?;
            all.extend(component_headers(&folder.join("text_encoder_2")).unwrap_or_default());
            all
        }
    };
    let vae = match vae {
        Some(file) => one(file)?,
        None => component_headers(&folder.join("vae"))?,
    };
    Some([denoiser, text, vae])
}

fn refs(headers: &[SafetensorsHeader]) -> Vec<&SafetensorsHeader> {
    headers.iter().collect()
}

/// The need of `checkpoint` at `element_bytes` per weight for one run of
/// `(width, height, batch)`; `None` when a file is missing or unreadable (the automatic
/// choice then keeps the fastest settings, and the load names the problem).
pub(crate) fn model_need(
    checkpoint: &Path,
    pixart: bool,
    parts: [Option<&Path>; 2],
    element_bytes: u32,
    run: (u32, u32, u32),
) -> Option<MemoryNeed> {
    let [denoiser, text, vae] = if checkpoint.is_dir() {
        folder_parts(checkpoint, parts)?
    } else if pixart {
        // PixArt-Σ's T5 and VAE are files of their own (--clip, --vae).
        let [Some(clip), Some(vae)] = parts else {
            return None;
        };
        [one(checkpoint)?, one(clip)?, one(vae)?]
    } else {
        let header = read_header(checkpoint).ok()?;
        return Some(MemoryNeed::of_checkpoint(
            &header,
            element_bytes,
            run.0,
            run.1,
            run.2,
        ));
    };
    let (denoiser, text, vae) = (refs(&denoiser), refs(&text), refs(&vae));
    // Offload streams T5 a block at a time (PixArt-Σ); CLIP encoders visit whole.
    let others = [
        ModelPart {
            headers: &text,
            streamed: pixart,
        },
        ModelPart {
            headers: &vae,
            streamed: false,
        },
    ];
    Some(MemoryNeed::of_parts(&denoiser, &others, element_bytes, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of `tensors` (name, elements), header only: no data is needed
    /// to read the header.
    fn write(path: &Path, tensors: &[(&str, u64)]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut offset = 0u64;
        let mut entries = serde_json::Map::new();
        for (name, elements) in tensors {
            let end = offset + 2 * elements;
            entries.insert(
                name.to_string(),
                serde_json::json!({"dtype": "F16", "shape": [elements], "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let json = serde_json::Value::Object(entries).to_string();
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json.as_bytes());
        bytes.resize(bytes.len() + offset as usize, 0);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_diffusers_folder_counts_its_component_folders_and_the_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("PixArt-Sigma");
        write(
            &folder.join("transformer/diffusion_pytorch_model.safetensors"),
            &[("adaln_single.w", 1000)],
        );
        // A variant beside the main file is not counted twice.
        write(
            &folder.join("transformer/diffusion_pytorch_model.fp16.safetensors"),
            &[("adaln_single.w", 1000)],
        );
        write(
            &folder.join("text_encoder/model-00001-of-00002.safetensors"),
            &[("shared.weight", 300), ("encoder.block.0.q", 50)],
        );
        write(
            &folder.join("text_encoder/model-00002-of-00002.safetensors"),
            &[("encoder.block.1.q", 40)],
        );
        write(
            &folder.join("vae/diffusion_pytorch_model.safetensors"),
            &[("decoder.w", 200)],
        );
        let need = model_need(&folder, true, [None, None], 2, (64, 64, 1)).unwrap();
        assert_eq!(need.unet, 2000);
        assert_eq!(need.others, 2 * (390 + 200));
        assert_eq!(
            need.largest_other,
            2 * (300 + 50),
            "T5 streamed: embedding and one block"
        );
        // --vae replaces the folder's VAE; a folder without a denoiser gives no figure.
        let vae = dir.path().join("big_vae.safetensors");
        write(&vae, &[("decoder.w", 5000)]);
        let need = model_need(&folder, true, [None, Some(&vae)], 2, (64, 64, 1)).unwrap();
        assert_eq!(need.largest_other, 2 * 5000);
        assert_eq!(
            model_need(dir.path(), false, [None, None], 2, (64, 64, 1)),
            None
        );
    }

    #[test]
    fn an_sd_folder_counts_both_text_encoders_together() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path()
                .join("unet/diffusion_pytorch_model.fp16.safetensors"),
            &[("conv_in.weight", 900)],
        );
        write(
            &dir.path().join("text_encoder/model.safetensors"),
            &[("a", 100)],
        );
        write(
            &dir.path().join("text_encoder_2/model.safetensors"),
            &[("b", 300)],
        );
        write(
            &dir.path().join("vae/diffusion_pytorch_model.safetensors"),
            &[("c", 50)],
        );
        let need = model_need(dir.path(), false, [None, None], 2, (64, 64, 1)).unwrap();
        assert_eq!(
            (need.unet, need.others, need.largest_other),
            (1800, 900, 800)
        );
    }
}
