"""End-to-end reference for tests/pixart_pipeline_parity.rs: a tiny random PixArt-Σ
(transformer, T5 encoder, trained sentencepiece tokenizer, SDXL-style VAE) run through
diffusers' PixArtSigmaPipeline, and through a loop written the way ComfyUI samples.

Writes, under --out:
  pixart_diffusers/       PixArtSigmaPipeline.save_pretrained (transformer/, text_encoder/,
                          tokenizer/, vae/, model_index.json)
  comfy/pixart.safetensors        the transformer alone, in the original PixArt key layout
  comfy/clip/t5.safetensors       the T5 encoder alone, with spiece.model beside it
  comfy/vae.safetensors           the VAE at the LDM names
  io.safetensors:
    sigmas4, latents4     ComfyUI's `normal` sigmas for 4 steps (integer timesteps) and
                          the pipeline's final latents (Euler, CFG 4.5, use_resolution_binning
                          False, prompt embeddings computed on the verbatim prompt)
    image4                the VAE decode of latents4
    sigmas5, latents5     5 steps (fractional timesteps) through the ComfyUI-style loop:
                          the nearest integer timestep, CFG on the denoised images
    weighted_ids, weighted_context   WEIGHTED's tokens and T5 output as ComfyUI weights
                          them (each word alone, no padding, (z − z_empty)·w + z_empty
                          against an all-<pad> sequence of the same length)
The initial noise is ComfyUI's: torch.manual_seed(SEED), randn in the latent's shape.
"""
import argparse, os, shutil, sys

import torch
from diffusers import EulerDiscreteScheduler, PixArtSigmaPipeline
from safetensors.torch import save_file
from transformers import T5Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_ref  # noqa: E402
import pixart_ref  # noqa: E402
import t5_ref  # noqa: E402
import t5_tokenizer_ref  # noqa: E402
import vae_ref  # noqa: E402

SEED = 31337
WIDTH, HEIGHT = 96, 64  # latents 12 x 8: non-square, a multiple of the patch
PROMPT = "A Lighthouse at Dusk, Volumetric Light"  # cased: T5 sees it verbatim
NEGATIVE = "blurry, low quality"
CFG = 4.5
TOKENS = 300
# ComfyUI's emphasis: "(red:1.5)" sets 1.5, "(dusk)" multiplies by 1.1.
WEIGHTED = "A (red:1.5) lighthouse at (dusk)"
WEIGHTED_WORDS = [("A", 1.0), ("red", 1.5), ("lighthouse", 1.0), ("at", 1.0), ("dusk", 1.1)]


def betas():
    """PixArt's discrete schedule: linear betas 1e-4 .. 0.02 (ComfyUI's `sqrt_linear`)."""
    return torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)


def encode(tokenizer, text_encoder, text):
    enc = tokenizer(text, padding="max_length", max_length=TOKENS, truncation=True,
                    add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        hidden = text_encoder(enc.input_ids, attention_mask=enc.attention_mask)[0]
    return hidden, enc.attention_mask


def comfy_weighted(tokenizer, text_encoder):
    """ComfyUI's T5 path for PixArt: words tokenized one by one, </s> appended, no padding,
    and each token's output weighted against an all-<pad> prompt's."""
    ids, weights = [], []
    for word, weight in WEIGHTED_WORDS:
        pieces = tokenizer(word, add_special_tokens=False).input_ids
        ids += pieces
        weights += [weight] * len(pieces)
    ids, weights = ids + [1], weights + [1.0]
    with torch.no_grad():
        z = text_encoder(torch.tensor([ids]))[0]
        empty = text_encoder(torch.zeros(1, len(ids), dtype=torch.long))[0]
    w = torch.tensor(weights).view(1, -1, 1)
    return torch.tensor(ids), (z - empty) * w + empty


def comfy_loop(pipe, cond, uncond, noise, sigmas):
    """ComfyUI's Euler (pipeline_ref.comfy_euler): the nearest integer timestep fed."""
    context = torch.cat([uncond[0], cond[0]])
    mask = torch.cat([uncond[1], cond[1]])
    eps_of = lambda x, t: pipe.transformer(
        x, encoder_hidden_states=context, encoder_attention_mask=mask,
        timestep=torch.tensor([t, t])).sample[:, :4]
    return pipeline_ref.comfy_euler(eps_of, noise, sigmas, betas(), CFG)


def build(out):
    generator = torch.Generator().manual_seed(2024)
    spiece = t5_tokenizer_ref.train(os.path.join(out, "spm"))
    tokenizer = T5Tokenizer.from_pretrained(os.path.dirname(spiece))
    text_encoder = t5_ref.build("gated-gelu", generator)
    width = text_encoder.config.d_model
    transformer = pixart_ref.build(2, 72, 2, 128, 2, generator, caption=width)
    vae = pipeline_ref.tiny_vae(35)
    vae.register_to_config(scaling_factor=0.13025)
    scheduler = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=1e-4,
                                       beta_end=0.02, beta_schedule="linear",
                                       prediction_type="epsilon")
    pipe = PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                               transformer=transformer, scheduler=scheduler)
    return pipe, spiece, width


