#!/usr/bin/env bash
# Runs every test: unit tests beside the code, the finite-difference checks of the
# hyper-gradient, backend agreement, bad input and end-to-end runs natively; then the page built
# for the browser, driven in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
export WITH_BROWSER=1
source scripts/setup.sh
start=$(date +%s)
cargo build --release --all-targets
cargo test --release --no-fail-fast -- --test-threads 2
echo "native tests done after $(( $(date +%s) - start )) s"
bash scripts/test-browser.sh
echo "wasm tests in Chromium done after $(( $(date +%s) - start )) s"
bash scripts/build-web.sh
node --test tests/e2e/
echo "all tests done after $(( $(date +%s) - start )) s"
