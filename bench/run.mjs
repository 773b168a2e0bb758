// `make bench` (scripts/bench.sh runs this after building): the Worker, the DIY relay (one POST
// per beacon, and batched every 50 ms) and the runtime's floors (bench/floor.mjs: a JS Worker
// that answers 204 in its own workerd, and a minimal exactly-once relay of the Worker's shape in
// plain JavaScript) side by side under the same load, and `capi-edge hash` against Meta's SDK on
// the same rows. After the other systems at each concurrency, the 204 floor in a process of its
// own, paced to about the Worker's rate (bench/paced.lua): the runtime's own tail at the
// Worker's load.
//
// Env: BENCH_RUNS (default 1; 3 for medians of 3), BENCH_SECONDS (per wrk run, default 15),
//      BENCH_CONCURRENCY (default "8,64"), BENCH_HASH_ROWS (default 100000).
// Writes build/bench/results.json (every run) and prints the table, with the Worker's cost model
// inputs per event (its own counts, GET /t/health) and the marginal cost per million events.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { ADMIN_TOKEN } from '../tests/integration/harness.mjs';

const ROOT = new URL('../', import.meta.url).pathname;
const OUT = `${ROOT}build/bench`;
mkdirSync(OUT, { recursive: true });
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '8,64').split(',').map(Number);
const HASH_ROWS = Number(process.env.BENCH_HASH_ROWS ?? 100_000);
const CLI = `${ROOT}target/native/capi-edge`;
const TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim() || 100);
const RELAY_NOTHING = new Set(['floor', 'paced']);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[bench]', ...a);

// ---------------------------------------------------------------- processes
const groups = [];
process.on('exit', () => groups.forEach((g) => { try { process.kill(-g, 'SIGKILL'); } catch {} }));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

/** Starts `cmd` in its own process group (pid = pgid); resolves when `ready(output)` matches. */
function startGroup(name, cmd, args, { env = {}, cwd = ROOT, ready, timeoutMs = 30_000 }) {
  const logFile = `${OUT}/${name}.log`;
  const fd = openSync(logFile, 'w');
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  groups.push(child.pid);
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = setInterval(() => {
      const text = readFileSync(logFile, 'utf8');
      const m = ready(text);
      if (m) { clearInterval(poll); resolve({ pgid: child.pid, ...m }); }
      else if (child.exitCode != null || Date.now() - t0 > timeoutMs) {
        clearInterval(poll);
        reject(new Error(`${name} did not start:\n${text}`));
      }
    }, 50);
  });
}
const jsonLine = (key) => (text) => {
  const line = text.split('\n').find((l) => l.startsWith('{') && l.includes(`"${key}"`));
  return line && JSON.parse(line);
};
const stopGroup = async (pgid) => {
  try { process.kill(-pgid, 'SIGTERM'); } catch { return; }
  for (let i = 0; i < 30; i++) {
    await sleep(100);
    try { process.kill(-pgid, 0); } catch { return; }
  }
  try { process.kill(-pgid, 'SIGKILL'); } catch {}
};

/** CPU seconds (user + system, plus reaped children) of every live process in group `pgid`. */
function groupCpu(pgid) {
  let ticks = 0;
  const members = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { continue; }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) !== pgid) continue; // field 5: pgrp
    members.push(stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]); // utime stime cutime cstime
  }
  return { seconds: ticks / TICKS, members };
}

/** Busy CPU seconds of the whole machine (/proc/stat: everything but idle and iowait). */
function machineBusy() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + (steal ?? 0)) / TICKS;
}

/** CPU seconds of this process and the children it has waited for (wrk, the hashers). */
function selfCpu() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS;
}

/** Starts a window; its end() gives the CPU used meanwhile by processes outside this bench. */
function foreignLoad() {
  const ours = () => [...ALL_GROUPS, SANDBOX_GROUP].reduce((a, g) => a + groupCpu(g).seconds, 0) + selfCpu();
  const m0 = machineBusy();
  const o0 = ours();
  const t0 = Date.now();
  return () => Math.max(0, machineBusy() - m0 - (ours() - o0)) / ((Date.now() - t0) / 1000);
}

/** Waits (≤ 20 s) until the systems under test are idle: < 20 ms of CPU in a 500 ms window. */
async function waitIdle(pgids) {
  const cpu = () => pgids.reduce((a, g) => a + groupCpu(g).seconds, 0);
  for (let i = 0; i < 40; i++) {
    const before = cpu();
    await sleep(500);
    if (cpu() - before < 0.02) return;
  }
  log('warning: the systems under test did not go idle within 20 s');
}

