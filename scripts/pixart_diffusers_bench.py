"""Reference timing of PixArt-Σ XL 1024 with diffusers and transformers, random weights, on
CUDA: the figures `imagelab bench --model pixart` prints beside them.

Random weights do the same arithmetic as trained ones. Measured: T5-XXL encoding of the
prompt and the negative (300 tokens each, bf16), one transformer step with CFG (batch 2,
fp16), a 20-step Euler loop, the VAE decode (bf16, as the engine runs the SDXL VAE under
fp16) and the peak allocated memory. Prints one JSON object per measurement and a SUMMARY
line; writes $OUT/pixart_diffusers.json. Knobs (environment): RES (1024), STEPS (20), OUT.
"""
import json, os, time

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, PixArtTransformer2DModel
from transformers import T5Config, T5EncoderModel

DEV = "cuda"
RES = int(os.environ.get("RES", "1024"))
STEPS = int(os.environ.get("STEPS", "20"))
OUT = os.environ.get("OUT", "/tmp")
TOKENS = 300
CFG = 4.5

TRANSFORMER = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
    num_layers=28, cross_attention_dim=1152, sample_size=128, patch_size=2,
    caption_channels=4096, use_additional_conditions=False, interpolation_scale=2,
    norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
    activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
)
T5_XXL = T5Config(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
)
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    sample_size=1024, scaling_factor=0.13025,
)
results = {}


def emit(name, **kv):
    results[name] = kv
    print(json.dumps({"name": name, **kv}), flush=True)


def cuda_time(fn, warm=2, reps=7):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return dict(median=round(times[len(times) // 2], 2), min=round(times[0], 2),
                max=round(times[-1], 2))


def main():
    torch.backends.cuda.matmul.allow_tf32 = True
    emit("env", torch=torch.__version__, gpu=torch.cuda.get_device_name(0), res=RES, steps=STEPS)
    start = time.time()
    with torch.device(DEV):
        dit = PixArtTransformer2DModel(**TRANSFORMER).to(torch.float16).eval()
        t5 = T5EncoderModel(T5_XXL).to(torch.bfloat16).eval()
        vae = AutoencoderKL(**VAE).to(torch.bfloat16).eval()
    torch.cuda.synchronize()
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in
              dict(transformer=dit, t5=t5, vae=vae).items()}
    emit("build", seconds=round(time.time() - start, 2), params=params,
         mem_gib=round(torch.cuda.memory_allocated() / 2**30, 2))

    g = torch.Generator(device=DEV).manual_seed(0)
    lat = RES // 8
    with torch.inference_mode():
        ids = torch.randint(0, 32000, (2, TOKENS), device=DEV, generator=g)
        mask = torch.ones(2, TOKENS, device=DEV, dtype=torch.long)
        mask[:, 40:] = 0
        emit("t5_encode_b2_ms", **cuda_time(lambda: t5(ids, attention_mask=mask)[0]))
        caption = t5(ids, attention_mask=mask)[0].to(torch.float16)
        x = torch.randn(2, 4, lat, lat, device=DEV, dtype=torch.float16, generator=g)
        t = torch.tensor([999.0, 999.0], device=DEV)
        step = lambda: dit(x, encoder_hidden_states=caption, timestep=t,
                           encoder_attention_mask=mask).sample
        emit("transformer_step_cfg_b2_fp16_ms", **cuda_time(step))

        sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=1e-4,
                                       beta_end=0.02, beta_schedule="linear")

        def loop():
            sched.set_timesteps(STEPS, device=DEV)
            lt = torch.randn(1, 4, lat, lat, device=DEV, generator=g) * sched.init_noise_sigma
            for ts in sched.timesteps:
                inp = sched.scale_model_input(torch.cat([lt] * 2), ts).to(torch.float16)
                out = dit(inp, encoder_hidden_states=caption, timestep=ts.expand(2),
                          encoder_attention_mask=mask).sample[:, :4].float()
                u, c = out.chunk(2)
                lt = sched.step(u + CFG * (c - u), ts, lt).prev_sample
            return lt

        torch.cuda.reset_peak_memory_stats()
        loop_ms = cuda_time(loop, warm=1, reps=3)
        emit("denoise_loop_ms", **loop_ms, per_step_ms=round(loop_ms["median"] / STEPS, 2))
        z = torch.randn(1, 4, lat, lat, device=DEV, dtype=torch.bfloat16, generator=g)
        emit("vae_decode_ms", **cuda_time(lambda: vae.decode(z / 0.13025).sample, reps=3))
        emit("peak_mem", gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))

    with open(os.path.join(OUT, "pixart_diffusers.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("SUMMARY", json.dumps({k: v.get("median", v) for k, v in results.items() if k != "env"}))


if __name__ == "__main__":
    main()
