"""Reference outputs for the CLIP text encoders (crates/engine/src/clip).

Builds two tiny transformers text encoders with seeded random weights:
  * "l": CLIPTextModel, quick_gelu, eos_token_id=2 (the legacy config value SD 1.x and
    SDXL ship, which makes transformers pool at the argmax of the token ids);
  * "g": CLIPTextModelWithProjection, gelu, eos_token_id=999 (pools at the first EOS),
and writes, under --out:
  * sd1.safetensors      l under `cond_stage_model.transformer.text_model.` (+ float position_ids)
  * sd1_legacy.safetensors  l under `cond_stage_model.transformer.` without `text_model.`
  * sdxl.safetensors     l under `conditioner.embedders.0.transformer.`, g in open_clip
                         layout under `conditioner.embedders.1.model.` plus extra keys to ignore
  * g_hf/                g.save_pretrained (config.json + model.safetensors, HF layout)
  * l_hf/                l.save_pretrained (transformers 5 writes CLIPTextModel without `text_model.`)
  * expected.safetensors tokens and outputs
The open_clip mapping here is written independently of the Rust loader and checked by
converting it back with diffusers' convert_open_clip_checkpoint.
"""

import argparse
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

VOCAB = 1000
BOS = 998
EOS = 999
POSITIONS = 77


def randomize(model, generator):
    """Every parameter random: layer norms around 1, the rest around 0 at a sane scale."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif p.dim() == 2 and "embedding" not in name:
                p.copy_(noise / p.shape[1] ** 0.5)
            else:
                p.copy_(0.3 * noise)


def token_batch(generator, pad):
    """Rows of varied length: [BOS, words..., EOS, pad...]; words avoid BOS/EOS/0."""
    rows = []
    for words in (0, 5, 23, 75):
        ids = torch.randint(1, BOS, (words,), generator=generator).tolist()
        row = [BOS] + ids + [EOS]
        row += [pad] * (POSITIONS - len(row))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int64)


def to_open_clip(hf, hidden):
    """HF CLIPTextModelWithProjection state dict -> open_clip text tower names."""
    out = {
        "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": hf["text_model.final_layer_norm.weight"],
        "ln_final.bias": hf["text_model.final_layer_norm.bias"],
        # open_clip multiplies `x @ text_projection`, so it stores [hidden, proj].
        "text_projection": hf["text_projection.weight"].t().contiguous(),
    }
    layer = 0
    while f"text_model.encoder.layers.{layer}.layer_norm1.weight" in hf:
        src = f"text_model.encoder.layers.{layer}."
        dst = f"transformer.resblocks.{layer}."
        for part in ("weight", "bias"):
            out[dst + f"attn.in_proj_{part}"] = torch.cat(
                [hf[src + f"self_attn.{p}_proj.{part}"] for p in ("q", "k", "v")], dim=0
            )
            out[dst + f"attn.out_proj.{part}"] = hf[src + f"self_attn.out_proj.{part}"]
            out[dst + f"ln_1.{part}"] = hf[src + f"layer_norm1.{part}"]
            out[dst + f"ln_2.{part}"] = hf[src + f"layer_norm2.{part}"]
            out[dst + f"mlp.c_fc.{part}"] = hf[src + f"mlp.fc1.{part}"]
            out[dst + f"mlp.c_proj.{part}"] = hf[src + f"mlp.fc2.{part}"]
        layer += 1
    assert out["transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * hidden, hidden)
    return out


def check_inverse(model, open_clip, prefix):
    """diffusers' own converter must give back exactly the HF state dict."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    prefixed = {prefix + k: v for k, v in open_clip.items()}
    back = convert_open_clip_checkpoint(model, prefixed, prefix=prefix)
    hf = model.state_dict()
    assert set(back) == set(hf), (set(back) ^ set(hf))
    for k, v in hf.items():
        assert torch.equal(back[k], v), k


