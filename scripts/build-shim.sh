#!/usr/bin/env bash
# Builds the pixel shim into build/shim/{p.js,p.wasm}: release wasm → wasm-bindgen (web-target
# glue) → wasm-opt -Oz → loader + glue bundled, tree-shaken and minified by esbuild into one
# classic script, the wasm URL versioned by content. After cargo, nothing runs when the inputs
# (the cargo wasm, the loader, this script, the pinned tools) are those of the last build: the
# files stay untouched, so the Worker that embeds them is not rebuilt either.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# No panic carries its file and line (-Z location-detail=none: the shim's panics trap anyway),
# and paths into the standard library stay the toolchain's /rustc/… ones even where its
# rust-src is installed (the Worker's build needs it): the shim is the same bytes on every
# machine. Unstable flags: see cargo_wasm (scripts/env.sh).
cargo_wasm shim -Zlocation-detail=none -Ztranslate-remapped-path-to-local-path=no -- -p capi-pixel
wasm=target/shim/wasm32-unknown-unknown/release/capi_pixel.wasm
key=$(inputs_key "$wasm" pixel-shim/loader.js scripts/build-shim.sh scripts/env.sh)
if [ -f build/shim/p.js ] && [ -f build/shim/p.wasm ] && stamp_matches shim "$key"; then
  echo "shim up to date: build/shim/p.js, build/shim/p.wasm"
  exit 0
fi
stamp_clear shim
tmp=build/shim-tmp
rm -rf "$tmp" && mkdir -p "$tmp" build/shim
wasm-bindgen --target web --no-typescript --out-dir "$tmp" "$wasm"
# --low-memory-unused: Rust's data and stack start at 1 MiB, so addresses below 1 KiB are never used (-130 B gzip).
wasm-opt -Oz --converge --low-memory-unused --strip-debug --strip-producers --strip-target-features --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  "$tmp/capi_pixel_bg.wasm" -o build/shim/p.wasm
version=$(sha256sum build/shim/p.wasm | cut -c1-12)
sed "s/__WASM_VERSION__/$version/" pixel-shim/loader.js > "$tmp/loader.js"
esbuild "$tmp/loader.js" --bundle --minify --format=iife --target=es2017 --log-level=warning --log-override:empty-import-meta=silent --log-override:duplicate-object-key=silent --outfile=build/shim/p.js
rm -rf "$tmp"
# The Worker writes its privacy modes over this exact literal when serving p.js.
grep -q '"__CAPI_MODES__"' build/shim/p.js || { echo 'build-shim: the "__CAPI_MODES__" literal did not survive bundling' >&2; exit 1; }
stamp_write shim "$key"
echo "shim built: build/shim/p.js, build/shim/p.wasm (v=$version)"
