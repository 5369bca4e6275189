"""Reference for tests/lora_parity.rs: random LoRAs made with PEFT for the tiny SD 1.x and
SDXL models of pipeline_ref.py (UNet attention, feed-forward, projections and the resnets'
3x3 convolutions, as LoCon trains them, plus every text encoder), written in the kohya
layout and in the diffusers layout, then loaded into fresh pipelines with diffusers'
`load_lora_weights` and run at a LoRA scale.

For each case C it writes to --out:
  C.safetensors        the LoRA file
  C_io.safetensors     latents and the scale diffusers ran with
and sd1.safetensors / sdxl.safetensors, the base checkpoints (single file).
Cases: sd1_kohya (diffusers module names, alpha 8 for rank 4), sd1_peft (the diffusers /
PEFT layout, as save_lora_weights writes it), sdxl_kohya (LDM module names, lora_te1_ and
lora_te2_, as kohya's sd-scripts name SDXL LoRAs).
"""
import argparse, os, sys

import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from diffusers import StableDiffusionPipeline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_ref as base  # noqa: E402
import unet_ref  # noqa: E402

RANK = 4
UNET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                "ff.net.2", "conv1", "conv2", "time_emb_proj"]
TEXT_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def add_random_lora(model, modules, alpha, seed):
    model.add_adapter(LoraConfig(r=RANK, lora_alpha=alpha, target_modules=modules,
                                 init_lora_weights=False))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.15)
    return get_peft_model_state_dict(model)


def split(key):
    module, part = key.rsplit(".lora_", 1)
    return module, ("lora_down.weight" if part.startswith("A") else "lora_up.weight")


def kohya(state, prefix, alpha, rename=lambda m: m):
    out = {}
    for key, value in state.items():
        module, part = split(key)
        flat = prefix + rename(module).replace(".", "_")
        out[f"{flat}.{part}"] = value.contiguous()
        out[f"{flat}.alpha"] = torch.tensor(float(alpha))
    return out


def text_root(module):
    return module if module.startswith("text_model.") else "text_model." + module


def ldm_names(unet):
    """diffusers module -> LDM module, from unet_ref's converter (matched by storage)."""
    state = unet.state_dict()
    by_storage = {v.data_ptr(): k for k, v in unet_ref.to_ldm(state, dict(unet.config)).items()}

    def rename(module):
        ldm = by_storage[state[module + ".weight"].data_ptr()]
        return ldm.removeprefix("model.diffusion_model.")[: -len(".weight")]
    return rename


def run(pipe, noise, sigmas, scale, path):
    latents = pipe(prompt=base.PROMPT, negative_prompt=base.NEGATIVE, height=base.SIZE,
                   width=base.SIZE, guidance_scale=base.CFG, sigmas=sigmas, latents=noise.clone(),
                   output_type="latent", cross_attention_kwargs={"scale": scale}).images
    save_file({"latents": latents.contiguous(), "scale": torch.tensor(scale, dtype=torch.float64)},
              path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    tokenizer, tokenizer_g, sigmas, noise = base.setup(out)
    save = lambda tensors, name: save_file(tensors, os.path.join(out, name))  # noqa: E731

    # SD 1.x, kohya layout with alpha 8 (scale alpha / rank = 2).
    source, ckpt = base.build_sd1(tokenizer)
    save({k: v.contiguous() for k, v in ckpt.items()}, "sd1.safetensors")
    unet_lora = add_random_lora(source.unet, UNET_MODULES, 8, 1)
    text_lora = add_random_lora(source.text_encoder, TEXT_MODULES, 8, 2)
    lora = kohya(unet_lora, "lora_unet_", 8)
    lora.update(kohya(text_lora, "lora_te_", 8, text_root))
    save(lora, "sd1_kohya.safetensors")
    pipe, _ = base.build_sd1(tokenizer)
    pipe.load_lora_weights(out, weight_name="sd1_kohya.safetensors")
    run(pipe, noise, sigmas, 0.7, os.path.join(out, "sd1_kohya_io.safetensors"))

    # SD 1.x, the diffusers / PEFT layout (alpha = rank: these files carry no alpha).
    source, _ = base.build_sd1(tokenizer)
    unet_lora = add_random_lora(source.unet, UNET_MODULES, RANK, 3)
    text_lora = add_random_lora(source.text_encoder, TEXT_MODULES, RANK, 4)
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=unet_lora,
                                              text_encoder_lora_layers=text_lora,
                                              weight_name="sd1_peft.safetensors")
    pipe, _ = base.build_sd1(tokenizer)
    pipe.load_lora_weights(out, weight_name="sd1_peft.safetensors")
    run(pipe, noise, sigmas, 1.0, os.path.join(out, "sd1_peft_io.safetensors"))

    # SDXL, kohya layout with LDM module names and both text encoders.
    source, ckpt = base.build_sdxl(tokenizer, tokenizer_g)
    save({k: v.contiguous() for k, v in ckpt.items()}, "sdxl.safetensors")
    rename = ldm_names(source.unet)
    unet_lora = add_random_lora(source.unet, UNET_MODULES, 8, 5)
    lora = kohya(unet_lora, "lora_unet_", 8, rename)
    lora.update(kohya(add_random_lora(source.text_encoder, TEXT_MODULES, 8, 6), "lora_te1_", 8,
                      text_root))
    lora.update(kohya(add_random_lora(source.text_encoder_2, TEXT_MODULES, 8, 7), "lora_te2_", 8,
                      text_root))
    save(lora, "sdxl_kohya.safetensors")
    pipe, _ = base.build_sdxl(tokenizer, tokenizer_g)
    pipe.load_lora_weights(out, weight_name="sdxl_kohya.safetensors")
    run(pipe, noise, sigmas, 0.8, os.path.join(out, "sdxl_kohya_io.safetensors"))


if __name__ == "__main__":
    main()
