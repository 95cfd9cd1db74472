#!/usr/bin/env bash
# Distils the built-in demo X-ray patches natively and writes result.zip; extra arguments go to
# `anondistill distill` (e.g. a data folder, --max-iterations 50).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release
exec ./target/release/anondistill distill --out result.zip "$@"
