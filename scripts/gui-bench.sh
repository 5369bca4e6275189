#!/usr/bin/env bash
# The desktop app's benchmark: the window's start with 10,000 images in output/, the delay
# from a click on Generate to the daemon's answer, and from a preview event to the frame
# that paints it. Runs the real app under Xvfb (llvmpipe) on a tiny random checkpoint with
# its own CPU daemon, and prints each figure beside its target.
# Usage: bash scripts/gui-bench.sh [IMAGES=10000] [GENERATIONS=5]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
images="${1:-10000}"
generations="${2:-5}"
. "$repo/scripts/env.sh"
cd "$repo"
cargo build -q -p imagelab -p imagelab-gui
sandbox="$(mktemp -d)"
trap 'rm -rf "$sandbox"' EXIT
mkdir -p "$sandbox"/{home,output,jobs,models/checkpoints,models/vae,models/clip}
"$IMAGELAB_VENV/bin/python" crates/engine/tests/reference/pipeline_ref.py --out "$sandbox/fixtures" >/dev/null 2>&1
cp "$sandbox/fixtures/sd1.safetensors" "$sandbox/models/checkpoints/tiny.safetensors"
printf 'gpus: []\nscheduler: { preview_every: 1 }\n' > "$sandbox/home/config.yaml"
printf 'form:\n  model: tiny.safetensors\n  width: 128\n  height: 128\n  steps: 20\n' > "$sandbox/home/gui.yaml"
# 10,000 distinct 256 px PNGs (one drawn image, copied: the app cannot tell).
convert -size 256x256 plasma:fractal "$sandbox/seed.png"
for i in $(seq -f '%06g' 1 "$images"); do cp "$sandbox/seed.png" "$sandbox/output/bench$i.png"; done
trace="$sandbox/trace.txt"
cd "$sandbox"
AIIMAGEGEN_HOME="$sandbox/home" IMAGELAB_APP_DIR="$sandbox" XDG_CACHE_HOME="$sandbox/cache" \
  CUDA_VISIBLE_DEVICES="" GTK_A11Y=atspi IMAGELAB_GUI_TRACE="$trace" \
  xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- bash -c \
  "'$CARGO_TARGET_DIR/debug/imagelab-gui' & app=\$!; \
   /usr/bin/python3 '$repo/crates/gui/tests/e2e/bench.py' $generations >/dev/null; status=\$?; \
   kill \$app 2>/dev/null; wait \$app; exit \$status" 2>/dev/null
python3 - "$trace" "$images" <<'PY'
import statistics, sys
marks = {}
for line in open(sys.argv[1]):
    *name, value = line.split()
    marks.setdefault(" ".join(name), []).append(float(value))
def row(label, values, target):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    print(f"{label:<44} n={len(values):<3} median {statistics.median(values):8.2f} ms  p95 {p95:8.2f} ms  max {values[-1]:8.2f} ms   target {target}")
listed = [v for k, vs in marks.items() if k.startswith("gallery-listed") for v in vs]
row("window mapped (from process start)", marks.get("window-mapped", []), "< 1000 ms")
row(f"gallery listed, {sys.argv[2]} images (from start)", listed, "(thumbnails follow)")
row("Generate click -> request sent (off the main thread)", marks.get("generate-click-to-sent", []), "< 50 ms")
row("Generate click -> daemon accepted (durably)", marks.get("generate-click-to-accepted", []), "(round trip)")
row("preview event -> frame painted", marks.get("preview-event-to-paint", []), "< 100 ms")
for k, vs in marks.items():
    if not k.startswith("window") and not k.startswith("gallery"): print(k, " ".join(f"{v:.1f}" for v in vs))
PY
