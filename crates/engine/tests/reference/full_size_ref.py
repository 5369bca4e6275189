"""Full-size SDXL reference for a GPU machine (not run in CI): random weights of the real SDXL
architecture built on CUDA in fp16, the single-file checkpoint imagelab loads, and diffusers'
own results for the same prompt, noise and sigmas, for `examples/full_size_parity.rs`.

  python full_size_ref.py --out DIR [--steps 4] [--size 1024]

Writes DIR/sdxl_full.safetensors (about 6.9 GB, fp16) and DIR/sdxl_full_io.safetensors:
noise, sigmas, context and pooled (diffusers' encode_prompt, positive prompt), latents
(output_type="latent") and image (the VAE decode of those latents, run in fp32).
"""
import argparse, copy, os, sys, time

import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_ref  # noqa: E402
import pipeline_ref as tiny  # noqa: E402
import tokenizer_ref  # noqa: E402
import unet_ref  # noqa: E402
import vae_ref  # noqa: E402

SDXL_UNET = dict(
    act_fn="silu", addition_embed_type="text_time", addition_embed_type_num_heads=64,
    addition_time_embed_dim=256, attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280],
    cross_attention_dim=2048, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], flip_sin_to_cos=True, freq_shift=0,
    in_channels=4, out_channels=4, layers_per_block=2, norm_eps=1e-5, norm_num_groups=32,
    projection_class_embeddings_input_dim=2816, transformer_layers_per_block=[1, 2, 10], use_linear_projection=True,
)
SDXL_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=0.13025)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    dev, dt = "cuda", torch.float16
    t0 = time.time()
    tokenizer = tokenizer_ref.build_tokenizer(args.out)
    tokenizer.model_max_length = 77
    tokenizer_g = copy.deepcopy(tokenizer)
    tokenizer_g.pad_token = "!"
    torch.manual_seed(0)
    with torch.device(dev):
        unet = UNet2DConditionModel(sample_size=args.size // 8, **SDXL_UNET).to(dt).eval()
        vae = AutoencoderKL(sample_size=args.size, **SDXL_VAE).to(dt).eval()
        text_l = CLIPTextModel(tiny.clip_config(768, 12, "quick_gelu")).to(dt).eval()
        text_g = CLIPTextModelWithProjection(tiny.clip_config(1280, 32, "gelu", projection=1280)).to(dt).eval()
    with torch.no_grad():
        ckpt = unet_ref.to_ldm(unet.state_dict(), SDXL_UNET)
        ckpt.update(tiny.vae_single_file(vae))
        ckpt.update({"conditioner.embedders.0.transformer." + k: v for k, v in tiny.hf_layout(text_l).items()})
        g = clip_ref.to_open_clip(tiny.hf_layout(text_g), 1280)
        ckpt.update({"conditioner.embedders.1.model." + k: v for k, v in g.items()})
        save_file({k: v.contiguous().cpu() for k, v in ckpt.items()}, os.path.join(args.out, "sdxl_full.safetensors"))
    print(f"built and saved in {time.time() - t0:.1f} s", flush=True)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_l, text_encoder_2=text_g, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer_g, unet=unet, scheduler=tiny.scheduler("epsilon"),
                                     force_zeros_for_empty_prompt=False)
    sigmas = tiny.comfy_normal_sigmas(args.steps)
    torch.manual_seed(tiny.SEED)
    noise = torch.randn(1, 4, args.size // 8, args.size // 8)
    with torch.no_grad():
        context, _, pooled, _ = pipe.encode_prompt(tiny.PROMPT, device=dev, do_classifier_free_guidance=False)
        latents = pipe(prompt=tiny.PROMPT, negative_prompt=tiny.NEGATIVE, height=args.size, width=args.size,
                       guidance_scale=tiny.CFG, sigmas=sigmas, latents=noise.to(dev, dt),
                       output_type="latent").images
        image = vae.float().decode(latents.float() / vae.config.scaling_factor).sample
    save_file({"noise": noise, "sigmas": torch.tensor(sigmas, dtype=torch.float64),
               "context": context.float().cpu().contiguous(), "pooled": pooled.float().cpu().contiguous(),
               "latents": latents.float().cpu().contiguous(), "image": image.cpu().contiguous()},
              os.path.join(args.out, "sdxl_full_io.safetensors"))
    print(f"done in {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
