#!/usr/bin/env bash
# Builds the page into dist/: the engine for wasm32 (release, single-threaded), its JS glue
# (wasm-bindgen), then the bundle (webpack).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --lib --no-default-features --target wasm32-unknown-unknown
# binaryen's optimiser, on rustc's output: the features are those rustc's wasm32 target emits,
# plus SIMD. (Run after wasm-bindgen instead, Debian's binaryen 108 breaks the externref table.)
mkdir -p target/wasm-opt
wasm-opt -O2 --enable-bulk-memory --enable-multivalue --enable-mutable-globals --enable-nontrapping-float-to-int \
  --enable-reference-types --enable-sign-ext --enable-simd \
  target/wasm32-unknown-unknown/release/anondistill.wasm -o target/wasm-opt/anondistill.wasm
wasm-bindgen --target web --out-dir pkg target/wasm-opt/anondistill.wasm
npx webpack --mode production
ls -l dist/*.wasm | awk '{printf "wasm size: %.1f MiB\n", $5 / 1048576}'
