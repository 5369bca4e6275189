#!/usr/bin/env bash
# The whole test suite, after setup: formatting, lints, then every test in the workspace
# (unit tests, Python-reference parity tests on small random models, CLI tests).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
. "$repo/scripts/env.sh"
cd "$repo"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$IMAGELAB_CACHE/last-test.log"
