# Sourced by the scripts: project-local tools first on PATH, offline hygiene for wrangler.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$ROOT/.tools/bin:$ROOT/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$ROOT/.tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false NO_UPDATE_NOTIFIER=1

# A build step runs only when its inputs changed: `inputs_key FILE... [-- WORD...]` is one hash
# of the files' contents (and of any words, e.g. a build mode), kept in build/.stamps/ by
# `stamp_write` once the step succeeded. The pinned tool versions are always inputs.
STAMPS="$ROOT/build/.stamps"
inputs_key() {
  local files=() words=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
  [ $# -gt 0 ] && shift && words=("$@")
  { sha256sum "${files[@]}" "$ROOT/scripts/versions.env" "$ROOT/package-lock.json"
    printf '%s\n' "${words[@]}"; } | sha256sum | cut -d' ' -f1
}
stamp_matches() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; } # name key
stamp_write() { mkdir -p "$STAMPS" && printf '%s\n' "$2" > "$STAMPS/$1"; }     # name key
stamp_clear() { rm -f "$STAMPS/$1"; }                                         # name
