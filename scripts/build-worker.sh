#!/usr/bin/env bash
# Builds the Worker (release) with worker-build into build/worker/, using the project-local
# wasm-bindgen, wasm-opt and esbuild (worker-build would otherwise download them).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/worker"
worker-build --release >"$ROOT/build/worker-build.log" 2>&1 || { cat "$ROOT/build/worker-build.log"; exit 1; }
rm -rf "$ROOT/build/worker" && mv build "$ROOT/build/worker"
# worker-build keeps the name section (~110 KB); browsers and Cloudflare never need it.
wasm-opt --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue "$ROOT/build/worker/index_bg.wasm" -o "$ROOT/build/worker/index_bg.wasm"
echo "worker built: build/worker/"
