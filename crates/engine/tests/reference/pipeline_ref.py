"""End-to-end reference for tests/pipeline_parity.rs: tiny random SD 1.x, SD 2.x (v-prediction)
and SDXL models run through diffusers' own pipelines, and the same weights written as
single-file checkpoints (and, for SDXL, a diffusers folder) for imagelab to load.

For each family F it writes to --out:
  F.safetensors          the single-file checkpoint (original key layout)
  F_io.safetensors       noise (torch.manual_seed(SEED); randn, as ComfyUI makes it),
                         sigmas (ComfyUI's `normal` schedule), latents (diffusers' final
                         latents with output_type="latent"), image (VAE decode of them)
  sdxl_diffusers/        pipe.save_pretrained() of the SDXL pipeline
  sd1_vae.safetensors, sd1_clip_l.safetensors   SD 1.x's VAE and text encoder alone
The key mappings come from the component scripts next to this one (unet_ref, vae_ref,
clip_ref, tokenizer_ref), each already checked against diffusers' own converters there.
"""
import argparse, copy, json, math, os, sys

import torch
from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_ref  # noqa: E402
import tokenizer_ref  # noqa: E402
import unet_ref  # noqa: E402
import vae_ref  # noqa: E402

SEED = 424242
SIZE = 64  # pixels; latents are 8x8
STEPS = 4
PROMPT = "a lighthouse at dusk, volumetric light"
NEGATIVE = "blurry, low quality"
CFG = 5.0


def randomize(model, seed):
    unet_ref.randomize(model, seed)


def hf_layout(model):
    """The state dict under the names single files use (`text_model.…`): transformers 5
    drops that root from CLIPTextModel's own state dict."""
    return {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v
            for k, v in model.state_dict().items()}


def clip_config(hidden, layers, act, projection=None):
    return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=layers, num_attention_heads=hidden // 64,
                          max_position_embeddings=77, hidden_act=act,
                          projection_dim=projection or hidden, eos_token_id=2)


def tiny_vae(seed):
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                        block_out_channels=(32, 32, 32, 32), norm_num_groups=32,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=SIZE)
    randomize(vae, seed)
    # Keep the latent distribution tame so decodes stay in a sensible range.
    with torch.no_grad():
        vae.quant_conv.weight.mul_(0.2)
    return vae.eval()


def vae_single_file(vae):
    return {"first_stage_model." + k: v for k, v in vae_ref.to_ldm(vae.state_dict(), 4, True).items()}


def tiny_unet(cfg, seed):
    unet = UNet2DConditionModel(sample_size=SIZE // 8, **cfg)
    randomize(unet, seed)
    return unet.eval()


def comfy_normal_sigmas(steps, betas=None):
    """ComfyUI's `normal` sigmas for a discrete model (SD's scaled-linear betas unless
    others are given)."""
    if betas is None:
        betas = sd_betas()
    ac = torch.cumprod(1 - betas, 0)
    table = ((1 - ac) / ac) ** 0.5
    log_t = table.log()

    def t_of(s):
        ls = math.log(s)
        low = int(((ls - log_t) >= 0).cumsum(0).argmax().clamp(max=len(table) - 2))
        w = float(((log_t[low] - ls) / (log_t[low] - log_t[low + 1])).clamp(0, 1))
        return (1 - w) * low + w * (low + 1)

    def sigma_of(t):
        lo, hi, w = int(math.floor(t)), int(math.ceil(t)), t - math.floor(t)
        return math.exp((1 - w) * float(log_t[lo]) + w * float(log_t[hi]))

    start, end = t_of(float(table[-1])), t_of(float(table[0]))
    ts = [start + (end - start) * i / (steps - 1) for i in range(steps)]
    return [sigma_of(t) for t in ts] + [0.0]


def sd_betas():
    return torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2


def comfy_euler(eps_of, noise, sigmas, betas, cfg):
    """Euler with CFG as ComfyUI runs a discrete eps model: x/√(σ²+1) in, the timestep of
    the nearest table sigma (ComfyUI's ModelSamplingDiscrete.timestep, for every discrete
    model), denoised = x − eps·σ, guidance on the denoised images (uncond first).
    `eps_of(x_in, t)` runs the network on the stacked [uncond; cond] batch."""
    alphas = torch.cumprod(1 - betas, 0)
    log_sigmas = (((1 - alphas) / alphas) ** 0.5).log()
    x = noise * math.sqrt(1 + sigmas[0] ** 2)
    with torch.no_grad():
        for sigma, following in zip(sigmas[:-1], sigmas[1:]):
            t = float((math.log(sigma) - log_sigmas).abs().argmin())
            both = torch.cat([x, x])
            denoised = both - eps_of(both / math.sqrt(sigma ** 2 + 1), t) * sigma
            u, c = denoised.chunk(2)
            denoised = u + (c - u) * cfg
            x = x + (x - denoised) / sigma * (following - sigma)
    return x


def sd1_comfy_loop(pipe, noise, out):
    """SD 1.x through comfy_euler at 5 `normal` steps, whose timesteps fall between
    integers: ComfyUI feeds the nearest one (diffusers' Euler would interpolate)."""
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    context = torch.cat([uncond, cond])
    eps_of = lambda x, t: pipe.unet(x, torch.tensor([t, t]), encoder_hidden_states=context).sample
    sigmas = comfy_normal_sigmas(5)
    latents = comfy_euler(eps_of, noise, sigmas, sd_betas(), CFG)
    save_file({"sigmas": torch.tensor(sigmas, dtype=torch.float64), "latents": latents.contiguous()},
              os.path.join(out, "sd1_comfy5_io.safetensors"))


def scheduler(prediction):
    return EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                  beta_schedule="scaled_linear", prediction_type=prediction,
                                  timestep_spacing="leading", steps_offset=1)


