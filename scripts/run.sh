#!/usr/bin/env bash
# The main job: set up, build the release binary, and generate an image.
#   bash scripts/run.sh --prompt "a lighthouse at dusk" --model sd_xl_base_1.0
# Any `imagelab generate` flags may follow; without a checkpoint it explains where to put one.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
. "$repo/scripts/env.sh"
cd "$repo"
cargo build --release --locked -p imagelab
exec "$CARGO_TARGET_DIR/release/imagelab" generate "$@"
