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

# Cargo for a wasm build with unstable rustflags: `cargo_wasm DIR FLAG... -- CARGO_ARG...` builds
# release wasm32 in target/DIR (the Worker and the shim have their own flags: sharing a target
# directory, each build would redo the other's every time). RUSTC_BOOTSTRAP=1 allows the flags on
# the pinned stable toolchain (rust-toolchain.toml) for this build only; dependencies' build
# scripts that probe for a nightly compiler see it too, and may turn on what they would on
# nightly (the tests run on these builds). CARGO_ENCODED_RUSTFLAGS: no RUSTFLAGS or cargo config
# of the machine replaces the flags, and no path in them needs quoting.
cargo_wasm() {
  local dir=$1 flags=()
  shift
  while [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; printf '%s' "${flags[*]}") RUSTC_BOOTSTRAP=1 \
    cargo build -q --release --target wasm32-unknown-unknown --target-dir "$ROOT/target/$dir" "$@"
}
