#!/usr/bin/env bash
# The checks that need an NVIDIA GPU (run on a GPU machine, not in CI): full-size SDXL parity
# against diffusers in fp16, a 1024x1024 `imagelab generate` on CUDA, `imagelab bench`, and
# the diffusers reference benchmarks beside it (SDXL, and PixArt-Σ from
# scripts/pixart_diffusers_bench.py; same call, same machine). Expects the binaries built by
#   cargo build --release -p imagelab -p imagelab-engine --example full_size_parity
# in $BIN (default: $CARGO_TARGET_DIR/release) and a Python with torch, diffusers and
# transformers (default: python3). Results go to $OUT (default: ./gpu-check).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/imagelab/target}/release}"
out="${OUT:-$PWD/gpu-check}"
py="${PYTHON:-python3}"
mkdir -p "$out/work/models/checkpoints" "$out/work/output" "$out/home"
export LD_LIBRARY_PATH="$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):${LD_LIBRARY_PATH:-}"
export AIIMAGEGEN_HOME="$out/home" PYTHONUNBUFFERED=1

echo "== full-size SDXL reference (diffusers, fp16, CUDA)"
"$py" "$repo/crates/engine/tests/reference/full_size_ref.py" --out "$out/work" --steps 4 --size 1024
echo "== imagelab on the same weights: CLIP, UNet + sampler, VAE"
"$bin/examples/full_size_parity" "$out/work" fp16 1e-2 | tee "$out/parity.txt"
echo "== imagelab generate, 1024x1024, 20 steps, CUDA"
ln -sf "$out/work/sdxl_full.safetensors" "$out/work/models/checkpoints/sdxl_full.safetensors"
( cd "$out/work" && IMAGELAB_APP_DIR="$out/work" /usr/bin/time -v "$bin/imagelab" generate --model sdxl_full \
    --prompt "a lighthouse at dusk" --device cuda --dtype fp16 --seed 1 --json ) 2>&1 | tee "$out/generate.txt"
echo "== imagelab bench (SDXL 1024², SD 1.5 512², PixArt-Σ 1024², fp16)"
bench_dir="$out/bench-work"   # kept: the SDXL checkpoint is written once for every variant
( cd "$out/work" && "$bin/imagelab" bench --work-dir "$bench_dir" --json "$out/imagelab_bench.json" ) 2>&1 | tee "$out/imagelab_bench.txt" || true
echo "== what each switch saves or costs (SDXL): one variant per run"
for variant in "--no-fused-qkv" "--no-cudnn-benchmark" "--channels-last" "--low-vram" "--cfg-batching sequential" "--attention sliced"; do
  name="$(echo "$variant" | tr -d ' -')"
  # shellcheck disable=SC2086
  ( cd "$out/work" && "$bin/imagelab" bench --model sdxl --work-dir "$bench_dir" $variant \
      --json "$out/imagelab_bench_$name.json" ) 2>&1 | tee "$out/imagelab_bench_$name.txt" || true
done
echo "== PixArt-Σ under --low-vram (T5 streamed a block at a time; the 12 GiB target)"
( cd "$out/work" && "$bin/imagelab" bench --model pixart --work-dir "$bench_dir" --low-vram \
    --json "$out/imagelab_bench_pixart_lowvram.json" ) 2>&1 | tee "$out/imagelab_bench_pixart_lowvram.txt" || true
echo "== diffusers reference benchmark"
OUT="$out" "$py" "$repo/../shared/perf/sdxl_diffusers_bench.py" 2>&1 | tail -3 | tee "$out/diffusers_bench.txt" || true
echo "== diffusers reference benchmark, PixArt-Σ (transformer fp16, T5 and VAE bf16)"
OUT="$out" "$py" "$repo/scripts/pixart_diffusers_bench.py" 2>&1 | tail -3 | tee "$out/pixart_diffusers_bench.txt" || true
