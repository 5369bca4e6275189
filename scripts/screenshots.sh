#!/usr/bin/env bash
# The README's screenshots (docs/setup.png, work.png, queue.png, favorites.png, analytics.png,
# night.png, gpus.png, work-pixart.png), taken from the real app under
# Xvfb: a fresh settings folder, a tiny random checkpoint built by the engine's reference
# script (so the image is noise-like: no real model is downloaded), and the app's own daemon
# on a CPU worker. Usage: bash scripts/screenshots.sh [OUT_DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$repo/docs}")"
. "$repo/scripts/env.sh"
cd "$repo"
cargo build -p imagelab -p imagelab-gui
sandbox="$(mktemp -d)"
trap 'rm -rf "$sandbox"' EXIT
mkdir -p "$sandbox/home" "$sandbox/models/checkpoints" "$out"
"$IMAGELAB_VENV/bin/python" crates/engine/tests/reference/pipeline_ref.py --out "$sandbox/fixtures" >/dev/null
cp "$sandbox/fixtures/sd1.safetensors" "$sandbox/models/checkpoints/tiny-sd15.safetensors"
mkdir -p "$sandbox/themes"
cat > "$sandbox/themes/lighthouses.yaml" <<'YAML'
description: Lighthouses on wild coasts, in every weather
templates: ["a {white|red and white|stone} lighthouse on a {cliff|reef|breakwater} in {fog|a storm|the blue hour}"]
settings: {size: 256x256, steps: [8]}
YAML
cat > "$sandbox/themes/harbours.yaml" <<'YAML'
description: Small harbours at night, long exposures
templates: ["a {fishing|ferry|sailing} harbour at night, {long exposure|wet cobbles|lantern light}"]
settings: {size: 256x256, steps: [8]}
YAML
cat > "$sandbox/home/gui.yaml" <<'YAML'
form:
  model: tiny-sd15.safetensors
  width: 256
  height: 256
  steps: 8
YAML
cd "$sandbox"
IMAGELAB_BIN="$CARGO_TARGET_DIR/debug/imagelab" AIIMAGEGEN_HOME="$sandbox/home" IMAGELAB_APP_DIR="$sandbox" XDG_CACHE_HOME="$sandbox/cache" \
  CUDA_VISIBLE_DEVICES="" GTK_A11Y=atspi \
  xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- bash -c \
  "'$CARGO_TARGET_DIR/debug/imagelab-gui' & app=\$!; \
   /usr/bin/python3 '$repo/crates/gui/tests/e2e/screenshots.py' '$out'; status=\$?; \
   kill \$app 2>/dev/null; wait \$app; exit \$status"

# PixArt-Σ's work screen: a second fresh app, a tiny random PixArt-Σ in ComfyUI's layout.
pixart="$(mktemp -d)"
trap 'rm -rf "$sandbox" "$pixart"' EXIT
mkdir -p "$pixart/home" "$pixart/models/checkpoints" "$pixart/models/clip" "$pixart/models/vae"
"$IMAGELAB_VENV/bin/python" "$repo/crates/engine/tests/reference/pixart_pipeline_ref.py" --out "$pixart/fixtures" >/dev/null 2>&1
cp "$sandbox/fixtures/sd1.safetensors" "$pixart/models/checkpoints/tiny-sd15.safetensors"
cp "$pixart/fixtures/comfy/pixart.safetensors" "$pixart/models/checkpoints/tiny-pixart-sigma.safetensors"
cp "$pixart/fixtures/comfy/clip/t5.safetensors" "$pixart/models/clip/t5xxl.safetensors"
cp "$pixart/fixtures/comfy/clip/spiece.model" "$pixart/models/clip/spiece.model"
cp "$pixart/fixtures/comfy/vae.safetensors" "$pixart/models/vae/sdxl_vae.safetensors"
printf 'form:\n  width: 256\n  height: 256\n' > "$pixart/home/gui.yaml"
cd "$pixart"
IMAGELAB_BIN="$CARGO_TARGET_DIR/debug/imagelab" AIIMAGEGEN_HOME="$pixart/home" IMAGELAB_APP_DIR="$pixart" XDG_CACHE_HOME="$pixart/cache" \
  CUDA_VISIBLE_DEVICES="" GTK_A11Y=atspi PYTHONPATH="$repo/crates/gui/tests/e2e" \
  xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- bash -c \
  "'$CARGO_TARGET_DIR/debug/imagelab-gui' & app=\$!; \
   /usr/bin/python3 '$repo/crates/gui/tests/e2e/screenshots_pixart.py' '$out'; status=\$?; \
   kill \$app 2>/dev/null; wait \$app; exit \$status"
