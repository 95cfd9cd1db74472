#!/usr/bin/env bash
# Installs what the project needs on a Debian machine with Rust and Node; does nothing when it
# is already there. Sourced by run.sh and test.sh; `WITH_BROWSER=1` adds Chromium and its driver.
set -euo pipefail

apt_missing=()
command -v cc >/dev/null 2>&1 || apt_missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || apt_missing+=(pkg-config)
command -v wasm-opt >/dev/null 2>&1 || apt_missing+=(binaryen)
if [ "${WITH_BROWSER:-0}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || apt_missing+=(chromium-driver)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "setup: installing ${apt_missing[*]} with apt-get"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "setup: npm not found; install Node.js first" >&2; exit 1; }

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in Cargo.lock. Not --locked:
# its lock file pins a yanked webpki-roots.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  echo "setup: installing wasm-bindgen-cli $wb_version (a few minutes)"
  cargo install wasm-bindgen-cli --version "$wb_version" --quiet
fi

if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
