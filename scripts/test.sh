#!/usr/bin/env bash
# Runs every test: unit tests beside the code, the finite-difference checks of the
# hyper-gradient, bad input, and end-to-end runs on the demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
start=$(date +%s)
cargo build --release --all-targets
cargo test --release --no-fail-fast -- --test-threads 2
echo "all tests done in $(( $(date +%s) - start )) s"
