#!/usr/bin/env bash
# Builds the pixel shim into build/shim/{p.js,p.wasm}: release wasm → wasm-bindgen (web-target
# glue) → wasm-opt -Oz → loader + glue bundled, tree-shaken and minified by esbuild into one
# classic script, the wasm URL versioned by content.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo build -q -p capi-pixel --release --target wasm32-unknown-unknown
tmp=build/shim-tmp
rm -rf "$tmp" && mkdir -p "$tmp" build/shim
wasm-bindgen --target web --no-typescript --out-dir "$tmp" target/wasm32-unknown-unknown/release/capi_pixel.wasm
wasm-opt -Oz --converge --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  "$tmp/capi_pixel_bg.wasm" -o build/shim/p.wasm
version=$(sha256sum build/shim/p.wasm | cut -c1-12)
sed "s/__WASM_VERSION__/$version/" pixel-shim/loader.js > "$tmp/loader.js"
esbuild "$tmp/loader.js" --bundle --minify --format=iife --target=es2017 --log-level=warning --log-override:empty-import-meta=silent --outfile=build/shim/p.js
rm -rf "$tmp"
echo "shim built: build/shim/p.js, build/shim/p.wasm (v=$version)"
