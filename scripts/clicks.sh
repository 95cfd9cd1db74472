#!/usr/bin/env bash
# The random-action test of the page (tests/e2e/clicks.test.mjs) over more seeds and actions than
# CI runs: scripts/clicks.sh [seeds] [actions], e.g. scripts/clicks.sh 1,2,3,4,5,6,7,8 200.
# Builds the page first when dist/ is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/index.html ] || bash scripts/build-web.sh
CLICK_SEEDS="${1:-1,2,3,4,5,6,7,8,9,10}" CLICK_ACTIONS="${2:-200}" node --test tests/e2e/clicks.test.mjs
