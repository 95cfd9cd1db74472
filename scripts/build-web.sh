#!/usr/bin/env bash
# Builds the page into dist/: the engine for wasm32 (release, single-threaded), its JS glue
# (wasm-bindgen), then the bundle (webpack).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --lib --no-default-features --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir pkg target/wasm32-unknown-unknown/release/anondistill.wasm
# binaryen's optimiser; the features are those rustc's wasm32 target emits, plus SIMD.
wasm-opt -O2 --enable-bulk-memory --enable-multivalue --enable-mutable-globals --enable-nontrapping-float-to-int \
  --enable-reference-types --enable-sign-ext --enable-simd pkg/anondistill_bg.wasm -o pkg/anondistill_bg.wasm
npx webpack --mode production
ls -l dist/*.wasm | awk '{printf "wasm size: %.1f MiB\n", $5 / 1048576}'
