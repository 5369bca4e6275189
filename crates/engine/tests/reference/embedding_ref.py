"""Reference for tests/embedding_parity.rs: textual-inversion embeddings for the tiny SD 1.x
and SDXL models of pipeline_ref.py, inserted by hand into diffusers' pipelines (new tokens
in the tokenizers, their vectors written into the text encoders' token embeddings), run
prompt to latents.

Writes to --out:
  sd1.safetensors, sdxl.safetensors   the base checkpoints (single file)
  embeddings/ink.safetensors          SD 1.x, A1111's emb_params layout, 2 vectors
  embeddings/neg.safetensors          SD 1.x, A1111's string_to_param layout, 1 vector
  embeddings/xl_ink.safetensors       SDXL, the clip_l / clip_g pair, 2 vectors
  sd1_io.safetensors, sdxl_io.safetensors   latents from the prompts below
The engine's prompts name them as `embedding:ink` (ComfyUI) and bare `neg` (A1111); the
reference's name the added tokens. The pooled output is read at the first end token, as
ComfyUI reads it (transformers' legacy eos_token_id=2 rule would pick the new tokens).
"""
import argparse, copy, os, sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_ref as base  # noqa: E402

EOS = 49407
PROMPTS = {
    "sd1": ("a lighthouse <ink0> <ink1> at dusk, volumetric light", "blurry, low quality, <neg0>"),
    "sdxl": ("a lighthouse <xl0> <xl1> at dusk, volumetric light", "blurry, low quality"),
}


def vectors(encoder, count, seed):
    table = encoder.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(count, table.shape[1], generator=gen) * table.std()).contiguous()


def insert(tokenizer, encoder, tokens, rows):
    """Adds `tokens` to the tokenizer and writes `rows` as their token embeddings."""
    tokenizer.add_tokens(tokens)
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    for module in encoder.modules():  # wherever this transformers version keeps it
        if hasattr(module, "eos_token_id"):
            module.eos_token_id = EOS
    ids = tokenizer.convert_tokens_to_ids(tokens)
    with torch.no_grad():
        encoder.get_input_embeddings().weight[ids] = rows
    return ids


def run(pipe, noise, sigmas, name, out):
    prompt, negative = PROMPTS[name]
    latents = pipe(prompt=prompt, negative_prompt=negative, height=base.SIZE, width=base.SIZE,
                   guidance_scale=base.CFG, sigmas=sigmas, latents=noise.clone(),
                   output_type="latent").images
    save_file({"latents": latents.contiguous()}, os.path.join(out, f"{name}_io.safetensors"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    folder = os.path.join(out, "embeddings")
    os.makedirs(folder, exist_ok=True)
    tokenizer, tokenizer_g, sigmas, noise = base.setup(out)

    pipe, ckpt = base.build_sd1(copy.deepcopy(tokenizer))
    save_file({k: v.contiguous() for k, v in ckpt.items()}, os.path.join(out, "sd1.safetensors"))
    ink, neg = vectors(pipe.text_encoder, 2, 1), vectors(pipe.text_encoder, 1, 2)
    save_file({"emb_params": ink}, os.path.join(folder, "ink.safetensors"))
    save_file({"string_to_param.*": neg}, os.path.join(folder, "neg.safetensors"))
    insert(pipe.tokenizer, pipe.text_encoder, ["<ink0>", "<ink1>", "<neg0>"], torch.cat([ink, neg]))
    plain = pipe.tokenizer("a lighthouse")["input_ids"][1:-1]
    got = pipe.tokenizer(PROMPTS["sd1"][0])["input_ids"]
    assert got[: len(plain) + 3] == [49406] + plain + [49408, 49409], got
    run(pipe, noise, sigmas, "sd1", out)

    pipe, ckpt = base.build_sdxl(copy.deepcopy(tokenizer), copy.deepcopy(tokenizer_g))
    save_file({k: v.contiguous() for k, v in ckpt.items()}, os.path.join(out, "sdxl.safetensors"))
    clip_l, clip_g = vectors(pipe.text_encoder, 2, 3), vectors(pipe.text_encoder_2, 2, 4)
    save_file({"clip_l": clip_l, "clip_g": clip_g}, os.path.join(folder, "xl_ink.safetensors"))
    insert(pipe.tokenizer, pipe.text_encoder, ["<xl0>", "<xl1>"], clip_l)
    insert(pipe.tokenizer_2, pipe.text_encoder_2, ["<xl0>", "<xl1>"], clip_g)
    run(pipe, noise, sigmas, "sdxl", out)


if __name__ == "__main__":
    main()
