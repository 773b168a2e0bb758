// Test harness: the built Worker in the real workerd (Miniflare) against the real sandbox
// binary, both on 127.0.0.1, both torn down (whole process groups) after each file.
import { spawn } from 'node:child_process';
import { Miniflare } from 'miniflare';
import { chromium } from 'playwright-core';
import { readFileSync, appendFileSync, mkdirSync } from 'node:fs';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const PIXEL_ID = '987654321012345';
export const TOKEN = 'test-token-secret-value';
/** The built `capi-edge` CLI. */
export const cliPath = () => `${ROOT}target/native/capi-edge`;

// Every sandbox this process started is killed when it exits, even after a failed test or a timeout.
const sandboxes = new Set();
const killGroup = (pid) => { try { process.kill(-pid, 'SIGKILL'); } catch {} };
process.on('exit', () => sandboxes.forEach(killGroup));

/** Starts `capi-edge sandbox` on a free port; resolves to { url, stop, events, reset, faults }. */
export async function startSandbox() {
  const child = spawn(cliPath(), ['sandbox', '--listen', '127.0.0.1:0'], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  sandboxes.add(child.pid);
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('sandbox did not start in 10 s')), 10_000);
    let buf = '';
    child.stderr.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => reject(new Error(`sandbox exited ${code}: ${buf}`)));
  });
  const post = (path, body) => fetch(url + path, { method: 'POST', body: JSON.stringify(body ?? {}) });
  return {
    url,
    events: async () => (await fetch(`${url}/_sandbox/events`)).json(),
    reset: () => post('/_sandbox/reset'),
    faults: (f) => post('/_sandbox/faults', f),
    stop: () => { killGroup(child.pid); sandboxes.delete(child.pid); },
  };
}

/** Runs build/worker in workerd via Miniflare with the given vars; resolves to { url, fetch, stop }. */
export const ADMIN_TOKEN = 'admin-test-token';

/** Every line the Worker logs in the suite, kept for tests/integration/zz-logs.test.mjs. */
export const LOG_FILE = `${ROOT}tests/.artifacts/worker-logs.txt`;
mkdirSync(`${ROOT}tests/.artifacts`, { recursive: true });
const keepLogs = (stream, out) => stream.on('data', (chunk) => { appendFileSync(LOG_FILE, chunk); out.write(chunk); });

/** Miniflare's options for the Worker built in build/DIR (`worker`, or `beacons`: the beacon
 * Worker of the split deployment), as wrangler deploys it. */
export const builtWorker = (dir) => ({
  modules: true,
  scriptPath: `${ROOT}build/${dir}/index.js`,
  modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true }],
  compatibilityDate: '2026-04-01',
});

export const EVENTS_QUEUE = 'capi-edge-events';
export const DEAD_LETTERS_QUEUE = 'capi-edge-dead-letters';
/** The queue consumers as wrangler.toml declares them (batches of `batchSize`); without
 * `events`, only the dead letters' (the test plays the events queue itself). */
export const queueConsumers = ({ batchSize = 100, events = true } = {}) => ({
  ...(events && { [EVENTS_QUEUE]: { maxBatchSize: batchSize, maxBatchTimeout: 1, maxRetries: 100, deadLetterQueue: DEAD_LETTERS_QUEUE } }),
  [DEAD_LETTERS_QUEUE]: { maxBatchSize: 100, maxBatchTimeout: 1 },
});

/** A worker that consumes the events queue instead of the Worker, so a test can play the
 * queue: `fetch` answers the bodies taken since the last fetch. */
export const captureWorker = {
  name: 'capture',
  modules: true,
  compatibilityDate: '2026-04-01',
  script: `let bodies = [];
export default {
  async queue(batch) { for (const m of batch.messages) { bodies.push(m.body); m.ack(); } },
  async fetch() { const out = bodies; bodies = []; return Response.json(out); },
};`,
  queueConsumers: { [EVENTS_QUEUE]: { maxBatchSize: 100, maxBatchTimeout: 1 } },
};

