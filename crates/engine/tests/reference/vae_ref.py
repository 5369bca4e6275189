"""Reference for vae_parity.rs: a small random diffusers AutoencoderKL saved in three
layouts (diffusers, single-file with `first_stage_model.`, bare LDM) plus two files with
one wrong-shaped tensor each, inputs, and diffusers' encoder/decoder outputs (fp32, CPU)."""

import argparse
import os

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors.torch import save_file

PREFIX = "first_stage_model."


# The SD-shaped model, and one shaped like later VAEs: 16 latent channels, no quant convs,
# no mid attention, and 2 layers per block so block indices past 0 are exercised.
VARIANTS = {
    "": dict(latent_channels=4, layers_per_block=1),
    "vae16_": dict(
        latent_channels=16,
        layers_per_block=2,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
    ),
}


def build_model(seed, variant):
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        norm_num_groups=32,
        sample_size=32,
        **variant,
    ).eval()
    # Default init leaves norms at 1/0; randomize every parameter so every path counts.
    # Attention q/k are scaled up so the softmax is far from uniform.
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.ndim == 1 and ("norm" in name):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.3 * torch.randn_like(p))
                else:
                    p.copy_(0.3 * torch.randn_like(p))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                gain = 3.0 if (".to_q." in name or ".to_k." in name) else 1.0
                p.copy_(gain * torch.randn_like(p) / fan_in**0.5)
    return vae


def resnet_to_ldm(tail):
    return tail.replace("conv_shortcut", "nin_shortcut")


ATTENTION_TO_LDM = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def to_ldm(state, num_up, attention_as_conv):
    """Our own diffusers -> LDM renaming, checked below against diffusers' converter."""
    out = {}
    for key, t in state.items():
        half, rest = key.split(".", 1)
        new = None
        if rest.startswith("conv_norm_out."):
            new = f"{half}.norm_out." + rest[len("conv_norm_out."):]
        elif rest.startswith(("conv_in.", "conv_out.")) or half in ("quant_conv", "post_quant_conv"):
            new = key
        elif rest.startswith("down_blocks."):
            parts = rest.split(".")
            level = parts[1]
            if parts[2] == "resnets":
                new = f"{half}.down.{level}.block.{parts[3]}." + resnet_to_ldm(".".join(parts[4:]))
            else:  # downsamplers.0.conv.X
                new = f"{half}.down.{level}.downsample.conv.{parts[-1]}"
        elif rest.startswith("up_blocks."):
            parts = rest.split(".")
            level = num_up - 1 - int(parts[1])
            if parts[2] == "resnets":
                new = f"{half}.up.{level}.block.{parts[3]}." + resnet_to_ldm(".".join(parts[4:]))
            else:  # upsamplers.0.conv.X
                new = f"{half}.up.{level}.upsample.conv.{parts[-1]}"
        elif rest.startswith("mid_block.resnets."):
            parts = rest.split(".")
            new = f"{half}.mid.block_{int(parts[2]) + 1}." + resnet_to_ldm(".".join(parts[3:]))
        elif rest.startswith("mid_block.attentions.0."):
            inner, param = rest[len("mid_block.attentions.0."):].rsplit(".", 1)
            new = f"{half}.mid.attn_1.{ATTENTION_TO_LDM[inner]}.{param}"
            if attention_as_conv and t.ndim == 2:
                t = t[:, :, None, None]
        if new is None:
            raise SystemExit(f"unmapped diffusers key {key}")
        out[new] = t.contiguous()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for prefix, variant in VARIANTS.items():
        write_variant(args, prefix, variant)


def write_bad_shapes(checkpoint, path):
    """Two copies of the checkpoint with one wrong-shaped tensor each."""
    bad_attention = dict(checkpoint)
    k_name = PREFIX + "decoder.mid.attn_1.k.weight"
    bad_attention[k_name] = bad_attention[k_name][:, :32].contiguous()
    save_file(bad_attention, path("vae_bad_attention.safetensors"))
    bad_conv = dict(checkpoint)
    conv_name = PREFIX + "decoder.up.0.block.1.conv2.weight"
    bad_conv[conv_name] = bad_conv[conv_name][:16].contiguous()
    save_file(bad_conv, path("vae_bad_conv.safetensors"))


def write_variant(args, prefix, variant):
    path = lambda name: os.path.join(args.out, prefix + name)

    vae = build_model(args.seed, variant)
    state = {k: v.detach().contiguous() for k, v in vae.state_dict().items()}
    num_up = len(vae.config.up_block_types)

    # LDM checkpoints store attention as 1x1 convs; diffusers-converted ones as linears.
    ldm_conv = to_ldm(state, num_up, attention_as_conv=True)
    ldm_linear = to_ldm(state, num_up, attention_as_conv=False)
    checkpoint = {PREFIX + k: v for k, v in ldm_conv.items()}
    # Something else a full checkpoint carries, which the VAE loader must ignore.
    checkpoint["model.diffusion_model.out.2.bias"] = torch.randn(4)

    # Verify our mapping with diffusers' own converter: every tensor must come back equal.
    back = convert_ldm_vae_checkpoint(checkpoint, vae.config)
    if set(back) != set(state):
        raise SystemExit(f"mapping mismatch: {sorted(set(back) ^ set(state))}")
    for k, v in state.items():
        if back[k].shape != v.shape or not torch.equal(back[k], v):
            raise SystemExit(f"mapping changes {k}")
    back_linear = convert_ldm_vae_checkpoint({PREFIX + k: v for k, v in ldm_linear.items()}, vae.config)
    for k, v in state.items():
        if not torch.equal(back_linear[k], v):
            raise SystemExit(f"linear-attention mapping changes {k}")

    save_file(state, path("vae_diffusers.safetensors"))
    save_file(checkpoint, path("vae_checkpoint.safetensors"))
    save_file(ldm_linear, path("vae_bare_ldm.safetensors"))

    if not prefix:
        write_bad_shapes(checkpoint, path)

    # Non-square inputs so a height/width mix-up cannot pass.
    gen = torch.Generator().manual_seed(args.seed + 1)
    images = torch.rand(2, 3, 32, 24, generator=gen) * 2 - 1
    latents = torch.randn(2, vae.config.latent_channels, 12, 16, generator=gen)
    with torch.no_grad():
        mean = vae.encode(images).latent_dist.mean
        decoded = vae.decode(latents).sample
    save_file(
        {"images": images, "latent_mean": mean.contiguous(), "latents": latents, "decoded": decoded.contiguous()},
        path("io.safetensors"),
    )
    print(prefix or "sd", "mean std", mean.std().item(), "decoded std", decoded.std().item())


if __name__ == "__main__":
    main()
