#!/usr/bin/env bash
# One-time (and idempotent) setup on Debian 12: system packages, a Rust toolchain, and the
# cached venv that supplies libtorch and the Python references. Safe to re-run: every step
# checks first and is skipped when already done.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/env.sh"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# 1. System packages (compilers for torch-sys's C++ shim, Python venv support; systemd for
#    the systemd-analyze that checks the units in systemd/; GTK 4 and libadwaita for the
#    desktop app; Xvfb, a D-Bus session, the accessibility bus and pyatspi for its end-to-end
#    test; ImageMagick for the README's screenshots; Slurm and munge for the test cluster of
#    scripts/slurm-test-cluster.sh).
packages=(build-essential pkg-config python3 python3-venv python3-pip curl ca-certificates git procps systemd
  libgtk-4-dev libadwaita-1-dev xvfb xauth dbus dbus-x11 at-spi2-core python3-pyatspi python3-gi
  gir1.2-atspi-2.0 imagemagick slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    say "missing system packages; run this, then re-run setup:"
    echo "  sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

# 2. Rust (Debian 12's rustc is too old for this workspace).
if ! command -v cargo >/dev/null 2>&1; then
  say "installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
fi

# 3. The venv with torch (libtorch for tch) and the reference implementations.
stamp="$IMAGELAB_VENV/.imagelab-requirements"
want="$(cat "$repo/requirements.txt"; echo k-diffusion==0.1.1.post1)"
if [ ! -x "$IMAGELAB_VENV/bin/python" ]; then
  say "creating the venv in $IMAGELAB_VENV"
  mkdir -p "$IMAGELAB_CACHE"
  python3 -m venv "$IMAGELAB_VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages (torch is large: the first time takes a while)"
  "$IMAGELAB_VENV/bin/python" -m pip install -q --upgrade pip
  "$IMAGELAB_VENV/bin/python" -m pip install -q -r "$repo/requirements.txt"
  # k-diffusion's own requirements pull in training tools (wandb, clip, …) the tests never
  # import; its sampling module needs only what requirements.txt already lists.
  "$IMAGELAB_VENV/bin/python" -m pip install -q --no-deps k-diffusion==0.1.1.post1
  printf '%s' "$want" > "$stamp"
fi
. "$repo/scripts/env.sh"   # again, now that torch exists: sets LIBTORCH_LIB / LD_LIBRARY_PATH

# 4. The folders ComfyUI users expect.
mkdir -p "$repo/models/checkpoints" "$repo/models/vae" "$repo/models/clip" "$repo/output" "$repo/jobs"
say "ready (venv: $IMAGELAB_VENV, build cache: $CARGO_TARGET_DIR)"
