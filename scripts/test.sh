#!/usr/bin/env bash
# The whole test suite, after setup: formatting, lints, then every test in the workspace
# (unit tests, Python-reference parity tests on small random models, CLI tests). Ends with
# one "total: N passed, N failed" line summing every test binary.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
. "$repo/scripts/env.sh"
cd "$repo"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log="$IMAGELAB_CACHE/last-test.log"
status=0
cargo test --workspace --all-targets --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# The Slurm tests start the single-node test cluster; stop it again.
bash "$repo/scripts/slurm-test-cluster.sh" down >/dev/null 2>&1 || true
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
