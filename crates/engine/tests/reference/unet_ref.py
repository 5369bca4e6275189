"""Reference for the UNet parity test: small random diffusers UNet2DConditionModels built like
SD 1.x, SD 2.x (inpainting) and SDXL, saved in the diffusers layout and in the single-file
(LDM) layout, with inputs and diffusers' outputs.

The LDM layout is produced by a mapping written here from the block structure, and checked by
converting it back with diffusers' own `convert_ldm_unet_checkpoint`: every tensor must come
back identical under its diffusers name, and no name may be missing or extra.

Files per flavour F in --out: F_diffusers.safetensors, F_ldm.safetensors, F_io.safetensors
(x, t, context, out; SDXL also pooled, add_embeds, time_ids, refiner_add_embeds; SD1 also an odd-sized *_odd set), plus sd1_missing.safetensors
(one tensor dropped), sd1_badshape.safetensors (one tensor with a wrong shape), and
real_shapes.json: the single-file tensor shapes of full-size SD 1.5, SD 1.5 inpainting, SD 2.1,
SDXL base and SDXL refiner UNets (built on the meta device, so no weights), for detection.
"""

import argparse
import json
import os

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
from safetensors.torch import save_file

PREFIX = "model.diffusion_model."
MISSING = "output_blocks.3.0.emb_layers.1.weight"
BADSHAPE = "input_blocks.1.1.transformer_blocks.0.attn2.to_v.weight"

FLAVOURS = {
    # SD 1.x: conv projections, 8 heads everywhere, last level without attention.
    "sd1": dict(
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=48,
        attention_head_dim=8,
        use_linear_projection=False,
    ),
    # SD 2.x inpainting: 9 input channels, linear projections, 64-wide heads.
    "sd2": dict(
        in_channels=9,
        out_channels=4,
        block_out_channels=(64, 128),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=40,
        attention_head_dim=(1, 2),
        use_linear_projection=True,
    ),
    # SDXL: first level without attention, deeper transformers further down, size conditioning.
    "sdxl": dict(
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=(1, 1, 2),
        transformer_layers_per_block=(1, 1, 2),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=32 + 6 * 256,
    ),
}
POOLED_WIDTH = 32

CA_DOWN, DOWN, CA_UP, UP = "CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"
SD1_LAYOUT = dict(
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=(CA_DOWN, CA_DOWN, CA_DOWN, DOWN),
    up_block_types=(UP, CA_UP, CA_UP, CA_UP),
)
# The published diffusers configs of the real models, reduced to what shapes depend on.
REAL = {
    "sd15": dict(SD1_LAYOUT, in_channels=4, cross_attention_dim=768, attention_head_dim=8),
    "sd15_inpaint": dict(SD1_LAYOUT, in_channels=9, cross_attention_dim=768, attention_head_dim=8),
    "sd21": dict(
        SD1_LAYOUT, in_channels=4, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True
    ),
    "sdxl_base": dict(
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        down_block_types=(DOWN, CA_DOWN, CA_DOWN),
        up_block_types=(CA_UP, CA_UP, UP),
        transformer_layers_per_block=(1, 2, 10),
        cross_attention_dim=2048,
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    ),
    "sdxl_refiner": dict(
        block_out_channels=(384, 768, 1536, 1536),
        layers_per_block=2,
        down_block_types=(DOWN, CA_DOWN, CA_DOWN, DOWN),
        up_block_types=(UP, CA_UP, CA_UP, UP),
        transformer_layers_per_block=4,
        cross_attention_dim=1280,
        attention_head_dim=(6, 12, 24, 24),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2560,
    ),
}
SIZES = ((1024, 768), (16, 32), (1024, 1024))  # original (h, w), crop (top, left), target (h, w)

RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def resnet_name(rest):
    layer, param = rest.split(".", 1)
    return f"{RESNET[layer]}.{param}"


def to_ldm(state, cfg):
    """diffusers name -> LDM name, walking the blocks in the order openaimodel builds them."""
    out = {}
    top = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    levels = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    ldm_block = 1
    diff_to_ldm_prefix = {}
    for b in range(levels):
        for l in range(lpb):
            diff_to_ldm_prefix[f"down_blocks.{b}.resnets.{l}."] = (f"input_blocks.{ldm_block}.0.", True)
            diff_to_ldm_prefix[f"down_blocks.{b}.attentions.{l}."] = (f"input_blocks.{ldm_block}.1.", False)
            ldm_block += 1
        if b < levels - 1:
            diff_to_ldm_prefix[f"down_blocks.{b}.downsamplers.0.conv."] = (f"input_blocks.{ldm_block}.0.op.", False)
            ldm_block += 1
    diff_to_ldm_prefix["mid_block.resnets.0."] = ("middle_block.0.", True)
    diff_to_ldm_prefix["mid_block.attentions.0."] = ("middle_block.1.", False)
    diff_to_ldm_prefix["mid_block.resnets.1."] = ("middle_block.2.", True)
    ldm_block = 0
    for b in range(levels):
        has_attn = cfg["up_block_types"][b].startswith("CrossAttn")
        for l in range(lpb + 1):
            diff_to_ldm_prefix[f"up_blocks.{b}.resnets.{l}."] = (f"output_blocks.{ldm_block}.0.", True)
            diff_to_ldm_prefix[f"up_blocks.{b}.attentions.{l}."] = (f"output_blocks.{ldm_block}.1.", False)
            if l == lpb and b < levels - 1:
                slot = 2 if has_attn else 1
                diff_to_ldm_prefix[f"up_blocks.{b}.upsamplers.0.conv."] = (f"output_blocks.{ldm_block}.{slot}.conv.", False)
            ldm_block += 1
    for name, tensor in state.items():
        new = None
        for src, dst in top.items():
            if name.startswith(src + "."):
                new = dst + name[len(src):]
        for src, (dst, is_resnet) in diff_to_ldm_prefix.items():
            if name.startswith(src):
                rest = name[len(src):]
                new = dst + (resnet_name(rest) if is_resnet else rest)
        assert new is not None, f"no LDM name for {name}"
        assert PREFIX + new not in out, f"two tensors map to {new}"
        out[PREFIX + new] = tensor
    return out


def randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            # Norm scales around 1 keep activations alive; everything else small and random.
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    for index, (flavour, cfg) in enumerate(FLAVOURS.items()):
        model = UNet2DConditionModel(sample_size=16, norm_num_groups=32, **cfg).eval()
        randomize(model, 100 + index)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        ldm = to_ldm(state, cfg)

        back = convert_ldm_unet_checkpoint(dict(ldm), dict(model.config))
        assert set(back) == set(state), f"{flavour}: round trip names differ: {set(back) ^ set(state)}"
        for name, tensor in state.items():
            assert torch.equal(back[name], tensor), f"{flavour}: {name} changed in the round trip"

        gen = torch.Generator().manual_seed(7 + index)
        batch = 2
        x = torch.randn(batch, cfg["in_channels"], 16, 16, generator=gen)
        t = torch.tensor([999.0, 417.37])
        context = torch.randn(batch, 7, cfg["cross_attention_dim"], generator=gen)
        io = {"x": x, "t": t, "context": context}
        kwargs = {}
        if cfg.get("addition_embed_type") == "text_time":
            pooled = torch.randn(batch, POOLED_WIDTH, generator=gen)
            (oh, ow), (ct, cl), (th, tw) = SIZES
            time_ids = torch.tensor([[oh, ow, ct, cl, th, tw]] * batch, dtype=torch.float32)
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
            # The vector diffusers feeds to add_embedding (the UNet's `get_aug_embed`).
            time_embeds = model.add_time_proj(time_ids.flatten()).reshape(batch, -1)
            io.update(pooled=pooled, time_ids=time_ids, add_embeds=torch.cat([pooled, time_embeds], dim=-1))
            # The refiner's time ids: original size, crop, aesthetic score (same Timesteps module).
            refiner_ids = torch.tensor([[oh, ow, ct, cl, 6.0]] * batch, dtype=torch.float32)
            refiner_embeds = model.add_time_proj(refiner_ids.flatten()).reshape(batch, -1)
            io["refiner_add_embeds"] = torch.cat([pooled, refiner_embeds], dim=-1)
        with torch.no_grad():
            io["out"] = model(x, t, encoder_hidden_states=context, **kwargs).sample
            if flavour == "sd1":
                # A latent size that is not a multiple of the total downscale (18x14 -> 9x7 ->
                # 5x4): the upsamplers must aim for the skip sizes, not just double.
                x_odd = torch.randn(1, 4, 18, 14, generator=gen)
                context_odd = torch.randn(1, 5, cfg["cross_attention_dim"], generator=gen)
                t_odd = torch.tensor([250.5])
                out_odd = model(x_odd, t_odd, encoder_hidden_states=context_odd).sample
                io.update(x_odd=x_odd, t_odd=t_odd, context_odd=context_odd, out_odd=out_odd)

        save_file(state, os.path.join(args.out, f"{flavour}_diffusers.safetensors"))
        save_file(ldm, os.path.join(args.out, f"{flavour}_ldm.safetensors"))
        save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(args.out, f"{flavour}_io.safetensors"))
        print(f"{flavour}: {sum(v.numel() for v in state.values())} parameters, |out| {io['out'].norm():.4f}")

        if flavour == "sd1":
            missing = {k: v for k, v in ldm.items() if k != PREFIX + MISSING}
            assert len(missing) == len(ldm) - 1
            save_file(missing, os.path.join(args.out, "sd1_missing.safetensors"))
            bad = dict(ldm)
            bad[PREFIX + BADSHAPE] = bad[PREFIX + BADSHAPE][:, :-1].contiguous()
            save_file(bad, os.path.join(args.out, "sd1_badshape.safetensors"))

    real = {}
    for flavour, cfg in REAL.items():
        with torch.device("meta"):
            model = UNet2DConditionModel(**cfg)
        ldm = to_ldm(model.state_dict(), cfg)
        real[flavour] = {k[len(PREFIX) :]: list(v.shape) for k, v in ldm.items()}
    with open(os.path.join(args.out, "real_shapes.json"), "w") as f:
        json.dump(real, f)


if __name__ == "__main__":
    main()
