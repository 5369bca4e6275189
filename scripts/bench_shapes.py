"""Writes the name → shape tables `imagelab bench` builds its random-weight checkpoints from
(crates/cli/src/bench/*.shapes). Run once by a developer when an architecture table needs
changing; `imagelab bench` itself never runs Python.

  python scripts/bench_shapes.py

The models are built on torch's meta device (no memory, no weights) with diffusers and
transformers, and their keys converted to the single-file layout by the same converters the
parity tests check against diffusers (crates/engine/tests/reference/*_ref.py).
Each line: `name<TAB>dtype<TAB>d0,d1,...` (dtype f = floating point, i = int64).
"""
import os, sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "crates/engine/tests/reference"))
import clip_ref  # noqa: E402
import full_size_ref  # noqa: E402
import pipeline_ref as tiny  # noqa: E402
import unet_ref  # noqa: E402

OUT = os.path.join(ROOT, "crates/cli/src/bench")

SD15_UNET = dict(in_channels=4, out_channels=4, block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
                 down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                 up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                 cross_attention_dim=768, attention_head_dim=8, use_linear_projection=False)
TINY_SD1_UNET = dict(in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                     down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                     cross_attention_dim=64, attention_head_dim=8, use_linear_projection=False)
TINY_SDXL_UNET = dict(in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                      cross_attention_dim=64 + 128, attention_head_dim=(1, 1),
                      transformer_layers_per_block=(1, 2), use_linear_projection=True,
                      addition_embed_type="text_time", addition_time_embed_dim=256,
                      projection_class_embeddings_input_dim=32 + 6 * 256)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                block_out_channels=(32, 32, 32, 32), norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def clip(hidden, layers, act, inter, projection=None):
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=inter,
                         num_hidden_layers=layers, num_attention_heads=max(hidden // 64, 1),
                         max_position_embeddings=77, hidden_act=act, projection_dim=projection or hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def sd1(unet_cfg, vae_cfg, text):
    ckpt = unet_ref.to_ldm(UNet2DConditionModel(**unet_cfg).state_dict(), unet_cfg)
    ckpt.update(tiny.vae_single_file(AutoencoderKL(**vae_cfg)))
    ckpt.update({"cond_stage_model.transformer." + k: v for k, v in tiny.hf_layout(text).items()})
    return ckpt


def sdxl(unet_cfg, vae_cfg, text_l, text_g, g_width):
    ckpt = unet_ref.to_ldm(UNet2DConditionModel(**unet_cfg).state_dict(), unet_cfg)
    ckpt.update(tiny.vae_single_file(AutoencoderKL(**vae_cfg)))
    ckpt.update({"conditioner.embedders.0.transformer." + k: v for k, v in tiny.hf_layout(text_l).items()})
    g = clip_ref.to_open_clip(tiny.hf_layout(text_g), g_width)
    ckpt.update({"conditioner.embedders.1.model." + k: v for k, v in g.items()})
    return ckpt


def write(name, ckpt):
    with open(os.path.join(OUT, f"{name}.shapes"), "w") as f:
        for k in sorted(ckpt):
            v = ckpt[k]
            kind = "f" if v.is_floating_point() else "i"
            f.write(f"{k}\t{kind}\t{','.join(str(d) for d in v.shape)}\n")
    print(name, len(ckpt), sum(v.numel() for v in ckpt.values()) / 1e6, "M parameters")


def main():
    with torch.device("meta"), torch.no_grad():
        write("sdxl", sdxl(full_size_ref.SDXL_UNET, full_size_ref.SDXL_VAE,
                           clip(768, 12, "quick_gelu", 3072), clip(1280, 32, "gelu", 5120, 1280), 1280))
        write("sd15", sd1(SD15_UNET, full_size_ref.SDXL_VAE, clip(768, 12, "quick_gelu", 3072)))
        write("sdxl_small", sdxl(TINY_SDXL_UNET, TINY_VAE, clip(64, 3, "quick_gelu", 128),
                                 clip(128, 3, "gelu", 256, 32), 128))
        write("sd15_small", sd1(TINY_SD1_UNET, TINY_VAE, clip(64, 3, "quick_gelu", 128)))


if __name__ == "__main__":
    main()