/** `direct`: the Worker's own socket (Miniflare's `unsafeDirectSockets`) instead of Miniflare's
 * entry worker in front of it, as on Cloudflare where no JS proxy runs before the Worker; the
 * caller then sets `CF-Connecting-IP` itself (bench/beacon.lua does). */
export async function startWorker(vars = {}, { queues = true, rateLimit = 100_000, direct = false, batchSize = 100 } = {}) {
  const mf = new Miniflare({
    ...builtWorker('worker'),
    // CAPI_WORKER_BUILD: another build of the Worker (a directory like build/worker), to compare
    // two builds under the same load.
    ...(process.env.CAPI_WORKER_BUILD && { scriptPath: `${process.env.CAPI_WORKER_BUILD}/index.js` }),
    handleRuntimeStdio: (stdout, stderr) => { keepLogs(stdout, process.stdout); keepLogs(stderr, process.stderr); },
    host: '127.0.0.1',
    port: 0,
    bindings: { PIXEL_ID, META_ACCESS_TOKEN: TOKEN, META_API_VERSION: 'v26.0', ADMIN_TOKEN, RETRY_BASE_SECONDS: '1', RETRY_MAX_SECONDS: '4', ...vars },
    durableObjects: { LEDGER: { className: 'Ledger', useSQLite: true } },
    // As in wrangler.toml, with a limit the tests set (simulated by workerd).
    ratelimits: { BEACON_RATE_LIMITER: { simple: { limit: rateLimit, period: 60 } } },
    // As in wrangler.toml; `queues: false` runs the Worker without them (the direct-send fallback).
    ...(queues && {
      queueProducers: { EVENTS: EVENTS_QUEUE, DEAD_LETTERS: DEAD_LETTERS_QUEUE },
      queueConsumers: queueConsumers({ batchSize }),
    }),
    ...(direct && { unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }] }),
  });
  const entry = await mf.ready;
  const url = (direct ? await mf.unsafeGetDirectURL() : entry).toString().replace(/\/$/, '');
  const fetchIt = (path, init) => mf.dispatchFetch(`${url}${path}`, init);
  const admin = async (path) => (await fetchIt(path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  return { url, mf, fetch: fetchIt, receipts: (id) => admin(`/t/receipts/${encodeURIComponent(id)}`), stats: () => admin('/t/stats'), stop: () => mf.dispose() };
}

/** The split deployment (ARCHITECTURE.md, "Two Workers") in one runtime: the beacon Worker
 * (build/beacons) answers, the whole Worker (build/worker) is its BACKEND with the queue
 * consumer and the ledger. `vars` go to both; the secrets (the access token, the admin token,
 * the order webhook's `order-secret`) to the whole Worker only. `beaconQueue: false` leaves
 * the beacon Worker without its queue, `backendBound: false` without its binding; `direct` as
 * in startWorker. `orderSecret: null` leaves the order webhook unconfigured; `persist`, a
 * directory, keeps the ledger across runtimes; `capture: true` hands the events queue to a
 * third worker instead of the whole Worker's consumer (`captured()`: the bodies so far, once).
 * Resolves to { url, mf, fetch, isolate (the whole Worker's counts), captured, stop }. */
export async function startSplit(vars = {}, { beaconQueue = true, backendBound = true, rateLimit = 100_000, direct = false,
  orderSecret = 'order-secret', persist, capture = false } = {}) {
  const settings = { PIXEL_ID, META_API_VERSION: 'v26.0', ...vars };
  const beacons = {
    name: 'capi-edge-beacons',
    ...builtWorker('beacons'),
    bindings: settings,
    ratelimits: { BEACON_RATE_LIMITER: { simple: { limit: rateLimit, period: 60 } } },
    ...(beaconQueue && { queueProducers: { EVENTS: EVENTS_QUEUE } }),
    ...(backendBound && { serviceBindings: { BACKEND: 'capi-edge' } }),
    ...(direct && { unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }] }),
  };
  const whole = {
    name: 'capi-edge',
    ...builtWorker('worker'),
    bindings: { ...settings, META_ACCESS_TOKEN: TOKEN, ADMIN_TOKEN, ...(orderSecret && { ORDER_WEBHOOK_SECRET: orderSecret }),
      RETRY_BASE_SECONDS: '1', RETRY_MAX_SECONDS: '4' },
    durableObjects: { LEDGER: { className: 'Ledger', useSQLite: true } },
    queueProducers: { EVENTS: EVENTS_QUEUE, DEAD_LETTERS: DEAD_LETTERS_QUEUE },
    queueConsumers: queueConsumers({ events: !capture }),
  };
  const mf = new Miniflare({
    host: '127.0.0.1',
    port: 0,
    workers: [beacons, whole, ...(capture ? [captureWorker] : [])],
    ...(persist && { durableObjectsPersist: persist }),
    handleRuntimeStdio: (stdout, stderr) => { keepLogs(stdout, process.stdout); keepLogs(stderr, process.stderr); },
  });
  const entry = await mf.ready;
  const url = (direct ? await mf.unsafeGetDirectURL('capi-edge-beacons') : entry).toString().replace(/\/$/, '');
  const fetchIt = (path, init = {}) => mf.dispatchFetch(`${direct ? url : 'http://shop.test'}${path}`, init);
  const isolate = async () => (await (await fetchIt('/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()).isolate;
  const captured = async () => (capture ? (await (await mf.getWorker('capture')).fetch('http://capture/')).json() : []);
  return { url, mf, fetch: fetchIt, isolate, captured, stop: () => mf.dispose() };
}

/** Polls `check` until it returns a truthy value or `ms` pass. */
export async function eventually(check, ms = 10_000, what = 'condition') {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { last = await check(); if (last) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

/** Headless Chromium for the browser tests (CHROMIUM_PATH, else the distribution's); Playwright
 * gives every launch a fresh, empty profile. `extraArgs` for a test's own switches. */
export const launchChromium = (extraArgs = []) =>
  chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extraArgs],
    timeout: 30_000,
  });

// The webhook fixtures are the platforms' documented bodies, recorded around this moment. Meta
// takes events of the last 7 days only, so a test reads them moved to the day it runs.
const FIXTURES_RECORDED = Date.UTC(2026, 10, 26) / 1000;
const ISO_TIME = /"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(Z|[+-]\d\d:\d\d)?"/g;
const UNIX_SECONDS = /(":\s*)(1[78]\d{8})\b(?!\.)/g;

/** A webhook fixture's text with every timestamp (ISO 8601 with or without an offset, and Unix
 * seconds) moved by the time since the fixtures were recorded, the offsets kept as written. */
export function fixtureText(name) {
  const text = readFileSync(`${ROOT}tests/fixtures/webhooks/${name}`, 'utf8');
  const shift = Math.floor(Date.now() / 1000) - FIXTURES_RECORDED;
  return text
    .replace(ISO_TIME, (_, local, zone = '') => `"${new Date(Date.parse(`${local}Z`) + shift * 1000).toISOString().slice(0, 19)}${zone}"`)
    .replace(UNIX_SECONDS, (_, lead, secs) => `${lead}${Number(secs) + shift}`);
}

export const HASHED_KEYS = ['em', 'ph', 'fn', 'ln', 'ct', 'st', 'zp', 'country', 'ge', 'db', 'external_id'];
export const isSha256 = (v) => /^[0-9a-f]{64}$/.test(v);
export const shimVersion = () => readFileSync(`${ROOT}build/shim/p.js`, 'utf8').match(/p\.wasm\?v=([0-9a-f]+)/)[1];
