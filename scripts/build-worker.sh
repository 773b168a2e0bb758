#!/usr/bin/env bash
# Builds the Worker (release) with worker-build into build/worker/, using the project-local
# wasm-bindgen, wasm-opt and esbuild (worker-build would otherwise download them).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/worker"
worker-build --release >"$ROOT/build/worker-build.log" 2>&1 || { cat "$ROOT/build/worker-build.log"; exit 1; }
rm -rf "$ROOT/build/worker" && mv build "$ROOT/build/worker"
# Opt-in for profiling (make profile): CAPI_WORKER_NAMES_DIR=DIR also keeps a copy of the same
# build with the wasm name section, so V8 CPU profiles show Rust function names. build/worker
# itself is unchanged.
if [ -n "${CAPI_WORKER_NAMES_DIR:-}" ]; then
  names_dir="$ROOT/$CAPI_WORKER_NAMES_DIR"; case "$CAPI_WORKER_NAMES_DIR" in /*) names_dir="$CAPI_WORKER_NAMES_DIR" ;; esac
  rm -rf "$names_dir" && mkdir -p "$(dirname "$names_dir")" && cp -R "$ROOT/build/worker" "$names_dir"
  echo "worker with names: $names_dir/"
fi
# worker-build keeps the name section (~110 KB); browsers and Cloudflare never need it.
wasm-opt --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue "$ROOT/build/worker/index_bg.wasm" -o "$ROOT/build/worker/index_bg.wasm"
echo "worker built: build/worker/"