// ---------------------------------------------------------------- sandbox
let SANDBOX;
let SANDBOX_GROUP;
/** What the stand-in holds from run `runId` (event ids `bench-<runId>-…`, see bench/beacon.lua). */
// Counted by the stand-in (`/_sandbox/count`): polling the full event list during a drain would
// hold the stand-in's lock, and so its Graph endpoint, for tens of milliseconds each time.
const sandboxEvents = async (runId) => {
  const v = await (await fetch(`${SANDBOX}/_sandbox/count?event_id_prefix=bench-${runId}-`)).json();
  return { received: v.matching, distinct: v.distinct, others: v.server_events - v.matching, rejected: v.rejected_requests };
};
const sandboxReset = () => fetch(`${SANDBOX}/_sandbox/reset`, { method: 'POST', body: '{}' });

// ---------------------------------------------------------------- the cost model's inputs
// The Worker counts, per isolate, what Cloudflare bills (worker/src/stats.rs; GET /t/health with
// the operator's token, as `isolate`); workerd runs one isolate, so its counts are the run's.
const readIsolate = async (url) =>
  (await (await fetch(`${url}/t/health`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()).isolate;
const countsDiff = (a, b) => Object.fromEntries(Object.keys(b).filter((k) => k !== 'since_ms').map((k) => [k, b[k] - a[k]]));
/** Reads the counts twice before a run: the second read minus the first is what one reading
 * costs (its request, its incidents' ledger call), taken off the run's difference at the end. */
async function isolateStart(url) {
  const first = await readIsolate(url);
  const start = await readIsolate(url);
  return first && start ? { start, reading: countsDiff(first, start) } : null; // a build without them
}
/** What the run made per event (null if the wasm instance restarted: counts reset). Events are
 * the beacons the Worker counted, which include those still in flight when wrk stopped counting.
 * r Worker requests (beacons + consumer invocations), q queue operations (a write and a delete
 * per started 64 KB of each message written, a read per delivery: redeliveries and retries are
 * read again), d Durable Object requests (ledger calls), m Graph requests; b events per queue
 * message, E per consumer call. */
async function isolateCosts(url, { start, reading }) {
  const end = await readIsolate(url);
  if (!end || end.since_ms !== start.since_ms) return null;
  const n = countsDiff(start, end);
  for (const k of Object.keys(n)) n[k] -= reading[k];
  const events = Math.max(1, n.beacons);
  const opsPerMessage = n.queue_write_ops / Math.max(1, n.queue_messages_written);
  return {
    counts: n,
    r: (n.beacons + n.consumer_invocations) / events,
    q: (2 * n.queue_write_ops + n.queue_messages_read * opsPerMessage) / events,
    d: n.ledger_calls / events,
    m: n.meta_requests / events,
    b: events / Math.max(1, n.queue_messages_written),
    E: events / Math.max(1, n.consumer_invocations),
  };
}
/** Marginal $ per million events beyond the inclusions (BENCHMARKS.md), without DO duration
 * and SQLite rows (not measured): 0.30·r + 0.02·c + 0.15·d + 0.40·q. */
const marginalCost = ({ r, d, q }, c) => 0.3 * r + 0.02 * c + 0.15 * d + 0.4 * q;

// ---------------------------------------------------------------- one load run
let runSeq = 0;
/** One wrk run of `bench/SCRIPT` against `url`: its BENCH_JSON summary (counts, µs percentiles). */
function wrkRun(url, connections, seconds, script, runId) {
  const wrk = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency', '-s', `${ROOT}bench/${script}`, url, '--', url, runId], { encoding: 'utf8' });
  const line = wrk.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) throw new Error(`wrk gave no summary:\n${wrk.stdout}\n${wrk.stderr}`);
  return JSON.parse(line.slice('BENCH_JSON '.length));
}
async function loadRun(system, url, pgid, c, seconds = SECONDS, { script = 'beacon.lua', connections = c } = {}) {
  await sandboxReset();
  await waitIdle(ALL_GROUPS);
  const runId = `${process.pid}x${++runSeq}`;
  const isolate0 = system === 'worker' ? await isolateStart(url) : null;
  const cpu0 = groupCpu(pgid).seconds;
  const foreign = foreignLoad();
  const t0 = Date.now();
  const w = wrkRun(url, connections, seconds, script, runId);
  const accepted = w.requests - w.non2xx;
  // Drain: wait until the stand-in has every accepted event (CPU is read then), then a little
  // longer to see stragglers; give up after 60 s without reaching it. The 204 floor relays nothing.
  const relays = !RELAY_NOTHING.has(system);
  let s = relays ? await sandboxEvents(runId) : { received: null, distinct: null, rejected: null, others: null };
  let cpuEnd = null;
  let deliveredAt = null;
  let last = s.received;
  let lastChange = Date.now();
  const drainStart = Date.now();
  while (relays && Date.now() - drainStart < 60_000) {
    if (s.distinct >= accepted && cpuEnd == null) {
      cpuEnd = groupCpu(pgid).seconds;
      deliveredAt = Date.now();
    }
    if (s.received !== last) { last = s.received; lastChange = Date.now(); }
    if (cpuEnd != null && Date.now() - lastChange > 1500) break;
    if (cpuEnd == null && Date.now() - lastChange > 10_000) break; // stalled short of accepted
    await sleep(cpuEnd == null ? 100 : 500);
    s = await sandboxEvents(runId);
  }
  if (cpuEnd == null) cpuEnd = groupCpu(pgid).seconds;
  const r = {
    system, c, connections, seconds, run_id: runId,
    beacons_per_s: accepted / (w.duration_us / 1e6),
    // Delivered: accepted ÷ the time from wrk's start until the stand-in held all of them (a
    // backlog the consumer clears after the load counts here, not in beacons/s).
    delivered_per_s: deliveredAt == null ? null : accepted / ((deliveredAt - t0) / 1000),
    p50_ms: w.p50_us / 1000, p90_ms: w.p90_us / 1000, p99_ms: w.p99_us / 1000, max_ms: w.max_us / 1000,
    accepted, non2xx: w.non2xx, socket_errors: w.connect + w.read + w.write + w.timeout,
    received: s.received, distinct_received: s.distinct, rejected_requests: s.rejected, other_events: s.others,
    lost: relays ? Math.max(0, accepted - s.distinct) : null, duplicates: relays ? s.received - s.distinct : null,
    cpu_ms_per_beacon: ((cpuEnd - cpu0) * 1000) / Math.max(1, accepted),
    drain_s: (Date.now() - t0) / 1000 - seconds,
    other_cores_busy: foreign(),
  };
  const cost = isolate0 && (await isolateCosts(url, isolate0));
  if (cost) {
    Object.assign(r, { r: cost.r, q: cost.q, d: cost.d, m: cost.m, b: cost.b, E: cost.E, isolate_counts: cost.counts });
    r.cost_per_million = marginalCost(cost, r.cpu_ms_per_beacon);
    log(`${system} c=${c}: per event r ${cost.r.toFixed(4)} q ${cost.q.toFixed(4)} d ${cost.d.toFixed(4)} m ${cost.m.toFixed(4)} ` +
      `(b ${cost.b.toFixed(1)} events/message, E ${cost.E.toFixed(1)} events/consumer call): Δ $${r.cost_per_million.toFixed(3)} per million`);
  } else if (system === 'worker') {
    log(`${system} c=${c}: no cost counts (a build without them, or its wasm instance restarted during the run)`);
  }
  log(`${system} c=${c}: ${r.beacons_per_s.toFixed(0)}/s p50 ${r.p50_ms.toFixed(1)} p99 ${r.p99_ms.toFixed(1)} ms, ` +
    `cpu ${r.cpu_ms_per_beacon.toFixed(3)} ms/beacon, accepted ${accepted} ${relays ? `received ${s.distinct} (+${r.duplicates} dup)` : '(relays nothing)'}, non-2xx ${w.non2xx}, ` +
    `other processes: ${r.other_cores_busy.toFixed(2)} cores`);
  return r;
}

// ---------------------------------------------------------------- hashing
async function hashRun(rowsFile) {
  await waitIdle(ALL_GROUPS);
  const foreign = foreignLoad();
  const times = [];
  for (let i = 0; i < 5; i++) {
    const fdIn = openSync(rowsFile, 'r');
    const fdOut = openSync(`${OUT}/hash-cli.jsonl`, 'w');
    const t0 = process.hrtime.bigint();
    const p = spawnSync(CLI, ['hash'], { stdio: [fdIn, fdOut, 'pipe'] });
    const t1 = process.hrtime.bigint();
    closeSync(fdIn); closeSync(fdOut);
    if (p.status !== 0) throw new Error(`capi-edge hash failed: ${p.stderr}`);
    times.push(Number(t1 - t0) / 1e9);
  }
  const cli_s = median(times);
  const oneThread = [];
  for (let i = 0; i < 3; i++) {
    const fdIn = openSync(rowsFile, 'r');
    const fdOut = openSync(`${OUT}/hash-cli-1.jsonl`, 'w');
    const t0 = process.hrtime.bigint();
    const p = spawnSync(CLI, ['hash', '--threads', '1'], { stdio: [fdIn, fdOut, 'pipe'] });
    const t1 = process.hrtime.bigint();
    closeSync(fdIn); closeSync(fdOut);
    if (p.status !== 0) throw new Error(`capi-edge hash --threads 1 failed: ${p.stderr}`);
    oneThread.push(Number(t1 - t0) / 1e9);
  }
  const sdkRuns = [0, 1, 2].map(() => JSON.parse(spawnSync('node', [`${ROOT}bench/sdk-hash.mjs`, rowsFile, `${OUT}/hash-sdk.jsonl`], { encoding: 'utf8' }).stdout));
  const rows = HASH_ROWS;
  const r = {
    rows,
    cli_rows_per_s: rows / cli_s,
    cli_one_thread_rows_per_s: rows / median(oneThread),
    sdk_job_rows_per_s: rows / median(sdkRuns.map((x) => x.job_s)),
    sdk_calls_rows_per_s: rows / median(sdkRuns.map((x) => x.calls_only_s)),
  };
  r.other_cores_busy = foreign();
  r.speedup_vs_sdk_job = r.cli_rows_per_s / r.sdk_job_rows_per_s;
  r.speedup_vs_sdk_calls = r.cli_rows_per_s / r.sdk_calls_rows_per_s;
  r.speedup_one_thread = r.cli_one_thread_rows_per_s / r.sdk_job_rows_per_s;
  log(`hash: capi-edge ${r.cli_rows_per_s.toFixed(0)} rows/s; SDK ${r.sdk_job_rows_per_s.toFixed(0)} rows/s (whole job), ` +
    `${r.sdk_calls_rows_per_s.toFixed(0)} rows/s (calls only); other processes: ${r.other_cores_busy.toFixed(2)} cores`);
  return r;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------------------------------------------------------------- main
const sandbox = await startGroup('sandbox', CLI, ['sandbox', '--listen', '127.0.0.1:0'], {
  ready: (t) => { const m = t.match(/listening on (http:\/\/127\.0\.0\.1:\d+)\//); return m && { url: m[1] }; },
});
SANDBOX = sandbox.url;
SANDBOX_GROUP = sandbox.pgid;
const worker = await startGroup('worker', 'node', [`${ROOT}bench/serve.mjs`], { env: { SANDBOX_URL: SANDBOX }, ready: jsonLine('worker') });
// Cold start: from a runtime that has just started to the first answered beacon (the wasm module
// compiled and instantiated in a fresh isolate, the entry module's first request).
const firstBeacon = async (url) => {
  const t0 = process.hrtime.bigint();
  const res = await fetch(`${url}/t/e`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8', origin: url, 'cf-connecting-ip': '198.51.100.7', 'user-agent': 'Mozilla/5.0 bench' },
    body: JSON.stringify({ event_name: 'PageView', event_id: `cold-${process.pid}-${t0}`, event_source_url: `${url}/`, fbp: 'fb.1.1700000000000.1' }),
  });
  await res.arrayBuffer();
  return { status: res.status, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
};
const coldStart = await firstBeacon(worker.worker);
log(`cold start: first beacon answered ${coldStart.status} after ${coldStart.ms.toFixed(1)} ms`);
// What a page view wakes, per layout (bench/cold.mjs): from asking for a fresh runtime to its
// first answered beacon, the whole Worker alone against the beacon Worker of the split
// deployment (ARCHITECTURE.md, "Two Workers"), interleaved on fresh runtimes (median). Most of it
// is starting workerd, the same for both; the difference is what the bundle's size costs.
const COLD_STARTS = Number(process.env.BENCH_COLD_STARTS ?? 15);
const coldStarts = await (async () => {
  const g = await startGroup('cold', 'node', [`${ROOT}bench/cold.mjs`], { env: { COLD_STARTS: String(COLD_STARTS) }, ready: jsonLine('cold'), timeoutMs: 180_000 });
  await stopGroup(g.pgid);
  const out = {};
  for (const layout of Object.keys(g.cold)) {
    out[layout] = { ms: median(g.cold[layout]), ready_ms: median(g.ready[layout]), runs: g.cold[layout] };
    log(`cold start (${layout}, ${COLD_STARTS} fresh runtimes): median ${out[layout].ms.toFixed(1)} ms to the first beacon, ${out[layout].ready_ms.toFixed(1)} ms to listening`);
  }
  return out;
})();
const relay = await startGroup('relay', 'node', [`${ROOT}bench/relay.mjs`], { env: { META_GRAPH_URL: SANDBOX }, ready: jsonLine('relay') });
const batched = await startGroup('batched', 'node', [`${ROOT}bench/relay.mjs`], { env: { META_GRAPH_URL: SANDBOX, BATCH_MS: '50' }, ready: jsonLine('relay') });
const floor = await startGroup('floor', 'node', [`${ROOT}bench/floor.mjs`], { ready: jsonLine('floor') });
const durable = await startGroup('durable', 'node', [`${ROOT}bench/floor.mjs`], { env: { FLOOR: 'durable', GRAPH_URL: SANDBOX }, ready: jsonLine('floor') });
// The paced floor runs in a process of its own, which only ever takes paced load: its tail is
// not the heap of a full-speed run before it.
const pacedFloor = await startGroup('paced', 'node', [`${ROOT}bench/floor.mjs`], { ready: jsonLine('floor') });
// The split deployment (ARCHITECTURE.md, "Two Workers"): the beacon Worker on its own socket, the
// whole Worker behind its binding consuming the queue, in one workerd (one thread for both, as
// for the Worker above; on Cloudflare they run in isolates of their own).
const split = await startGroup('split', 'node', [`${ROOT}bench/serve.mjs`], { env: { SANDBOX_URL: SANDBOX, BENCH_LAYOUT: 'split' }, ready: jsonLine('worker') });
const ALL_GROUPS = [worker.pgid, relay.pgid, batched.pgid, floor.pgid, durable.pgid, pacedFloor.pgid, split.pgid];
const systems = [
  { name: 'worker', url: worker.worker, pgid: worker.pgid },
  { name: 'split', url: split.worker, pgid: split.pgid },
  { name: 'relay', url: relay.relay, pgid: relay.pgid },
  { name: 'batched', url: batched.relay, pgid: batched.pgid },
  { name: 'floor', url: floor.floor, pgid: floor.pgid },
  { name: 'durable', url: durable.floor, pgid: durable.pgid },
];
/** beacons/s of a short paced wrk run (no drain, nothing recorded). */
const pacedProbe = (connections) => {
  const j = wrkRun(pacedFloor.floor, connections, 3, 'paced.lua', `probe${process.pid}x${++runSeq}`);
  return (j.requests - j.non2xx) / (j.duration_us / 1e6);
};
/** The 204 floor paced to about the Worker's rate at the same concurrency in the same run
 * (bench/paced.lua: each connection waits 1 ms after an answer): a 3 s probe at a first guess
 * of ≈ 580 beacons/s per connection, then the connections scaled by what the probe reached. */
const PACED_PER_CONNECTION = 580;
const pacedRun = (c, run) => {
  const rate = load.find((r) => r.run === run && r.c === c && r.system === 'worker').beacons_per_s;
  const guess = Math.max(1, Math.round(rate / PACED_PER_CONNECTION));
  const probe = pacedProbe(guess);
  const connections = Math.max(1, Math.round((guess * rate) / probe));
  return loadRun('paced', pacedFloor.floor, pacedFloor.pgid, c, SECONDS, { script: 'paced.lua', connections });
};
for (const s of systems) log(`${s.name}: ${s.url} (process group ${s.pgid}: ${groupCpu(s.pgid).members.join(', ')})`);
log(`sandbox (Graph stand-in): ${SANDBOX}; ${RUNS} run(s) × ${CONCURRENCY.length} concurrencies × ${SECONDS} s each`);

// Warm-up (JIT, workerd isolates, SQLite), not recorded; the paced floor at its own pace.
for (const s of systems) await loadRun(s.name, s.url, s.pgid, 8, 3);
await loadRun('paced', pacedFloor.floor, pacedFloor.pgid, 8, 3, { script: 'paced.lua', connections: 7 });

const rowsFile = `${OUT}/hash-rows.jsonl`;
writeFileSync(rowsFile, spawnSync('node', [`${ROOT}bench/hash-rows.mjs`, String(HASH_ROWS)], { maxBuffer: 1 << 30 }).stdout);

const load = [];
const hash = [];
for (let run = 1; run <= RUNS; run++) {
  log(`run ${run}/${RUNS}`);
  for (const c of CONCURRENCY) {
    for (const s of systems) load.push({ run, ...(await loadRun(s.name, s.url, s.pgid, c)) });
    load.push({ run, ...(await pacedRun(c, run)) });
  }
  hash.push({ run, ...(await hashRun(rowsFile)) });
}
await stopGroup(split.pgid);
await stopGroup(pacedFloor.pgid);
await stopGroup(durable.pgid);
await stopGroup(floor.pgid);
await stopGroup(batched.pgid);
await stopGroup(relay.pgid);
await stopGroup(worker.pgid);
await stopGroup(sandbox.pgid);

// ---------------------------------------------------------------- report
const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
const machine = {
  nproc: Number(spawnSync('nproc').stdout.toString().trim()),
  cpu: (cpuinfo.match(/^model name\s*:\s*(.*)$/m) ?? [])[1] ?? 'unknown',
  node: process.version,
  wrk: (spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout || '').split('\n')[0].trim(),
};
const med = (system, c, k) => median(load.filter((r) => r.system === system && r.c === c).map((r) => r[k]));
/** The sum over runs, or null when a run has no such count (the floor relays nothing: '-'). */
const sum = (system, c, k) => {
  const rows = load.filter((r) => r.system === system && r.c === c);
  return rows.some((r) => r[k] == null) ? null : rows.reduce((a, r) => a + r[k], 0);
};
const hmed = (k) => median(hash.map((r) => r[k]));
const f = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '-');

const cols = CONCURRENCY.flatMap((c) => [...systems.map((s) => s.name), 'paced'].map((s) => [s, c]));
const rowsOut = [
  ['beacons/s (2xx)', (s, c) => f(med(s, c, 'beacons_per_s'))],
  ['events/s delivered (accepted ÷ time until all at the stand-in)', (s, c) => f(med(s, c, 'delivered_per_s'))],
  ['latency p50 ms', (s, c) => f(med(s, c, 'p50_ms'), 1)],
  ['latency p99 ms', (s, c) => f(med(s, c, 'p99_ms'), 1)],
  ['latency max ms (median of runs)', (s, c) => f(med(s, c, 'max_ms'), 1)],
  ['CPU ms / accepted beacon', (s, c) => f(med(s, c, 'cpu_ms_per_beacon'), 3)],
  ['wrk connections (paced: 1 ms between beacons)', (s, c) => f(med(s, c, 'connections'))],
  ['accepted (all runs)', (s, c) => f(sum(s, c, 'accepted'))],
  ['received at stand-in', (s, c) => f(sum(s, c, 'distinct_received'))],
  ['lost (accepted − received)', (s, c) => f(sum(s, c, 'lost'))],
  ['duplicates at stand-in', (s, c) => f(sum(s, c, 'duplicates'))],
  ['non-2xx / socket errors', (s, c) => `${f(sum(s, c, 'non2xx'))} / ${f(sum(s, c, 'socket_errors'))}`],
  ['other processes (cores busy)', (s, c) => f(med(s, c, 'other_cores_busy'), 2)],
  ['r: Worker requests / event', (s, c) => f(med(s, c, 'r'), 4)],
  ['q: queue operations / event', (s, c) => f(med(s, c, 'q'), 4)],
  ['d: DO requests / event', (s, c) => f(med(s, c, 'd'), 4)],
  ['m: Graph requests / event', (s, c) => f(med(s, c, 'm'), 4)],
  ['b: events / queue message', (s, c) => f(med(s, c, 'b'), 1)],
  ['E: events / consumer call', (s, c) => f(med(s, c, 'E'), 1)],
  ['Δ $ / million events', (s, c) => f(med(s, c, 'cost_per_million'), 3)],
];
const LABEL = { worker: 'Worker', split: 'split (2 Workers)', relay: 'relay 1/POST', batched: 'relay batched', floor: 'floor (JS 204)',
  durable: 'durable floor (JS)', paced: "floor at the Worker's rate," };
const header = ['', ...cols.map(([s, c]) => `${LABEL[s]} c=${c}`)];
const table = [header, ...rowsOut.map(([label, fn]) => [label, ...cols.map(([s, c]) => fn(s, c))])];
const widths = header.map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
const md = (r) => `| ${r.map((x, i) => String(x).padEnd(widths[i])).join(' | ')} |`;

const ratios = [];
const check = (label, value, ok, target) => ratios.push({ label, value, ok, target });
for (const c of CONCURRENCY) {
  const x = med('worker', c, 'beacons_per_s') / med('relay', c, 'beacons_per_s');
  check(`Worker/relay (1 POST per beacon) beacons/s, c=${c}`, `${f(x, 2)}x`, x >= 1.5, '≥ 1.5x');
}
for (const c of CONCURRENCY) {
  const x = med('worker', c, 'beacons_per_s') / med('batched', c, 'beacons_per_s');
  check(`Worker/relay batched every 50 ms beacons/s, c=${c}`, `${f(x, 2)}x`, x >= 0.5, '≥ 0.5x');
}
for (const c of CONCURRENCY) {
  const x = med('split', c, 'beacons_per_s') / med('batched', c, 'beacons_per_s');
  const y = med('split', c, 'beacons_per_s') / med('worker', c, 'beacons_per_s');
  check(`split deployment / relay batched, and / the Worker, beacons/s, c=${c}`, `${f(x, 2)}x, ${f(y, 2)}x`, null,
    'information: the same beacon path, a second isolate on the same thread');
}
for (const c of CONCURRENCY) {
  check(`p99 at c=${c}, split deployment vs relay (1 POST)`, `${f(med('split', c, 'p99_ms'), 1)} vs ${f(med('relay', c, 'p99_ms'), 1)} ms`,
    null, 'information');
}
// The runtime's floor (bench/floor.mjs): a JS Worker that reads the beacon and answers 204, in
// its own workerd process. Its beacons/s bound any Worker's on this runtime.
for (const c of CONCURRENCY) {
  const x = med('floor', c, 'beacons_per_s') / med('batched', c, 'beacons_per_s');
  check(`floor (JS Worker, 204)/relay batched beacons/s, c=${c}`, `${f(x, 2)}x`, null, 'information: the ceiling on this runtime');
}
for (const c of CONCURRENCY) {
  const x = med('worker', c, 'beacons_per_s') / med('floor', c, 'beacons_per_s');
  check(`Worker/floor (JS Worker, 204) beacons/s, c=${c}`, `${f(x, 2)}x`, null, 'information');
}
// The durable floor (bench/floor.mjs, FLOOR=durable): a minimal relay of the Worker's shape
// (pooled sendBatch, queue, consumer, a SQLite ledger's leases and records, batched Graph
// requests) in plain JavaScript with none of the product's rules: what such a relay reaches here.
for (const c of CONCURRENCY) {
  const x = med('durable', c, 'beacons_per_s') / med('batched', c, 'beacons_per_s');
  const y = med('worker', c, 'beacons_per_s') / med('durable', c, 'beacons_per_s');
  check(`durable floor / relay batched, and Worker / durable floor, beacons/s, c=${c}`, `${f(x, 2)}x, ${f(y, 2)}x`, null,
    'information: a minimal relay of the same shape');
}
for (const c of CONCURRENCY) {
  const x = med('relay', c, 'cpu_ms_per_beacon') / med('worker', c, 'cpu_ms_per_beacon');
  check(`relay/Worker CPU per beacon, c=${c}`, `${f(x, 2)}x`, null, 'information');
}
for (const c of CONCURRENCY) {
  const v = med('worker', c, 'cpu_ms_per_beacon');
  check(`Worker CPU per beacon (whole runtime), c=${c}`, `${f(v, 3)} ms`, v <= 0.35, '≤ 0.35 ms');
}
for (const c of CONCURRENCY) {
  check(`p99 at c=${c}, Worker vs relay (1 POST)`, `${f(med('worker', c, 'p99_ms'), 1)} vs ${f(med('relay', c, 'p99_ms'), 1)} ms`,
    med('worker', c, 'p99_ms') <= med('relay', c, 'p99_ms'), 'Worker at or below');
}
for (const c of CONCURRENCY) {
  check(`p99 at c=${c}, floor (JS Worker, 204) vs relay (1 POST)`, `${f(med('floor', c, 'p99_ms'), 1)} vs ${f(med('relay', c, 'p99_ms'), 1)} ms`,
    null, 'information: the runtime\'s own tail');
}
for (const c of CONCURRENCY) {
  check(`p99 at c=${c}, Worker vs the 204 floor paced to its rate (${f(med('worker', c, 'beacons_per_s'))} vs ${f(med('paced', c, 'beacons_per_s'))}/s)`,
    `${f(med('worker', c, 'p99_ms'), 1)} vs ${f(med('paced', c, 'p99_ms'), 1)} ms`, null, "information: the runtime's tail at the Worker's load");
}
const durableLoss = load.filter((r) => r.system === 'durable').reduce((a, r) => a + r.lost + r.duplicates, 0);
check('durable floor: events lost or duplicated (all runs)', f(durableLoss), durableLoss === 0, '0: a floor that loses events bounds nothing');
for (const c of CONCURRENCY) {
  const x = med('worker', c, 'delivered_per_s') / med('batched', c, 'delivered_per_s');
  const y = med('worker', c, 'delivered_per_s') / med('durable', c, 'delivered_per_s');
  check(`events delivered per s, Worker / relay batched, and / durable floor, c=${c}`, `${f(x, 2)}x, ${f(y, 2)}x`, null,
    'information: with the backlog each clears after the load');
}
check('cold start: runtime up → first beacon answered', `${f(coldStart.ms, 1)} ms`, null, 'information');
check(`cold start from a fresh runtime, whole Worker vs beacon Worker (median of ${COLD_STARTS} each)`,
  `${f(coldStarts.whole.ms, 1)} vs ${f(coldStarts.beacons.ms, 1)} ms`, null, 'information');
const lost = load.filter((r) => r.system === 'worker').reduce((a, r) => a + r.lost, 0);
check('Worker events lost (all runs)', f(lost), lost === 0, '0');
const dups = load.filter((r) => r.system === 'worker').reduce((a, r) => a + r.duplicates, 0);
check('Worker duplicates at the stand-in (all runs)', f(dups), dups === 0, '0');
const splitLoss = load.filter((r) => r.system === 'split').reduce((a, r) => a + r.lost + r.duplicates, 0);
check('split deployment: events lost or duplicated (all runs)', f(splitLoss), splitLoss === 0, '0');
const relayLost = load.filter((r) => r.system === 'relay').reduce((a, r) => a + r.lost, 0);
check('relay events lost (all runs)', f(relayLost), null, 'information');
check('hash speedup vs SDK (same job: file in, JSON lines out)', `${f(hmed('speedup_vs_sdk_job'), 1)}x`, hmed('speedup_vs_sdk_job') >= 10, '≥ 10x');
check('hash speedup vs SDK at equal threads (one each)', `${f(hmed('speedup_one_thread'), 1)}x`, null, 'information');
// The target is the same job; the SDK's calls alone (rows already in memory, nothing written) are
// its best case against a CLI timed with process start, reading and writing: shown, not a target.
check('hash speedup vs SDK calls alone (pre-parsed rows)', `${f(hmed('speedup_vs_sdk_calls'), 1)}x`, null, "information: the SDK's best case");

const lines = [];
lines.push(`machine: ${machine.nproc} CPUs (${machine.cpu}), Node ${machine.node}, ${machine.wrk}`);
lines.push(`beacon ingest: wrk -t1 -cN -d${SECONDS}s, ~600-byte AddToCart beacons with a fresh event_id; ` +
  'latency percentiles are wrk 4\'s, corrected for coordinated omission (a stall of S ms adds the samples of the ' +
  'requests each connection would have sent meanwhile at its average pace), so p99 reads how long and how often a ' +
  'system stalls; the max is the longest single request; ' +
  `${RUNS === 1 ? 'one run' : `median of ${RUNS} runs`}; CPU = user+system of every process in the system's process group ` +
  `(Worker and floors: workerd + Miniflare's node; relays: node), from the start of the run until the stand-in has every accepted event ` +
  '(the 204 floor: until wrk ends); the paced floor: a 204 floor of its own with fewer connections, each waiting 1 ms between beacons, ' +
  "at about the Worker's rate at that concurrency in the same run (connections set by a 3 s probe)");
lines.push('');
lines.push(md(table[0]));
lines.push(`|${widths.map((w, i) => (i ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|')}|`);
for (const r of table.slice(1)) lines.push(md(r));
lines.push('Worker rows r, q, d, m: counted by the Worker in the run (GET /t/health, `isolate`) per beacon it took; ' +
  'Δ = 0.30·r + 0.02·c + 0.15·d + 0.40·q, $ per million events beyond the inclusions, c the CPU row; ' +
  'Durable Object duration and SQLite rows are not measured (BENCHMARKS.md, cost per million events)');
lines.push('');
lines.push(`capi-edge hash vs facebook-nodejs-business-sdk ServerSideUtils.normalizeAndHash, ${f(HASH_ROWS)} messy rows (em ph fn ln ct st zp country):`);
lines.push(`  capi-edge hash      ${f(hmed('cli_rows_per_s')).padStart(12)} rows/s  (target/native, stdin → stdout, process start included, every core)`);
lines.push(`  capi-edge hash -t1  ${f(hmed('cli_one_thread_rows_per_s')).padStart(12)} rows/s  (one hashing thread, as the SDK has one)`);
lines.push(`  SDK, same job       ${f(hmed('sdk_job_rows_per_s')).padStart(12)} rows/s  (read, JSON.parse, normalizeAndHash, JSON.stringify, write)`);
lines.push(`  SDK, calls alone    ${f(hmed('sdk_calls_rows_per_s')).padStart(12)} rows/s  (normalizeAndHash on rows already parsed)`);
lines.push(`  other processes on the machine meanwhile: ${f(hmed('other_cores_busy'), 2)} cores busy (median)`);
lines.push('');
lines.push('ratios and targets:');
for (const r of ratios) lines.push(`  ${r.label.padEnd(58)} ${r.value.padStart(20)}   ${r.ok == null ? '' : r.ok ? 'MET' : 'NOT MET'} (${r.target})`);
const report = lines.join('\n');
console.log(report);
writeFileSync(`${OUT}/results.json`, JSON.stringify({ machine, runs: RUNS, seconds: SECONDS, cold_start: coldStart, cold_starts: coldStarts, load, hash, ratios }, null, 2));
writeFileSync(`${OUT}/report.txt`, report + '\n');
log(`results: build/bench/results.json, build/bench/report.txt`);
process.exit(0);
