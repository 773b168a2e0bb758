#!/usr/bin/env bash
# make fuzz: runs each core fuzz target for FUZZ_SECONDS (default 60) with cargo-fuzz on nightly.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
source "$ROOT/scripts/versions.env"
# cargo-fuzz needs a nightly toolchain (sanitizer flags); install it once if missing.
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo-fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$ROOT/.tools" --quiet
fi
cd core
for target in beacon fields; do
  cargo +nightly fuzz run "$target" -- -max_total_time="${FUZZ_SECONDS:-60}" 2>&1 | grep -E "^(#[0-9]+ *DONE|Done|==|SUMMARY|thread)" || true
  test -z "$(ls fuzz/artifacts/$target 2>/dev/null)" || { echo "fuzz target $target found a crash: core/fuzz/artifacts/$target"; exit 1; }
done