def write_comfy_files(pipe, spiece, width, out):
    comfy = os.path.join(out, "comfy")
    os.makedirs(os.path.join(comfy, "clip"), exist_ok=True)
    sd = {k: v.contiguous() for k, v in pipe.transformer.state_dict().items()}
    save_file(pixart_ref.to_original(sd, caption=width), os.path.join(comfy, "pixart.safetensors"))
    # The embedding once, at `shared.` (as t5xxl_fp16.safetensors has it).
    t5 = {k: v.contiguous() for k, v in pipe.text_encoder.state_dict().items()
          if k != "encoder.embed_tokens.weight"}
    save_file(t5, os.path.join(comfy, "clip", "t5.safetensors"))
    shutil.copy(spiece, os.path.join(comfy, "clip", "spiece.model"))
    ldm = vae_ref.to_ldm(pipe.vae.state_dict(), 4, True)
    save_file({k: v.contiguous() for k, v in ldm.items()}, os.path.join(comfy, "vae.safetensors"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    pipe, spiece, width = build(out)
    pipe.save_pretrained(os.path.join(out, "pixart_diffusers"))
    write_comfy_files(pipe, spiece, width, out)

    cond = encode(pipe.tokenizer, pipe.text_encoder, PROMPT)
    uncond = encode(pipe.tokenizer, pipe.text_encoder, NEGATIVE)
    torch.manual_seed(SEED)
    noise = torch.randn(1, 4, HEIGHT // 8, WIDTH // 8)
    sigmas4 = pipeline_ref.comfy_normal_sigmas(4, betas())
    latents4 = pipe(negative_prompt=None, prompt_embeds=cond[0], prompt_attention_mask=cond[1],
                    negative_prompt_embeds=uncond[0], negative_prompt_attention_mask=uncond[1],
                    height=HEIGHT, width=WIDTH, guidance_scale=CFG, sigmas=sigmas4,
                    latents=noise.clone(), use_resolution_binning=False, clean_caption=False,
                    output_type="latent").images
    with torch.no_grad():
        image4 = pipe.vae.decode(latents4 / 0.13025).sample
    sigmas5 = pipeline_ref.comfy_normal_sigmas(5, betas())
    latents5 = comfy_loop(pipe, cond, uncond, noise, sigmas5)
    weighted_ids, weighted_context = comfy_weighted(pipe.tokenizer, pipe.text_encoder)
    save_file({"sigmas4": torch.tensor(sigmas4, dtype=torch.float64),
               "latents4": latents4.contiguous(), "image4": image4.contiguous(),
               "sigmas5": torch.tensor(sigmas5, dtype=torch.float64),
               "latents5": latents5.contiguous(), "weighted_ids": weighted_ids,
               "weighted_context": weighted_context.contiguous()},
              os.path.join(out, "io.safetensors"))


if __name__ == "__main__":
    main()
