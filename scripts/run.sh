#!/usr/bin/env bash
# Builds the page (wasm engine + bundle) and serves it on http://127.0.0.1:8080 (PORT to change);
# the built-in demo X-ray patches are one click away. `scripts/run.sh cli [args]` instead runs
# the native command line on the demo (or the data given) and writes result.zip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = cli ]; then
  shift
  source scripts/setup.sh
  cargo build --release
  exec ./target/release/anondistill distill --out result.zip "$@"
fi
bash scripts/build-web.sh
exec node scripts/serve.mjs
