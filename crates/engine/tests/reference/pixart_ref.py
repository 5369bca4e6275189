"""Reference outputs for the PixArt-Σ transformer (crates/engine/src/pixart).

Builds tiny diffusers PixArtTransformer2DModels with seeded random weights (every
parameter, so the scale-shift tables and the final layer are non-zero) and writes, under
--out:
  * sigma/                 save_pretrained: 2 heads x 72 (PixArt's head width), 2 blocks,
                           sample_size 128 with interpolation 2 (the 1024 model's)
  * original.safetensors   the same tensors in the original PixArt key layout
                           (x_embedder, t_block, blocks.N.attn.qkv, cross_attn.kv_linear,
                           final_layer ...), with the ignored y_embedding and pos_embed
  * prefixed.safetensors   sigma's diffusers keys under `model.diffusion_model.`
  * odd/                   4 heads x 36, 1 block, sample_size 32 (interpolation 1): only
                           config.json says so
  * alpha.safetensors      an original-layout file with PixArt-α's csize/ar embedders
  * expected.safetensors   latents (6 x 10, non-square), timesteps, captions, masks and
                           outputs
"""

import argparse
import math
import os

import torch
from safetensors.torch import save_file
from diffusers import PixArtTransformer2DModel

CAPTION = 32
TOKENS = 12


def build(heads, head_dim, layers, sample_size, interpolation, generator, caption=CAPTION):
    model = PixArtTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        cross_attention_dim=heads * head_dim,
        sample_size=sample_size,
        patch_size=2,
        caption_channels=caption,
        use_additional_conditions=False,
        interpolation_scale=interpolation,
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if p.dim() >= 2 and "scale_shift_table" not in name:
                fan_in = p[0].numel()
                p.copy_(noise / fan_in**0.5)
            else:
                p.copy_(0.3 * noise)
    return model


def to_original(sd, caption=CAPTION):
    """diffusers' PixArtTransformer2DModel keys -> the original repository's."""
    out = {}
    simple = {
        "pos_embed.proj": "x_embedder.proj",
        "adaln_single.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "adaln_single.emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "adaln_single.linear": "t_block.1",
        "caption_projection.linear_1": "y_embedder.y_proj.fc1",
        "caption_projection.linear_2": "y_embedder.y_proj.fc2",
        "proj_out": "final_layer.linear",
    }
    for name, t in sd.items():
        module, _, leaf = name.rpartition(".")
        if module in simple:
            out[f"{simple[module]}.{leaf}"] = t
        elif name == "scale_shift_table":
            out["final_layer.scale_shift_table"] = t
    block = 0
    while f"transformer_blocks.{block}.scale_shift_table" in sd:
        d = f"transformer_blocks.{block}"
        o = f"blocks.{block}"
        out[f"{o}.scale_shift_table"] = sd[f"{d}.scale_shift_table"]
        for leaf in ("weight", "bias"):
            out[f"{o}.attn.qkv.{leaf}"] = torch.cat(
                [sd[f"{d}.attn1.to_{x}.{leaf}"] for x in "qkv"]
            )
            out[f"{o}.cross_attn.kv_linear.{leaf}"] = torch.cat(
                [sd[f"{d}.attn2.to_{x}.{leaf}"] for x in "kv"]
            )
            pairs = {
                "attn1.to_out.0": "attn.proj",
                "attn2.to_q": "cross_attn.q_linear",
                "attn2.to_out.0": "cross_attn.proj",
                "ff.net.0.proj": "mlp.fc1",
                "ff.net.2": "mlp.fc2",
            }
            for dn, on in pairs.items():
                out[f"{o}.{on}.{leaf}"] = sd[f"{d}.{dn}.{leaf}"]
        block += 1
    hidden = sd["proj_out.weight"].shape[1]
    # Tensors the original checkpoints carry and the engine must ignore.
    out["y_embedder.y_embedding"] = torch.randn(300, caption)
    out["pos_embed"] = torch.zeros(1, 64 * 64, hidden)
    return out


def run(model, x, t, caption, mask):
    with torch.no_grad():
        return model(
            x, encoder_hidden_states=caption, timestep=t, encoder_attention_mask=mask
        ).sample


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    generator = torch.Generator().manual_seed(1717)

    model = build(2, 72, 2, 128, 2, generator)
    odd = build(4, 36, 1, 32, None, generator)
    model.save_pretrained(os.path.join(out, "sigma"))
    odd.save_pretrained(os.path.join(out, "odd"))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    original = to_original(sd)
    # Per block, q/k/v (6 tensors) become qkv (2) and k/v (4) become kv_linear (2).
    assert len(original) == len(sd) + 2 - 6 * len(model.transformer_blocks), "lost a key"
    save_file(original, os.path.join(out, "original.safetensors"))
    save_file(
        {f"model.diffusion_model.{k}": v for k, v in sd.items()},
        os.path.join(out, "prefixed.safetensors"),
    )
    alpha = dict(original)
    alpha["csize_embedder.mlp.0.weight"] = torch.zeros(144, 256)
    save_file(alpha, os.path.join(out, "alpha.safetensors"))

    x = torch.randn(2, 4, 6, 10, generator=generator)
    t = torch.tensor([999.0, 417.0])
    caption = torch.randn(2, TOKENS, CAPTION, generator=generator)
    mask = torch.ones(2, TOKENS)
    mask[1, 7:] = 0
    expected = {
        "x": x,
        "t": t,
        "caption": caption,
        "mask": mask,
        "sigma": run(model, x, t, caption, mask),
        "sigma_unmasked": run(model, x, t, caption, torch.ones(2, TOKENS)),
        "odd": run(odd, x, t, caption, mask),
    }
    # One guided denoising step as ComfyUI runs PixArt: linear betas, x / sqrt(sigma^2 + 1)
    # in, the nearest integer timestep, eps from the first 4 channels, x - sigma * eps out,
    # uncond + (cond - uncond) * cfg; prompt = caption row 0, negative = row 1.
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphas = torch.cumprod(1 - betas, 0)
    sigmas = ((1 - alphas) / alphas).sqrt()
    sigma = float(sigmas[417]) * 1.01
    t_near = int((sigmas.log() - math.log(sigma)).abs().argmin())
    x_in = x / (sigma**2 + 1) ** 0.5
    steps = torch.full((2,), float(t_near))

    def denoised(row):
        c = caption[row : row + 1].expand(2, -1, -1)
        m = mask[row : row + 1].expand(2, -1)
        return x - sigma * run(model, x_in, steps, c, m)[:, :4]

    cond, uncond = denoised(0), denoised(1)
    expected["step"] = uncond + (cond - uncond) * 4.5
    expected["step_sigma"] = torch.tensor([sigma], dtype=torch.float64)
    expected["step_t"] = torch.tensor([t_near])
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(out, "expected.safetensors"))


if __name__ == "__main__":
    main()