def run(pipe, sigmas, noise, out, name, vae):
    latents = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, height=SIZE, width=SIZE,
                   guidance_scale=CFG, sigmas=sigmas, latents=noise.clone(),
                   output_type="latent").images
    with torch.no_grad():
        image = vae.decode(latents / vae.config.scaling_factor).sample
    save_file({"noise": noise, "sigmas": torch.tensor(sigmas, dtype=torch.float64),
               "latents": latents.contiguous(), "image": image.contiguous()},
              os.path.join(out, f"{name}_io.safetensors"))


def setup(out):
    """What every script built on this one starts from: the CLIP tokenizer (written to
    `out`), its OpenCLIP twin, ComfyUI's sigmas and the seeded initial noise."""
    torch.manual_seed(0)
    tokenizer = tokenizer_ref.build_tokenizer(out)
    tokenizer.model_max_length = 77
    tokenizer_g = copy.deepcopy(tokenizer)
    tokenizer_g.pad_token = "!"  # OpenCLIP pads with token 0, as ComfyUI does
    sigmas = comfy_normal_sigmas(STEPS)
    torch.manual_seed(SEED)
    noise = torch.randn(1, 4, SIZE // 8, SIZE // 8)
    return tokenizer, tokenizer_g, sigmas, noise


def build_sd1(tokenizer):
    """The tiny SD 1.x pipeline and its single-file checkpoint (a dict)."""
    with torch.no_grad():
        # SD 1.x: CLIP-L (HF layout), conv projections, 8 heads, eps.
        text = CLIPTextModel(clip_config(64, 3, "quick_gelu")).eval()
        randomize(text, 11)
        unet_cfg = dict(in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                        cross_attention_dim=64, attention_head_dim=8, use_linear_projection=False)
        unet, vae = tiny_unet(unet_cfg, 12), tiny_vae(13)
        vae.register_to_config(scaling_factor=0.18215)
        ckpt = unet_ref.to_ldm(unet.state_dict(), unet_cfg)
        ckpt.update(vae_single_file(vae))
        ckpt.update({"cond_stage_model.transformer." + k: v for k, v in hf_layout(text).items()})
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler("epsilon"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return pipe, ckpt


def build_sdxl(tokenizer, tokenizer_g):
    """The tiny SDXL pipeline and its single-file checkpoint (a dict)."""
    with torch.no_grad():
        # SDXL: CLIP-L (HF) + OpenCLIP-G (open_clip layout) with projection, size conditioning.
        text_l = CLIPTextModel(clip_config(64, 3, "quick_gelu")).eval()
        text_g = CLIPTextModelWithProjection(clip_config(128, 3, "gelu", projection=32)).eval()
        randomize(text_l, 31)
        randomize(text_g, 32)
        unet_cfg = dict(in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                        cross_attention_dim=64 + 128, attention_head_dim=(1, 1),
                        transformer_layers_per_block=(1, 2), use_linear_projection=True,
                        addition_embed_type="text_time", addition_time_embed_dim=256,
                        projection_class_embeddings_input_dim=32 + 6 * 256)
        unet, vae = tiny_unet(unet_cfg, 33), tiny_vae(34)
        vae.register_to_config(scaling_factor=0.13025)
        ckpt = unet_ref.to_ldm(unet.state_dict(), unet_cfg)
        ckpt.update(vae_single_file(vae))
        ckpt.update({"conditioner.embedders.0.transformer." + k: v for k, v in hf_layout(text_l).items()})
        g = clip_ref.to_open_clip(hf_layout(text_g), 128)
        ckpt.update({"conditioner.embedders.1.model." + k: v for k, v in g.items()})
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_l, text_encoder_2=text_g,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_g, unet=unet,
                                     scheduler=scheduler("epsilon"), force_zeros_for_empty_prompt=False)
    return pipe, ckpt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    tokenizer, tokenizer_g, sigmas, noise = setup(out)

    pipe, ckpt = build_sd1(tokenizer)
    vae, text = pipe.vae, pipe.text_encoder
    save_file({k: v.contiguous() for k, v in ckpt.items()}, os.path.join(out, "sd1.safetensors"))
    # Standalone parts, as users keep them in models/vae and models/clip.
    save_file({k: v.contiguous() for k, v in vae_ref.to_ldm(vae.state_dict(), 4, True).items()},
              os.path.join(out, "sd1_vae.safetensors"))
    save_file({k: v.contiguous() for k, v in hf_layout(text).items()},
              os.path.join(out, "sd1_clip_l.safetensors"))
    run(pipe, sigmas, noise, out, "sd1", vae)
    sd1_comfy_loop(pipe, noise, out)

    with torch.no_grad():
        # SD 2.x: OpenCLIP-H layout, penultimate layer + final norm, linear projections, v.
        full = CLIPTextModel(clip_config(128, 3, "gelu")).eval()
        randomize(full, 21)
        # diffusers keeps SD 2's text encoder with its last layer removed; same numbers.
        cut_cfg = clip_config(128, 2, "gelu")
        cut = CLIPTextModel(cut_cfg).eval()
        cut.load_state_dict({k: v for k, v in full.state_dict().items() if ".layers.2." not in k})
        unet_cfg = dict(in_channels=4, out_channels=4, block_out_channels=(64, 128), layers_per_block=1,
                        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                        cross_attention_dim=128, attention_head_dim=(1, 2), use_linear_projection=True)
        unet, vae = tiny_unet(unet_cfg, 22), tiny_vae(23)
        vae.register_to_config(scaling_factor=0.18215)
        ckpt = unet_ref.to_ldm(unet.state_dict(), unet_cfg)
        ckpt.update(vae_single_file(vae))
        hf = hf_layout(full)
        hf["text_projection.weight"] = torch.eye(128)  # open_clip files carry one; unused by SD 2
        ckpt.update({"cond_stage_model.model." + k: v for k, v in clip_ref.to_open_clip(hf, 128).items()})
        ckpt["v_pred"] = torch.tensor([])
        save_file({k: v.contiguous() for k, v in ckpt.items()}, os.path.join(out, "sd2.safetensors"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=cut, tokenizer=tokenizer_g, unet=unet,
                                   scheduler=scheduler("v_prediction"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    run(pipe, sigmas, noise, out, "sd2", vae)

    pipe, ckpt = build_sdxl(tokenizer, tokenizer_g)
    vae = pipe.vae
    save_file({k: v.contiguous() for k, v in ckpt.items()}, os.path.join(out, "sdxl.safetensors"))
    run(pipe, sigmas, noise, out, "sdxl", vae)
    pipe.save_pretrained(os.path.join(out, "sdxl_diffusers"), safe_serialization=True)


if __name__ == "__main__":
    main()