def final_norm_of(model):
    """transformers 5 flattens CLIPTextModel; the projection model keeps `text_model`."""
    inner = getattr(model, "text_model", model)
    return inner.final_layer_norm


def run(model, tokens, final_norm):
    with torch.no_grad():
        o = model(input_ids=tokens, output_hidden_states=True)
    hs = o.hidden_states
    res = {
        "hidden_last": hs[-1],
        "hidden_penultimate": hs[-2],
        "hidden_penultimate_ln": final_norm(hs[-2]),
        "last_hidden_state": o.last_hidden_state,
    }
    if hasattr(o, "text_embeds"):
        res["text_embeds"] = o.text_embeds
    else:
        res["pooler_output"] = o.pooler_output
    return res


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    common = dict(vocab_size=VOCAB, max_position_embeddings=POSITIONS, num_hidden_layers=3,
                  bos_token_id=BOS, pad_token_id=1, attn_implementation="eager")
    l_cfg = CLIPTextConfig(hidden_size=128, intermediate_size=512, num_attention_heads=2,
                           hidden_act="quick_gelu", eos_token_id=2, **common)
    g_cfg = CLIPTextConfig(hidden_size=192, intermediate_size=768, num_attention_heads=3,
                           hidden_act="gelu", eos_token_id=EOS, projection_dim=96, **common)
    l_model = CLIPTextModel(l_cfg).eval()
    g_model = CLIPTextModelWithProjection(g_cfg).eval()
    randomize(l_model, gen)
    randomize(g_model, gen)

    # transformers 5 keeps CLIPTextModel's keys without `text_model.`; single files have it.
    l_sd = {k if k.startswith("text_model.") else "text_model." + k: v.contiguous()
            for k, v in l_model.state_dict().items()}
    g_sd = {k: v.contiguous() for k, v in g_model.state_dict().items()}
    g_open = to_open_clip(g_sd, 192)
    check_inverse(g_model, g_open, "conditioner.embedders.1.model.")

    sd1 = {"cond_stage_model.transformer." + k: v for k, v in l_sd.items()}
    # Old single files carry float position ids (sometimes off by rounding); we ignore them.
    sd1["cond_stage_model.transformer.text_model.embeddings.position_ids"] = (
        torch.arange(POSITIONS, dtype=torch.float32)[None] + 1e-3)
    save_file(sd1, os.path.join(out, "sd1.safetensors"))
    legacy = {"cond_stage_model.transformer." + k[len("text_model."):]: v for k, v in l_sd.items()}
    save_file(legacy, os.path.join(out, "sd1_legacy.safetensors"))

    sdxl = {"conditioner.embedders.0.transformer." + k: v for k, v in l_sd.items()}
    sdxl.update({"conditioner.embedders.1.model." + k: v for k, v in g_open.items()})
    sdxl["conditioner.embedders.1.model.logit_scale"] = torch.tensor(4.6)
    sdxl["conditioner.embedders.1.model.visual.proj"] = torch.randn(8, 8, generator=gen)
    sdxl["model.diffusion_model.dummy.weight"] = torch.zeros(4)
    save_file(sdxl, os.path.join(out, "sdxl.safetensors"))

    for name, model in (("g_hf", g_model), ("l_hf", l_model)):
        model.save_pretrained(os.path.join(out, name))

    expected = {}
    for pad_name, pad in (("eos", EOS), ("zero", 0)):
        tokens = token_batch(gen, pad)
        expected[f"tokens_{pad_name}"] = tokens
        for name, model, norm in (("l", l_model, final_norm_of(l_model)),
                                  ("g", g_model, final_norm_of(g_model))):
            for key, value in run(model, tokens, norm).items():
                expected[f"{name}_{pad_name}_{key}"] = value.contiguous()
        # The pooled output before projection, for the projection model too.
        with torch.no_grad():
            expected[f"g_{pad_name}_pooler_output"] = g_model.text_model(input_ids=tokens).pooler_output
    save_file(expected, os.path.join(out, "expected.safetensors"))


if __name__ == "__main__":
    main()
