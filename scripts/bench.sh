#!/usr/bin/env bash
# make bench: sustained beacon load (wrk) against the built Worker in workerd on 127.0.0.1, and
# `capi-edge hash` throughput. Prints the numbers recorded in BENCHMARKS.md. Not a test.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
DURATION=${BENCH_SECONDS:-20}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
if ! command -v wrk >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "wrk is missing: apt-get install wrk"; exit 1; }
  (apt-get install -y -qq wrk || (apt-get update -qq && apt-get install -y -qq wrk)) >/dev/null
fi
out=build/bench && mkdir -p "$out"

echo "== beacon ingest: wrk -t2 -c$CONNECTIONS -d${DURATION}s POST /t/e (workerd via Miniflare, queue + ledger on)"
setsid node bench/serve.mjs >"$out/serve.log" 2>&1 &
server=$!
trap 'kill -- -$server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '"worker"' "$out/serve.log" 2>/dev/null && break; sleep 0.2; done
url=$(node -e 'const l=require("fs").readFileSync(process.argv[1],"utf8").split("\n").find(x=>x.startsWith("{"));console.log(JSON.parse(l).worker)' "$out/serve.log")
rss_peak=0
( while sleep 0.5; do ps -o rss= -C workerd 2>/dev/null | awk '{s+=$1} END {print s+0}'; done ) >"$out/rss.log" &
sampler=$!
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/beacon.lua "$url" -- "$url" | tee "$out/wrk.txt"
kill $sampler 2>/dev/null || true
rss_peak=$(sort -n "$out/rss.log" | tail -1)
echo "workerd peak RSS: $((rss_peak / 1024)) MiB"
sleep 3
node -e '
  const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n").find((x) => x.startsWith("{"));
  fetch(JSON.parse(l).sandbox + "/_sandbox/events").then((r) => r.json()).then((v) => console.log("delivered to the sandbox within 3 s of the end:", v.summary.server_events));
' "$out/serve.log"
kill -- -$server 2>/dev/null || true
trap - EXIT

echo
echo "== capi-edge hash: 1,000,000 JSON lines (em/ph/fn/zp mix)"
cargo build -q --release -p capi-edge
python3 - "$out/hash-input.jsonl" <<'PY'
import sys, random
random.seed(7)
fields = [("em", lambda i: f" User{i}@Example.COM "), ("ph", lambda i: f"+1 (650) 555-{i % 10000:04d}"),
          ("fn", lambda i: f"Mary-Ann {i}"), ("zp", lambda i: f"{94000 + i % 999}-1234")]
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        k, v = fields[i % 4]
        f.write('{"field":"%s","value":"%s","country":"US"}\n' % (k, v(i)))
PY
start=$(date +%s.%N)
target/release/capi-edge hash <"$out/hash-input.jsonl" >"$out/hash-output.jsonl"
end=$(date +%s.%N)
rows=$(wc -l <"$out/hash-output.jsonl")
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{int(sys.argv[3]):,} rows in {s:.2f} s = {int(sys.argv[3])/s:,.0f} rows/s')" "$start" "$end" "$rows"
