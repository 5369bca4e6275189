"""Reference outputs for the T5 encoder (crates/engine/src/t5).

Builds two tiny transformers T5EncoderModels with seeded random weights:
  * "gated": T5 v1.1's gated-gelu feed-forward (what PixArt-Σ uses), 3 layers, 8 buckets,
    so a 40-token prompt reaches the logarithmic buckets and the max-distance clamp
    (max_distance 128 cannot be changed from the Rust side, so the tokens run to 160);
  * "relu": T5 v1.0's ReLU feed-forward,
and writes, under --out:
  * gated_hf/              gated.save_pretrained (config.json + model.safetensors)
  * gated_sharded/          the same, in shards with model.safetensors.index.json (as
                           PixArt-Σ's diffusers text_encoder/ has it)
  * gated_prefixed.safetensors  the same tensors under `text_encoders.t5xxl.transformer.`
  * relu.safetensors       the relu model's state dict
  * expected.safetensors   tokens, masks and last hidden states (float32, and the gated
                           model run in bfloat16 for a precision check)
"""

import argparse
import os

import torch
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel

VOCAB = 500
LENGTH = 160


def randomize(model, generator):
    """Every parameter random: norms around 1, projections at 1/sqrt(fan-in)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "layer_norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif "relative_attention_bias" in name or "shared" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / p.shape[1] ** 0.5)


def build(feed_forward, generator):
    config = T5Config(
        vocab_size=VOCAB,
        d_model=64,
        d_kv=16,
        d_ff=96,
        num_layers=3,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=128,
        feed_forward_proj=feed_forward,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
    )
    model = T5EncoderModel(config).eval()
    randomize(model, generator)
    return model


def token_batch(generator):
    """Rows of 3, 40 and 160 real tokens ending in EOS (1), padded with 0."""
    tokens = torch.zeros(3, LENGTH, dtype=torch.int64)
    mask = torch.zeros(3, LENGTH, dtype=torch.int64)
    for row, words in enumerate((3, 40, LENGTH)):
        tokens[row, : words - 1] = torch.randint(2, VOCAB, (words - 1,), generator=generator)
        tokens[row, words - 1] = 1
        mask[row, :words] = 1
    return tokens, mask


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    generator = torch.Generator().manual_seed(5)
    gated = build("gated-gelu", generator)
    relu = build("relu", generator)
    tokens, mask = token_batch(generator)

    gated.save_pretrained(os.path.join(out, "gated_hf"), safe_serialization=True)
    gated.save_pretrained(os.path.join(out, "gated_sharded"), max_shard_size="60KB")
    # The embedding is tied: the prefixed copy keeps only `shared.weight`, the relu file
    # only `encoder.embed_tokens.weight`, so both names are read.
    state = {k: v.clone() for k, v in gated.state_dict().items()}
    state.pop("encoder.embed_tokens.weight")
    prefixed = {f"text_encoders.t5xxl.transformer.{k}": v for k, v in state.items()}
    prefixed["text_encoders.t5xxl.logit_scale"] = torch.tensor(1.0)
    save_file(prefixed, os.path.join(out, "gated_prefixed.safetensors"))
    relu_state = {k: v.clone() for k, v in relu.state_dict().items()}
    relu_state.pop("shared.weight")
    save_file(relu_state, os.path.join(out, "relu.safetensors"))

    expected = {"tokens": tokens, "mask": mask}
    with torch.no_grad():
        expected["gated"] = gated(input_ids=tokens, attention_mask=mask).last_hidden_state
        expected["relu"] = relu(input_ids=tokens, attention_mask=mask).last_hidden_state
        expected["gated_unmasked"] = gated(input_ids=tokens).last_hidden_state
        low = build("gated-gelu", torch.Generator().manual_seed(0))
        low.load_state_dict(gated.state_dict())
        low = low.to(torch.bfloat16)
        expected["gated_bf16"] = (
            low(input_ids=tokens, attention_mask=mask).last_hidden_state.float()
        )
    save_file(
        {k: v.contiguous() for k, v in expected.items()},
        os.path.join(out, "expected.safetensors"),
    )
    print(f"t5 reference written to {out}")


if __name__ == "__main__":
    main()
