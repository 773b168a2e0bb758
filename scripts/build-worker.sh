#!/usr/bin/env bash
# Builds the Worker (release) into build/worker/: cargo (wasm32), the project-local wasm-bindgen
# (module target, with the state-reset function that recovers from a panic), wasm-opt, and
# esbuild bundling our entry module (worker/entry.mjs) with wasm-bindgen's glue.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
stage="$ROOT/build/.worker-stage"
rm -rf "$stage" && mkdir -p "$stage"
cargo build -q --release --target wasm32-unknown-unknown -p capi-worker --lib
wasm-bindgen "$ROOT/target/wasm32-unknown-unknown/release/capi_worker.wasm" --out-dir "$stage" \
  --target module --out-name index --no-typescript \
  --experimental-reset-state-function --force-enable-abort-handler
features=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory
  --enable-multivalue --enable-reference-types --enable-exception-handling)
wasm-opt -O "${features[@]}" --debuginfo "$stage/index_bg.wasm" -o "$stage/index_bg.wasm"
cp worker/entry.mjs "$stage/entry.mjs"
esbuild "$stage/entry.mjs" --bundle --format=esm --minify --log-level=warning \
  --external:./index_bg.wasm '--external:cloudflare:*' --outfile="$stage/out/index.js"
cp "$stage/index_bg.wasm" "$stage/out/index_bg.wasm"
# Opt-in for profiling (make profile): CAPI_WORKER_NAMES_DIR=DIR also keeps a copy of the same
# build with the wasm name section, so V8 CPU profiles show Rust function names. build/worker
# itself is unchanged.
if [ -n "${CAPI_WORKER_NAMES_DIR:-}" ]; then
  names_dir="$ROOT/$CAPI_WORKER_NAMES_DIR"; case "$CAPI_WORKER_NAMES_DIR" in /*) names_dir="$CAPI_WORKER_NAMES_DIR" ;; esac
  rm -rf "$names_dir" && mkdir -p "$(dirname "$names_dir")" && cp -R "$stage/out" "$names_dir"
  echo "worker with names: $names_dir/"
fi
# The name section (~110 KB) is for profiles only; Cloudflare never needs it. A last -Oz pass
# on the stripped module saves ≈ 2.8 KB gzip (no CPU change measurable under wrk).
wasm-opt -Oz --strip-debug --strip-producers "${features[@]}" "$stage/out/index_bg.wasm" -o "$stage/out/index_bg.wasm"
rm -rf "$ROOT/build/worker" && mv "$stage/out" "$ROOT/build/worker" && rm -rf "$stage"
echo "worker built: build/worker/"
