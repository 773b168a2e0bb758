#!/usr/bin/env bash
# Builds the Worker (release) into build/worker/: cargo (wasm32), the project-local wasm-bindgen
# (module target, with the state-reset function that recovers from a panic), wasm-opt, and
# esbuild bundling our entry module (worker/entry.mjs) with wasm-bindgen's glue. Then the same
# for the beacon Worker of the split deployment into build/beacons/: the crate without its
# `backend` feature, bundled with worker/beacons.mjs (ARCHITECTURE.md, "Two Workers").
#
# Everything after cargo runs only when its inputs changed (the cargo wasm, entry.mjs, this
# script, the pinned tool versions): a build with nothing to do takes about as long as cargo's
# own check. CAPI_BUILD_FAST=1 (the `make dev` watch loop) skips both wasm-opt passes: the same
# Worker, larger, ready sooner; the next plain build optimizes it again.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# Size: std is compiled from the toolchain's rust-src with the Worker's own profile and LTO
# (-Z build-std; its own dependencies come from crates.io on the first build), a panic traps at
# once instead of formatting its message (the immediate-abort panic strategy), and no panic
# carries its file and line (-Z location-detail=none): together ≈ 25 KB of the gzip bundle
# (BENCHMARKS.md, sizes). A trap is still a WebAssembly.RuntimeError, so worker/entry.mjs and
# wasm-bindgen's abort handler start a fresh instance exactly as before; what a panic no longer
# leaves is its message in the log (docs/operating.md). Unstable flags: see cargo_wasm
# (scripts/env.sh). std's source paths are written as /rust/…, so the Worker is the same bytes
# wherever rustup keeps the toolchain. std's own `optimize_for_size` feature picks its smaller
# algorithms (sorts, integer formatting, float parsing, escapes): 9.5 KB gzip, CPU per beacon
# within the spread between runs (BENCHMARKS.md, sizes).
build_crate() {
  cargo_wasm worker -Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none \
    "--remap-path-prefix=$(rustc --print sysroot)/lib/rustlib/src/rust=/rust" \
    -- -p capi-worker --lib -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size "$@"
}
wasm="$ROOT/target/worker/wasm32-unknown-unknown/release/capi_worker.wasm"
fast=${CAPI_BUILD_FAST:-}
# The beacon Worker first (the crate without `backend`), copied aside: both builds share
# target/worker (std and every dependency are built once) and write the same file, so each
# relinks after the other. Its copy is reused while none of its inputs changed (the Rust
# sources, the lockfile, the toolchain, the embedded shim, these scripts): a build with nothing
# to do then links nothing. `make dev` (CAPI_BUILD_FAST) and `make profile` run the whole Worker
# only and skip it.
beacons_wasm=""
if [ -z "$fast" ] && [ -z "${CAPI_WORKER_NAMES_DIR:-}" ]; then
  beacons_wasm="$ROOT/target/worker/capi_worker_beacons.wasm"
  mapfile -t sources < <(find worker/src worker/demo core/src rules/src -type f | sort)
  crate_key=$(inputs_key "${sources[@]}" worker/Cargo.toml worker/build.rs core/Cargo.toml rules/Cargo.toml \
    Cargo.toml Cargo.lock rust-toolchain.toml build/shim/p.js build/shim/p.wasm scripts/build-worker.sh scripts/env.sh \
    -- "$(rustc --version)")
  if ! [ -f "$beacons_wasm" ] || ! stamp_matches beacons-crate "$crate_key"; then
    stamp_clear beacons-crate
    build_crate --no-default-features
    cp "$wasm" "$beacons_wasm.tmp" && mv "$beacons_wasm.tmp" "$beacons_wasm"
    stamp_write beacons-crate "$crate_key"
  fi
fi
build_crate

