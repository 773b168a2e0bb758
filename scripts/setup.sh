#!/usr/bin/env bash
# Installs every tool capi-edge needs, pinned, into the project-local .tools/ dir.
# Idempotent: a tool that is already there at the pinned version is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS"

source scripts/versions.env

log() { printf '[setup] %s\n' "$*" >&2; }

# The wasm-bindgen CLI must match the library the lockfile resolved.
locked=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$locked" != "$WASM_BINDGEN_VERSION" ]; then
  log "Cargo.lock has wasm-bindgen $locked but scripts/versions.env pins $WASM_BINDGEN_VERSION"; exit 1
fi

# Rust target for the Worker and the shim (rust-toolchain.toml also lists it).
if ! rustup target list --installed | grep -x wasm32-unknown-unknown >/dev/null; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
# The standard library's source: the Worker's build compiles std with its own profile
# (scripts/build-worker.sh; rust-toolchain.toml also lists it).
if ! rustup component list --installed | grep -x rust-src >/dev/null; then
  log "adding rust component rust-src"
  rustup component add rust-src
fi

# cargo-installed tools, in the project-local root.
install_crate() { # name version binary
  local name=$1 version=$2 bin=$3
  if [ -x "$TOOLS/bin/$bin" ] && "$TOOLS/bin/$bin" --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  log "cargo install $name $version (takes a few minutes, once)"
  # not --locked: one pinned dependency of wasm-bindgen-cli's lockfile is not served by the registry mirror.
  # opt-level 1: on the 2-core machine the install took 192 s instead of 232 s, and the tool
  # then writes the same bytes (the Worker's glue in 363 ms instead of 344 ms).
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_TARGET_DIR="$TOOLS/cargo-target" \
    cargo install "$name" --version "$version" --root "$TOOLS" --quiet
}
install_crate wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen
rm -rf "$TOOLS/cargo-target"

# npm tools (wrangler, miniflare, binaryen's wasm-opt, esbuild, playwright-core), from the committed lockfile.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.capi-edge-lock; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.capi-edge-lock
fi

# Chromium for the browser test (Debian packages; never a browser download).
if [ "${CAPI_SKIP_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install chromium chromium-driver"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ||
      log "could not install chromium; browser tests will fail"
  else
    log "chromium missing and not root: install Debian's chromium to run the browser test"
  fi
fi
log "tools ready in $TOOLS"
