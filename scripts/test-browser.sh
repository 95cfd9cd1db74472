#!/usr/bin/env bash
# The engine's wasm-bindgen tests (tests/web.rs) in headless Chromium, twice: without WebGPU
# (requestAdapter() gives null, the CPU backend runs) and with --enable-unsafe-webgpu (SwiftShader's
# adapter on a machine without a GPU, so the WebGPU backend runs too).
set -euo pipefail
cd "$(dirname "$0")/.."
export WITH_BROWSER=1
source scripts/setup.sh
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER="$(command -v chromedriver)"
export WASM_BINDGEN_TEST_TIMEOUT=1200
for mode in cpu webgpu; do
  echo "== wasm tests in Chromium, $mode"
  expect=0
  [ "$mode" = webgpu ] && expect=1
  ANONDISTILL_EXPECT_WEBGPU=$expect WASM_BINDGEN_TEST_WEBDRIVER_JSON="tests/webdriver/$mode.json" \
    cargo test --release --no-default-features --target wasm32-unknown-unknown --test web -- --nocapture
done