# bundle OUT ENTRY WASM: wasm-bindgen, wasm-opt and esbuild for one Worker, into build/OUT/.
bundle() {
local out=$1 entry=$2 wasm=$3
local key
key=$(inputs_key "$wasm" "worker/$entry" worker/beacon.mjs scripts/build-worker.sh scripts/env.sh -- "fast=$fast")
if [ -z "${CAPI_WORKER_NAMES_DIR:-}" ] && [ -f "build/$out/index.js" ] && [ -f "build/$out/index_bg.wasm" ] &&
  stamp_matches "$out" "$key"; then
  echo "$out up to date: build/$out/"
  return 0
fi
stamp_clear "$out"
local stage="$ROOT/build/.worker-stage-$out"
rm -rf "$stage" && mkdir -p "$stage"
wasm-bindgen "$wasm" --out-dir "$stage" \
  --target module --out-name index --no-typescript \
  --experimental-reset-state-function --force-enable-abort-handler

# The entry modules call the glue directly: every `wasm.NAME` they use must be an export, and
# panic recovery rests on two contracts an upgrade could drop without a compile error:
# wasm-bindgen's `__wbg_reset_state` (--experimental-reset-state-function) and workers-rs's
# `__worker_init_state` object with its `criticalError` and `instanceId` fields.
local missing=() name field
for name in $(cat "worker/$entry" worker/beacon.mjs | grep -oE '\bwasm\.[A-Za-z_$][A-Za-z0-9_$]*' | cut -d. -f2 | sort -u); do
  grep -qE "^export (async )?(function|class|const|let) $name\b|^export \{[^}]*\b$name\b" "$stage/index.js" ||
    missing+=("$name")
done
for field in criticalError instanceId; do
  grep -rqsF "__worker_init_state = {" "$stage/snippets" && grep -rqsE "\b$field\b" "$stage/snippets" ||
    missing+=("__worker_init_state().$field")
done
if [ ${#missing[@]} -gt 0 ]; then
  {
    echo "build-worker: wasm-bindgen's glue lacks what worker/$entry uses: ${missing[*]}"
    echo "  (wasm-bindgen $("$WASM_BINDGEN_BIN" --version | cut -d' ' -f2), worker $(grep -A1 '^name = "worker"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p'))."
    echo "  After a wasm-bindgen or workers-rs upgrade, check --experimental-reset-state-function and"
    echo "  worker's src/init.rs, and update worker/beacon.mjs: without them a panic poisons the isolate."
  } >&2
  exit 1
fi

local features=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory
  --enable-multivalue --enable-reference-types --enable-exception-handling)
[ -n "$fast" ] || wasm-opt -O "${features[@]}" --debuginfo "$stage/index_bg.wasm" -o "$stage/index_bg.wasm"
cp "worker/$entry" "$stage/entry.mjs" && cp worker/beacon.mjs "$stage/beacon.mjs"
# What the Worker does not use: the glue has a class for every #[wasm_bindgen] struct in the
# dependencies (worker's R2Range, MinifyConfig and ContainerStartupOptions, wasm-streams' stream
# adapters), each kept alive by two statements esbuild must assume have effects: a
# `Symbol.dispose` method (for `using`, which nothing here writes) and a FinalizationRegistry.
# Without the first and with the second marked pure, esbuild drops every class the entry module
# never reaches; the wasm exports only those classes called go below.
sed -i -e '/^if (Symbol\.dispose) [A-Za-z_$][A-Za-z0-9_$]*\.prototype\[Symbol\.dispose\] = /d' \
  -e 's#^\( *: \)new FinalizationRegistry(#\1/* @__PURE__ */ new FinalizationRegistry(#' "$stage/index.js"
esbuild "$stage/entry.mjs" --bundle --format=esm --minify --log-level=warning \
  --external:./index_bg.wasm '--external:cloudflare:*' --outfile="$stage/out/index.js"
cp "$stage/index_bg.wasm" "$stage/out/index_bg.wasm"
# Opt-in for profiling (make profile): CAPI_WORKER_NAMES_DIR=DIR also keeps a copy of the same
# build with the wasm name section, so V8 CPU profiles show Rust function names. build/worker
# itself is unchanged.
if [ -n "${CAPI_WORKER_NAMES_DIR:-}" ]; then
  local names_dir
  names_dir="$ROOT/$CAPI_WORKER_NAMES_DIR"; case "$CAPI_WORKER_NAMES_DIR" in /*) names_dir="$CAPI_WORKER_NAMES_DIR" ;; esac
  rm -rf "$names_dir" && mkdir -p "$(dirname "$names_dir")" && cp -R "$stage/out" "$names_dir"
  echo "worker with names: $names_dir/"
fi
# The name section (~110 KB) is for profiles only; Cloudflare never needs it. A last -Oz pass
# on the stripped module saves ≈ 2.8 KB gzip (no CPU change measurable under wrk).
# The exports the glue calls (`wasm.NAME`) that are no longer in the bundle go with that pass,
# and so does their code (wasm-streams' and worker's classes: 4.0 KB gzip with the glue's,
# BENCHMARKS.md, sizes). Only names the glue spells `wasm.NAME` are candidates (the memory,
# the start function and what workerd itself reads never are), and the build fails if an export
# the bundle still names is gone: a missing one would only throw on the path that calls it.
if [ -z "$fast" ]; then
  local kept=() unused=() remove exports
  for name in $(grep -oE '\bwasm\.[A-Za-z_$][A-Za-z0-9_$]*' "$stage/index.js" | cut -d. -f2 | sort -u || true); do
    if grep -qwF -- "$name" "$stage/out/index.js"; then kept+=("$name"); else unused+=("$name"); fi
  done
  remove=$(IFS=,; printf '%s' "${unused[*]}")
  wasm-opt ${remove:+"--remove-exports=$remove"} -Oz --strip-debug --strip-producers "${features[@]}" \
    "$stage/out/index_bg.wasm" -o "$stage/out/index_bg.wasm"
  exports=$(wasm-dis "$stage/out/index_bg.wasm" | sed -n 's/^ (export "\([^"]*\)".*/\1/p')
  for name in "${kept[@]}"; do
    grep -qxF -- "$name" <<<"$exports" && continue
    echo "build-worker: the bundle calls wasm.$name, which the pruned module no longer exports" >&2
    exit 1
  done
fi
# File by file, each rename atomic, the wasm before the module that imports it: a running
# `wrangler dev` (watching these two files) never sees a half-written Worker.
mkdir -p "$ROOT/build/$out"
mv "$stage/out/index_bg.wasm" "$ROOT/build/$out/index_bg.wasm"
mv "$stage/out/index.js" "$ROOT/build/$out/index.js"
rm -rf "$stage"
stamp_write "$out" "$key"
echo "$out built: build/$out/${fast:+ (CAPI_BUILD_FAST: not optimized by wasm-opt)}"
}

bundle worker entry.mjs "$wasm"
[ -z "$beacons_wasm" ] || bundle beacons beacons.mjs "$beacons_wasm"
