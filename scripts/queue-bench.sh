#!/usr/bin/env bash
# The Queue page's benchmark: 10,000 jobs arrive from the CLI while the page shows, then 20
# run with a progress event per step; then a new app lists the 10,000 at start. Runs the
# real app under Xvfb (llvmpipe) with its own CPU daemon on a tiny random checkpoint and
# prints, from the app's IMAGELAB_GUI_TRACE marks, how long each batch of new rows, each
# row update and the start-up listing held the GTK main thread.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/env.sh"
cd "$repo"
cargo build -q -p imagelab -p imagelab-gui
sandbox="$(mktemp -d)"
trap 'rm -rf "$sandbox"' EXIT
mkdir -p "$sandbox"/{home,output,jobs,models/checkpoints,models/vae,models/clip}
"$IMAGELAB_VENV/bin/python" crates/engine/tests/reference/pipeline_ref.py --out "$sandbox/fixtures" >/dev/null 2>&1
cp "$sandbox/fixtures/sd1.safetensors" "$sandbox/models/checkpoints/tiny.safetensors"
printf 'gpus: []\nscheduler: { preview_every: 1 }\n' > "$sandbox/home/config.yaml"
printf 'form:\n  model: tiny.safetensors\n  width: 64\n  height: 64\n  steps: 10\n' > "$sandbox/home/gui.yaml"
cd "$sandbox"
for phase in submit reopen; do
  AIIMAGEGEN_HOME="$sandbox/home" IMAGELAB_APP_DIR="$sandbox" XDG_CACHE_HOME="$sandbox/cache" \
    CUDA_VISIBLE_DEVICES="" GTK_A11Y=atspi IMAGELAB_GUI_TRACE="$sandbox/trace-$phase.txt" \
    IMAGELAB_BIN="$CARGO_TARGET_DIR/debug/imagelab" \
    timeout 900 xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- bash -c \
    "'$CARGO_TARGET_DIR/debug/imagelab-gui' & app=\$!; \
     /usr/bin/python3 '$repo/crates/gui/tests/e2e/queue_bench.py' $phase | grep -v '^ok:'; status=\${PIPESTATUS[0]}; \
     kill \$app 2>/dev/null; wait \$app; exit \$status" 2>/dev/null
done
python3 - "$sandbox/trace-submit.txt" "$sandbox/trace-reopen.txt" <<'PY'
import statistics, sys
def marks(path):
    found = {}
    for line in open(path):
        *name, value = line.split()
        found.setdefault(" ".join(name), []).append(float(value))
    return found
def row(label, values):
    if not values:
        print(f"{label:<52} (no samples)"); return
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    print(f"{label:<52} n={len(values):<5} median {statistics.median(values):8.3f} ms  p95 {p95:8.3f} ms  max {values[-1]:8.3f} ms")
submit, reopen = marks(sys.argv[1]), marks(sys.argv[2])
batches = {k: v for k, v in submit.items() if k.startswith("queue-upserted")}
sizes = sorted(int(k.split()[1]) for k in batches)
row(f"new rows placed per fetch (batches of {sizes[0] if sizes else 0}-{sizes[-1] if sizes else 0} jobs)", [v for vs in batches.values() for v in vs])
row("a progress event's row update (20 jobs x 10 steps)", submit.get("queue-row-update", []))
listed = [v for k, vs in reopen.items() if k.startswith("queue-listed") for v in vs]
row("start: 10,000 jobs listed on the page", listed)
PY
