// make profile: where the Worker spends CPU per beacon, measured, not guessed.
//
// Runs the sandbox and the Worker built WITH its wasm name section (build/worker-names, see
// scripts/build-worker.sh CAPI_WORKER_NAMES_DIR) in workerd via Miniflare, with the bindings of
// tests/integration/harness.mjs startWorker (queues, ledger Durable Object on SQLite, a high rate
// limit), plus workerd's V8 inspector. Then:
//   1. warm-up beacons (JIT, ledger tables), drained;
//   2. a baseline run without the profiler: workerd CPU (utime+stime from /proc) per beacon;
//   3. a profiled run: the V8 sampling profiler while the beacons are in flight ("ingest"
//      window), then a second profile from the last answer until the queue has drained
//      ("drain" window). Every sample is also attributed by its stack to the fetch handler,
//      the queue consumer or the ledger Durable Object, so consumer work that overlaps the
//      ingest window is not counted as ingest.
//   4. an allocation run: V8's sampling heap profiler, counting objects the garbage collector
//      has already freed too, while the same number of beacons is in flight: bytes of JS heap
//      per beacon, by path and by allocation site (garbage is CPU, and its collection pauses
//      the thread that answers beacons);
//   5. the same load once more, counting only the objects no scavenge freed: what is promoted
//      to the old generation, whose full collections are the long pauses (and what was still
//      young when sampling stopped, a bound on which the report's per-site shares give).
// For the tail latency, the ingest window is also read as a timeline: a "block" is a stretch of
// samples of the consumer, the ledger and the garbage collector with no beacon's work between
// them; a beacon that arrives during one waits for the rest of it.
// Prints the top functions by self time, category totals (% of non-idle samples) per path,
// and CPU ms per beacon; writes the raw .cpuprofile files (open them in Chrome DevTools) and a
// JSON summary to build/profile/.
//
// Options (env): PROFILE_BEACONS (3000), PROFILE_CONCURRENCY (16), PROFILE_INTERVAL_US (50),
// PROFILE_WARMUP (300), PROFILE_WORKER_DIR (build/worker-names), PROFILE_TOP (25), PROFILE_VARS
// (JSON, extra Worker vars), PROFILE_DEADLINE_SECONDS (600), PROFILE_TAG (writes build/profile-TAG/).
import { Miniflare } from 'miniflare';
import WebSocket from 'ws';
import { readFileSync, writeFileSync, mkdirSync, readdirSync, existsSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { startSandbox, ROOT, PIXEL_ID, TOKEN, ADMIN_TOKEN } from '../tests/integration/harness.mjs';

import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';

// ---------------------------------------------------------------- load generator (worker thread)
// Beacons as bench/beacon.lua sends them (~600 bytes, a fresh event_id each), from the Worker's
// own origin, with the shim's text/plain content type.
if (!isMainThread && workerData?.loadgen) {
  const { url, n, run, concurrency } = workerData;
  const headers = {
    'content-type': 'text/plain;charset=UTF-8',
    origin: url,
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
    'cf-connecting-ip': '198.51.100.7',
  };
  let seq = 0;
  const body = () => JSON.stringify({
    event_name: 'AddToCart',
    event_id: `prof-${run}-${++seq}`,
    event_source_url: `${url}/p/mug`,
    event_time_ms: Date.now(),
    fbp: 'fb.1.1700000000000.123456789',
    custom_data: { value: 12.5, currency: 'EUR', content_ids: ['mug'] },
    user_data: { em: 'jane.doe@example.com', ph: '+1 650 555 1212', country: 'US' },
  });
  const statuses = {};
  let i = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (i < n) {
      i++;
      const r = await fetch(`${url}/t/e`, { method: 'POST', headers, body: body() });
      await r.arrayBuffer();
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }
  }));
  parentPort.postMessage({ ms: performance.now() - t0, statuses });
  await new Promise(() => {});
}

const N = Number(process.env.PROFILE_BEACONS ?? 3000);
const CONCURRENCY = Number(process.env.PROFILE_CONCURRENCY ?? 16);
const INTERVAL_US = Number(process.env.PROFILE_INTERVAL_US ?? 50);
const WARMUP = Number(process.env.PROFILE_WARMUP ?? 300);
const TOP = Number(process.env.PROFILE_TOP ?? 25);
const WORKER_DIR = `${ROOT}${process.env.PROFILE_WORKER_DIR ?? 'build/worker-names'}`;
const OUT = `${ROOT}build/profile${process.env.PROFILE_TAG ? `-${process.env.PROFILE_TAG}` : ''}`;
// Extra Worker vars as JSON, e.g. PROFILE_VARS='{"CUSTOMER_DATA":"hashed"}' to profile hashing.
const EXTRA_VARS = JSON.parse(process.env.PROFILE_VARS || '{}');
// The whole run is bounded: past this, everything is torn down and the script fails.
const DEADLINE_MS = Number(process.env.PROFILE_DEADLINE_SECONDS ?? 600) * 1000;

if (!existsSync(`${WORKER_DIR}/index.js`)) {
  console.error(`no named Worker build in ${WORKER_DIR}: CAPI_WORKER_NAMES_DIR=build/worker-names bash scripts/build-worker.sh`);
  process.exit(1);
}
mkdirSync(OUT, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CLK_TCK = Number(execSync('getconf CLK_TCK').toString().trim()) || 100;

// ---------------------------------------------------------------- workerd CPU from /proc
/** PIDs of every workerd process below this node process. */
function workerdPids() {
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      kids.set(Number(d), { comm, ppid });
    } catch {}
  }
  const mine = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, { ppid }] of kids) if (!mine.has(pid) && mine.has(ppid)) { mine.add(pid); grew = true; }
  }
  return [...mine].filter((p) => kids.get(p)?.comm === 'workerd');
}
/** utime+stime of the workerd processes in ms (all threads). */
function workerdCpuMs(pids) {
  let ticks = 0;
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // fields 14 (utime), 15 (stime)
    } catch {}
  }
  return (ticks * 1000) / CLK_TCK;
}

// ================================================================ profile analysis

/** Legacy Rust symbol demangling (`_ZN…E`) and hash stripping, enough to read a profile. */
function demangle(name) {
  let s = name;
  const m = s.match(/^_?_ZN(.*)E$/);
  if (m) {
    let rest = m[1];
    const parts = [];
    while (rest.length) {
      const n = rest.match(/^(\d+)/);
      if (!n) break;
      const len = Number(n[1]);
      parts.push(rest.slice(n[1].length, n[1].length + len));
      rest = rest.slice(n[1].length + len);
    }
    s = parts.join('::')
      .replace(/\$LT\$/g, '<').replace(/\$GT\$/g, '>').replace(/\$u20\$/g, ' ').replace(/\$RF\$/g, '&')
      .replace(/\$C\$/g, ',').replace(/\$BP\$/g, '*').replace(/\$u7b\$/g, '{').replace(/\$u7d\$/g, '}')
      .replace(/\$u5b\$/g, '[').replace(/\$u5d\$/g, ']').replace(/\$u27\$/g, "'").replace(/\.\./g, '::')
      .replace(/^_</, '<');
  }
  return s.replace(/::h[0-9a-f]{16}$/, "").replace(/\[[0-9a-f]{16}\]/g, "");
}

/** The glue helpers esbuild minified in index.js, named by what their source does. */
function jsHelperName(frame, src) {
  const line = src[frame.lineNumber] ?? '';
  const text = line.slice(frame.columnNumber, frame.columnNumber + 400);
  const rules = [
    [/encodeInto|\.encode\(/, 'passStringToWasm (TextEncoder copy into wasm memory)'],
    [/\.decode\(/, 'getStringFromWasm (TextDecoder copy out of wasm memory)'],
    [/new DataView\(/, 'getDataViewMemory'],
    [/new Uint8Array\(i\.memory/, 'getUint8ArrayMemory'],
    [/new Int32Array\(i\.memory/, 'getInt32ArrayMemory'],
    [/__externref_table_alloc/, 'addToExternrefTable'],
    [/__instance_terminated/, 'checkInstanceTerminated (before every export call)'],
    [/Cannot invoke closure/, 'closure trampoline (makeMutClosure)'],
    [/wasm_bindgen__convert__closures/, 'closure invoke → wasm'],
    [/i\.fetch\(/, 'fetch export → wasm'],
    [/i\.queue\(/, 'queue export → wasm'],
    [/i\.ledger_fetch\(/, 'Ledger.fetch → wasm'],
  ];
  for (const [re, label] of rules) if (re.test(text)) return label;
  return null;
}

function frameInfo(node, src) {
  const f = node.callFrame;
  const url = f.url ?? '';
  const isWasm = url.startsWith('wasm://');
  const isGlue = /index\.js$/.test(url);
  let name = f.functionName || '';
  if (isWasm) name = demangle(name) || `wasm-function@${f.columnNumber}`;
  else if (isGlue && !/^__wbg|^__wbindgen/.test(name)) {
    const helper = jsHelperName(f, src);
    name = `${name || '(anonymous)'}${helper ? ` [${helper}]` : ''} index.js:${f.lineNumber + 1}:${f.columnNumber + 1}`;
  } else if (!name) name = url ? `(anonymous) ${url.split('/').pop()}:${f.lineNumber + 1}:${f.columnNumber + 1}` : '(anonymous)';
  return { name, url, isWasm, isGlue, rawName: f.functionName || '' };
}

/** A category for a frame's self time; each rule is justified by the names it matches. */
function categorise(fi) {
  const n = fi.name;
  if (n === '(idle)') return 'idle';
  if (n === '(program)') return 'runtime: (program) — V8/workerd native, no JS frame';
  if (n === '(garbage collector)') return 'runtime: V8 garbage collector';
  if (fi.isWasm) {
    if (/dlmalloc|__rust_(alloc|dealloc|realloc)|__rdl_|__rg_|alloc::alloc::|raw_vec|RawVec|__wbindgen_(malloc|realloc|free)|<alloc::vec::Vec<T> as core::clone|<alloc::string::String as core::clone|alloc::vec::Vec<T,A>::reserve|finish_grow|do_reserve_and_handle|grow_one/.test(n)) return 'wasm: allocator (dlmalloc, Vec/String growth, clones)';
    if (/^(memcpy|memmove|memset|memcmp|bcmp)$|compiler_builtins::mem/.test(n)) return 'wasm: memcpy/memmove/memset/memcmp';
    if (/sha2|sha256|compress256|Sha256/i.test(n)) return 'wasm: SHA-256 (sha2)';
    if (/serde_json|serde::|serde_core|::deserialize|::serialize|Deserializer|Serializer|<__Field|__FieldVisitor|visit_map|visit_seq/.test(n)) return 'wasm: serde / serde_json (parse + serialize)';
    if (/core::fmt|alloc::fmt|::fmt$|fmt::Write|write_str|pad_integral|Formatter/.test(n)) return 'wasm: core::fmt (format!, to_string)';
    if (/capi_core::/.test(n)) return 'wasm: capi-core (normalize, validate, build event)';
    if (/capi_worker::/.test(n)) return 'wasm: capi-worker (handlers)';
    if (/^worker::|<worker::|worker_sys|wasm_bindgen|js_sys|web_sys|serde_wasm_bindgen|__wbindgen|__externref|__wbg_/.test(n)) return 'wasm: worker-rs / wasm-bindgen glue (Rust side)';
    if (/url::|idna|percent_encoding|form_urlencoded/.test(n)) return 'wasm: url parsing (url crate)';
    return 'wasm: other Rust (core/alloc/std, inlined code)';
  }
  if (fi.isGlue) {
    if (/^__wbg_|^__wbindgen/.test(fi.rawName)) return 'JS glue: wasm-bindgen imports (wasm→JS crossings)';
    if (/TextEncoder|TextDecoder/.test(n)) return 'JS glue: string copies JS↔wasm (TextEncoder/Decoder helpers)';
    return 'JS glue: other wasm-bindgen/worker-build helpers (export calls, closures, proxies)';
  }
  if (/^(wasm-to-js|js-to-wasm)/.test(n)) return 'JS glue: V8 wasm↔JS call wrappers (wasm-to-js / js-to-wasm)';
  if (!fi.url) {
    if (/^(encode|encodeInto|decode)$/.test(n)) return 'JS glue: string copies JS↔wasm (TextEncoder/Decoder helpers)';
    if (/^(parse|stringify)$/.test(n)) return 'runtime: JSON.parse/stringify (JS side)';
    return 'runtime: native functions (workerd APIs: queue.send, sql.exec, console.log, Response, …; V8 builtins)';
  }
  return 'runtime: other JS (workerd/miniflare modules)';
}

/** Which path a sample belongs to, from its whole stack (root → leaf). Every handler runs as a
 *  wasm-bindgen-futures task, so the entry point (fetch / queue / Ledger.fetch) is not on the
 *  stack after the first await; the path is read from the Rust frames under the task instead.
 *  First matching rule wins; the markers come from the stacks this profile actually shows. */
const PATH_RULES = [
  ['ledger DO', /capi_worker::ledger::Ledger::|<capi_worker::ledger::Ledger as|worker::sql::|ledger_fetch|__wbg_ledger|ContentVisitor|__wbg_getAlarm|__wbg_setAlarm|__wbg_exec_|__wbg_toArray_/],
  ['queue consumer', /delivery::consume|deliver_pixel|LedgerClient|delivery::finish|delivery::post|delivery::settle|delivery::log_event|MessageBatch|worker::queue::Message|__wbg_ack_|__wbg_messages_|presend_check|meta_answer|request_body|events_url|S\.queue|queue export/],
  ['ingest (fetch)', /capi_worker::ingest|body::bounded|Config::from_env|delivery::enqueue|capi_worker::log::|capi_core::|new_nonce|cookies::|__wbg_limit_|__wbg_waitUntil_|S\.fetch|fetch export|worker::request::Request::url|worker::headers::Headers::get|Queue::send_raw/],
  ['shared: Request/Response wrapping (fetch handler and ledger DO)', /<worker::request::Request as core::convert::From|worker::response::|web_sys::features::gen_Response|__wbg_new_with_opt_/],
  ['shared: async runtime (wasm-bindgen-futures tasks, promises, microtasks)', /js_sys::futures|wasm_bindgen_futures|Promise::new|__wbg_queueMicrotask|__wbg_then_|closures::_::invoke/],
];
function pathOf(stackNames) {
  const s = stackNames.join('\n');
  for (const [name, re] of PATH_RULES) if (re.test(s)) return name;
  return 'unattributed (V8/workerd: (program), GC, event loop)';
}

/** Inclusive shares of the code paths the findings talk about: a sample counts once for each
 *  label whose frame is anywhere on its stack. */
const INCLUSIVE = [
  ['ingest: Config::from_env (per request)', /Config::from_env/],
  ['log::info lines (ingest: "dropped"; drain: "capi_delivery")', /capi_worker::log::info/],
  ['  of which console.log itself (__wbg_log → workerd)', /__wbg_log_/],
  ['ingest: body::bounded (ReadableStream reader → Vec)', /body::bounded/],
  ['ingest: Request::url() (url crate parse of the full URL)', /worker::request::Request::url/],
  ['ingest: Headers::get (each a JS call + string copy)', /worker::headers::Headers::get/],
  ['ingest: rate limiter (env.rate_limiter + limit())', /within_rate_limit|__wbg_limit_/],
  ['ingest: Beacon::parse (serde_json → Value → Beacon)', /capi_core::beacon::/],
  ['ingest: website_event + capi-core (fbp/fbc/privacy/normalize/hash)', /capi_core::(website|fbc|privacy|normalize|hash|origin)/],
  ['ingest: delivery::enqueue (QueuedEvent → JSON → queue.send)', /delivery::enqueue/],
  ['  of which QueuedEvent serialize (serde_json)', /Serialize for capi_worker::delivery::QueuedEvent/],
  ['  of which Queue::send (serde_wasm_bindgen + queue.send)', /Queue::send_raw|__wbg_send_/],
  ['ingest: ctx.waitUntil', /__wbg_waitUntil_/],
  ['Request from web_sys (reads request.cf, url, method)', /<worker::request::Request as core::convert::From/],
  ['  of which request.cf getter', /__wbg_cf_/],
  ['Response → web_sys Response (new Response)', /worker::response::<impl core::convert::From/],
  ['consumer: MessageBatch::messages (serde_wasm_bindgen per message)', /MessageBatch|worker::queue::Message/],
  ['consumer: QueuedEvent deserialize (serde_json)', /Deserialize for capi_worker::delivery::QueuedEvent/],
  ['consumer: LedgerClient::claim (one DO call per shard)', /LedgerClient::claim/],
  ['consumer: LedgerClient::record (receipts, one DO call per shard)', /LedgerClient::record/],
  ['consumer: LedgerClient::call → Response::text/json', /LedgerClient::call.*\n(.*\n)*.*Response::(text|json)/],
  ['consumer: CAPI POST (request_body + fetch)', /delivery::post|capi_core::event::request_body/],
  ['consumer: log_event "capi_delivery" lines', /delivery::log_event/],
  ['consumer: message ack', /__wbg_ack_/],
  ['ledger DO: req.json::<Op>() (JS JSON.parse + serde_wasm_bindgen walk)', /ContentVisitor/],
  ['ledger DO: SqlStorage::exec (SQLite)', /worker::sql::SqlStorage::exec/],
  ['ledger DO: Ledger::count (one upsert per count row)', /capi_worker::ledger::Ledger::count/],
  ['ledger DO: SqlCursor::to_array (rows → serde_wasm_bindgen)', /SqlCursor::to_array/],
  ['ledger DO: ensure_alarm (getAlarm)', /ensure_alarm|__wbg_getAlarm_/],
  ['all: serde_wasm_bindgen (JS object ↔ Rust, per property)', /serde_wasm_bindgen/],
  ['all: serde_json (parse + serialize)', /serde_json/],
  ['all: core::fmt (format!/to_string)', /core::fmt|alloc::fmt/],
  ['all: dlmalloc (malloc/free/realloc)', /dlmalloc/],
  ['all: wasm→JS crossings (any __wbg_/__wbindgen_ import on the stack)', /wasm-to-js/],
  ['all: async task scheduling (queueMicrotask, wakers)', /Queue::schedule_task|raw_wake|__wbg_queueMicrotask_/],
];

/** The stretches of a profile in which the thread did no beacon's work: consecutive samples of
 *  the garbage collector, the queue consumer, the ledger object and the Rust async runtime they
 *  run on (in this run only beacons come in, and they take the entry module's synchronous path).
 *  A `(program)` sample (V8/workerd native, no JS frame) extends an open block but starts none;
 *  anything else (a beacon's frames, idle) ends it. Each block has its length (ms, from the
 *  samples' µs timestamps) and what ran in it. A block with few samples is a gap in sampling
 *  (the thread ran another isolate, or the sampler was late), not measured work. */
function blocksOf(profile, pathOfId, categoryOfId) {
  const blocks = [];
  let t = profile.startTime, cur = null;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    const id = profile.samples[i];
    const c = categoryOfId(id);
    const path = pathOfId(id);
    const what = c === 'runtime: V8 garbage collector' ? 'garbage collector'
      : c.startsWith('runtime: (program)') ? '(program)'
      : /^(queue consumer|ledger DO|shared: async runtime)/.test(path) ? path.split(' (')[0].replace(/^shared: /, '')
      : null;
    if (what === null || (what === '(program)' && !cur)) { if (cur) blocks.push(cur); cur = null; continue; }
    cur ??= { start: t, end: t, samples: 0, what: {} };
    cur.end = t;
    cur.samples++;
    cur.what[what] = (cur.what[what] ?? 0) + 1;
  }
  if (cur) blocks.push(cur);
  const wallS = (profile.endTime - profile.startTime) / 1e6;
  const ms = (b) => (b.end - b.start) / 1000;
  blocks.sort((a, b) => ms(b) - ms(a));
  return {
    wall_s: wallS,
    per_second_at_least_ms: Object.fromEntries([2, 5, 10, 20, 40].map((m) => [m, blocks.filter((b) => ms(b) >= m).length / wallS])),
    longest: blocks.slice(0, 10).map((b) => ({ ms: ms(b), samples: b.samples, what: Object.fromEntries(Object.entries(b.what).sort((x, y) => y[1] - x[1])) })),
  };
}

/** Which path allocated: heap profiles show JS frames only (no wasm), so the path is read from
 *  the glue a stack went through. In this run only beacons come in; the Rust async tasks (the
 *  queue consumer, the ledger Durable Object) resume through wasm-bindgen's closure trampoline,
 *  while the beacon path is the entry module's own code and two synchronous exports. */
function allocationPath(site, stack) {
  if (site === '(V8 API)') return 'workerd: objects it creates for the JS side (Request, Headers, Response, …)';
  if (/Ledger\.fetch → wasm/.test(stack)) return 'ledger DO';
  if (/closure trampoline|queue export → wasm/.test(stack)) return 'queue consumer and ledger DO (Rust async tasks)';
  return 'beacon path (entry module: body, gate, accept, pool, sendBatch)';
}

/** A sampling heap profile (allocations, freed ones included) by path and by allocation site. */
function allocations(heap, src, beacons) {
  const sites = new Map(), paths = new Map();
  let total = 0;
  const walk = (node, names) => {
    const fi = frameInfo(node, src);
    const stack = [...names, fi.name];
    if (node.selfSize) {
      total += node.selfSize;
      const p = allocationPath(fi.name, stack.join('\n'));
      const site = `${fi.name}   [${p.split(' (')[0].split(':')[0]}]`;
      sites.set(site, (sites.get(site) ?? 0) + node.selfSize);
      paths.set(p, (paths.get(p) ?? 0) + node.selfSize);
    }
    for (const c of node.children ?? []) walk(c, stack);
  };
  walk(heap.head, []);
  const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => ({ name: k, bytes_per_beacon: Math.round(v / beacons), pct: Math.round((1e4 * v) / total) / 100 }));
  return { bytes: total, bytes_per_beacon: Math.round(total / beacons), paths: sorted(paths), sites: sorted(sites).slice(0, 15) };
}

function analyse(prof, src) {
  const out = { windows: {}, json: {} };
  const allFn = new Map(), allCat = new Map(), allInc = new Map();
  let allTotal = 0;
  for (const [win, profile] of [['ingest', prof.ingestProfile], ['drain', prof.drainProfile]]) {
    const parent = new Map();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const info = new Map(profile.nodes.map((n) => [n.id, frameInfo(n, src)]));
    // Natives called from a wasm-bindgen import (console.log, queue.send, …) may have no name:
    // name them after the import that called them.
    for (const n of profile.nodes) {
      const fi = info.get(n.id);
      const up = parent.has(n.id) ? info.get(parent.get(n.id)) : null;
      const m = up?.rawName.match(/^__wbg_(\w+?)_[0-9a-f]{16}$/);
      if (fi.name === '(anonymous)' && !fi.url && m) fi.name = `native ${m[1]}() (called by ${up.rawName})`;
    }
    const stackCache = new Map();
    const stackOf = (id) => {
      if (!stackCache.has(id)) {
        const names = [];
        for (let x = id; x !== undefined; x = parent.get(x)) names.push(info.get(x).name);
        const joined = names.reverse().join('\n');
        stackCache.set(id, { path: pathOf(names), joined, inc: INCLUSIVE.filter(([, re]) => re.test(joined)).map(([l]) => l) });
      }
      return stackCache.get(id);
    };
    // Shares are sample counts: a sample's time delta also covers the gaps in which workerd
    // ran other isolates or waited (the deltas sum to wall time, not CPU time).
    const { samples, timeDeltas } = profile;
    const fn = new Map(), cat = new Map(), paths = new Map(), catByPath = new Map(), inc = new Map();
    let total = 0, idle = 0;
    for (let i = 0; i < samples.length; i++) {
      const fi = info.get(samples[i]);
      const c = categorise(fi);
      if (c === 'idle') { idle++; continue; }
      total++;
      const st = stackOf(samples[i]);
      const p = st.path;
      const e = fn.get(fi.name) ?? { name: fi.name, samples: 0, category: c, paths: {} };
      e.samples++; e.paths[p] = (e.paths[p] ?? 0) + 1;
      fn.set(fi.name, e);
      cat.set(c, (cat.get(c) ?? 0) + 1);
      paths.set(p, (paths.get(p) ?? 0) + 1);
      const cp = catByPath.get(p) ?? new Map();
      cp.set(c, (cp.get(c) ?? 0) + 1);
      catByPath.set(p, cp);
      for (const l of st.inc) inc.set(l, (inc.get(l) ?? 0) + 1);
      // both windows
      const a = allFn.get(fi.name) ?? { name: fi.name, samples: 0, category: c, paths: {} };
      a.samples++; a.paths[p] = (a.paths[p] ?? 0) + 1;
      allFn.set(fi.name, a);
      const ap = allCat.get(p) ?? new Map();
      ap.set(c, (ap.get(c) ?? 0) + 1);
      allCat.set(p, ap);
      for (const l of st.inc) allInc.set(l, (allInc.get(l) ?? 0) + 1);
      allTotal++;
    }
    if (win === 'ingest') out.blocks = blocksOf(profile, (id) => stackOf(id).path, (id) => categorise(info.get(id)));
    const sortedDeltas = timeDeltas.slice(1).sort((a, b) => a - b);
    const medianUs = sortedDeltas[sortedDeltas.length >> 1] ?? INTERVAL_US;
    const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]);
    out.windows[win] = { total, idle, samples: samples.length, medianUs, wallMs: (profile.endTime - profile.startTime) / 1000, fn: [...fn.values()].sort((a, b) => b.samples - a.samples), cat: sorted(cat), paths: sorted(paths), inc };
    const pctOf = (v, t) => Math.round((1e4 * v) / t) / 100;
    out.json[`${win}_window`] = {
      non_idle_samples: total, idle_samples: idle, median_sample_interval_us: medianUs, wall_ms: out.windows[win].wallMs,
      paths: Object.fromEntries(sorted(paths).map(([k, v]) => [k, { samples: v, pct: pctOf(v, total) }])),
      categories: Object.fromEntries(sorted(cat).map(([k, v]) => [k, { samples: v, pct: pctOf(v, total) }])),
      inclusive: Object.fromEntries(INCLUSIVE.map(([l]) => [l.trim(), { samples: inc.get(l) ?? 0, pct: pctOf(inc.get(l) ?? 0, total) }])),
      top_functions: [...fn.values()].sort((a, b) => b.samples - a.samples).slice(0, 60).map((e) => ({ ...e, pct: pctOf(e.samples, total) })),
    };
  }
  out.all = { total: allTotal, fn: [...allFn.values()].sort((a, b) => b.samples - a.samples), catByPath: allCat, inc: allInc };
  const pctOf = (v) => Math.round((1e4 * v) / allTotal) / 100;
  out.json.both_windows = {
    non_idle_samples: allTotal,
    top_functions: out.all.fn.slice(0, 60).map((e) => ({ ...e, pct: pctOf(e.samples) })),
    categories_by_path: Object.fromEntries([...allCat].map(([p, m]) => [p, Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, { samples: v, pct: pctOf(v) }]))])),
    inclusive: Object.fromEntries(INCLUSIVE.map(([l]) => [l.trim(), { samples: allInc.get(l) ?? 0, pct: pctOf(allInc.get(l) ?? 0) }])),
  };
  return out;
}

function printReport(s, r) {
  const pct = (v, t) => `${((100 * v) / t).toFixed(1).padStart(5)}%`;
  const n = (v) => String(v).padStart(6);
  const b = s.baseline, p = s.profiled;
  console.log('\n=== workerd CPU (utime+stime of the workerd process: all its isolates, incl. Miniflare\'s entry/queue services, SQLite, HTTP)');
  console.log(`baseline, no profiler: ${b.total_ms_per_beacon.toFixed(3)} ms/beacon  (ingest window ${b.ingest_ms_per_beacon.toFixed(3)} + drain ${b.drain_ms_per_beacon.toFixed(3)}); ${b.beacons_per_s.toFixed(0)} beacons/s at concurrency ${s.concurrency}; statuses ${JSON.stringify(b.statuses)}; ${b.log_lines_per_beacon.toFixed(2)} log lines/beacon`);
  console.log(`profiled run:          ${p.total_ms_per_beacon.toFixed(3)} ms/beacon  (ingest window ${p.ingest_ms_per_beacon.toFixed(3)} + drain ${p.drain_ms_per_beacon.toFixed(3)}); statuses ${JSON.stringify(p.statuses)}`);
  for (const [win, w] of Object.entries(r.windows)) {
    const est = (w.total * w.medianUs) / 1000;
    console.log(`\n=== ${win} window: ${w.samples} samples over ${w.wallMs.toFixed(0)} ms wall, ${w.total} non-idle (median interval ${w.medianUs} µs → ≈${est.toFixed(0)} ms ≈ ${(est / s.beacons).toFixed(3)} ms/beacon in the Worker's isolate), ${w.idle} idle`);
    console.log('by path (stack attribution), % of non-idle samples:');
    for (const [k, v] of w.paths) console.log(`  ${pct(v, w.total)} ${n(v)}  ${k}`);
    console.log('by category (self time):');
    for (const [k, v] of w.cat) console.log(`  ${pct(v, w.total)} ${n(v)}  ${k}`);
  }
  if (r.blocks) {
    const bl = r.blocks;
    console.log(`\n=== ingest window as a timeline: stretches of GC, consumer and ledger work with no beacon's work between ("blocks"; a beacon arriving in one waits for the rest)`);
    console.log(`blocks per second at least: ${Object.entries(bl.per_second_at_least_ms).map(([m, v]) => `${m} ms ${v.toFixed(2)}`).join(', ')}`);
    console.log('longest, with what ran in them (samples):');
    for (const b of bl.longest) console.log(`  ${b.ms.toFixed(1).padStart(6)} ms  ${b.samples} samples: ${Object.entries(b.what).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  for (const [key, title, sites] of [
    ['allocations', 'JS heap allocated per beacon (sampling heap profiler, freed objects included, until the queue drained)', 15],
    ['survivors', 'JS heap no scavenge freed, per beacon (promoted to the old generation, which only a full collection frees, or still young when sampling stopped)', 8],
  ]) {
    const a = s[key];
    if (!a) continue;
    console.log(`\n=== ${title}: ${(a.bytes_per_beacon / 1024).toFixed(1)} KiB (${(a.bytes / 1e6).toFixed(0)} MB for ${s.beacons} beacons; ${OUT}/${key}.heapprofile)`);
    console.log('by path:');
    for (const e of a.paths) console.log(`  ${e.pct.toFixed(1).padStart(5)}% ${String(e.bytes_per_beacon).padStart(6)} B/beacon  ${e.name}`);
    console.log('by allocation site [path] (index.js positions are the minified glue: build/worker-names/index.js):');
    for (const e of a.sites.slice(0, sites)) console.log(`  ${e.pct.toFixed(1).padStart(5)}% ${String(e.bytes_per_beacon).padStart(6)} B/beacon  ${e.name.slice(0, 140)}`);
  }
  const t = r.all.total;
  console.log(`\n=== both windows, by path then category (% of all ${t} non-idle samples)`);
  for (const [path, cats] of [...r.all.catByPath].sort((a, b) => [...b[1].values()].reduce((x, y) => x + y, 0) - [...a[1].values()].reduce((x, y) => x + y, 0))) {
    const sum = [...cats.values()].reduce((x, y) => x + y, 0);
    console.log(`${pct(sum, t)} ${n(sum)}  ${path}`);
    for (const [c, v] of [...cats].sort((a, b) => b[1] - a[1])) if (v / t >= 0.001) console.log(`      ${pct(v, t)} ${n(v)}  ${c}`);
  }
  console.log(`\n=== inclusive shares of code paths (% of non-idle samples with that frame on the stack)   ingest-window  drain-window  both`);
  for (const [l] of INCLUSIVE) {
    const wi = r.windows.ingest, wd = r.windows.drain;
    console.log(`  ${l.padEnd(72)} ${pct(wi.inc.get(l) ?? 0, wi.total)}   ${pct(wd.inc.get(l) ?? 0, wd.total)}   ${pct(r.all.inc.get(l) ?? 0, t)}`);
  }
  for (const [label, fns, total] of [['ingest window', r.windows.ingest.fn, r.windows.ingest.total], ['drain window', r.windows.drain.fn, r.windows.drain.total], ['both windows', r.all.fn, t]]) {
    console.log(`\n=== top ${TOP} functions by self samples, ${label} (% of non-idle)`);
    for (const e of fns.slice(0, TOP)) {
      const main = Object.entries(e.paths).sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
      console.log(`  ${pct(e.samples, total)} ${n(e.samples)}  ${e.name.slice(0, 150)}\n                 ${e.category}; mostly ${main}`);
    }
  }
  console.log(`\nraw profiles: ${OUT}/ingest.cpuprofile, ${OUT}/drain.cpuprofile (Chrome DevTools → Performance → load); summary: ${OUT}/summary.json`);
}

// ---------------------------------------------------------------- sandbox + Worker
const logLines = { stdout: 0, stderr: 0 };
const sandbox = await startSandbox();
const mf = new Miniflare({
  modules: true,
  scriptPath: `${WORKER_DIR}/index.js`,
  modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true }],
  compatibilityDate: '2026-04-01',
  host: '127.0.0.1',
  port: 0,
  inspectorPort: 0,
  bindings: { PIXEL_ID, META_ACCESS_TOKEN: TOKEN, META_API_VERSION: 'v26.0', ADMIN_TOKEN, RETRY_BASE_SECONDS: '1', RETRY_MAX_SECONDS: '4', META_GRAPH_URL: sandbox.url, ...EXTRA_VARS },
  durableObjects: { LEDGER: { className: 'Ledger', useSQLite: true } },
  // The Worker's log lines (one JSON line per console.log) are counted, not printed.
  handleRuntimeStdio: (stdout, stderr) => {
    for (const [stream, key] of [[stdout, 'stdout'], [stderr, 'stderr']]) {
      stream.on('data', (d) => { for (const b of d) if (b === 10) logLines[key]++; });
    }
  },
  ratelimits: { BEACON_RATE_LIMITER: { simple: { limit: 10_000_000, period: 60 } } },
  queueProducers: { EVENTS: 'capi-edge-events', DEAD_LETTERS: 'capi-edge-dead-letters' },
  queueConsumers: { 'capi-edge-events': { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 10, deadLetterQueue: 'capi-edge-dead-letters' } },
  // The Worker's own socket, as on Cloudflare: no Miniflare entry worker in front (see bench/serve.mjs).
  unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
});
let stopped = false;
const stopAll = async () => {
  if (stopped) return;
  stopped = true;
  sandbox.stop();
  await Promise.race([mf.dispose().catch(() => {}), sleep(5000)]);
};
const deadline = setTimeout(async () => {
  console.error(`profile: over ${DEADLINE_MS / 1000} s, giving up`);
  await stopAll();
  process.exit(2);
}, DEADLINE_MS);
process.on('SIGINT', () => stopAll().finally(() => process.exit(130)));
process.on('SIGTERM', () => stopAll().finally(() => process.exit(143)));

try {
  await mf.ready;
  const url = (await mf.unsafeGetDirectURL()).toString().replace(/\/$/, '');
  const pids = workerdPids();
  if (pids.length === 0) throw new Error('no workerd process found below this node process');

  // ---------------------------------------------------------------- the inspector
  const inspector = await mf.getInspectorURL();
  const targets = await (await fetch(`http://${inspector.host}/json`)).json();
  // Miniflare's own services (entry, queue broker, …) are `core:…`/`__miniflare…`; the user
  // Worker is the one target that is not.
  const isInternal = (t) => /miniflare|core:(?!user)|loopback|entry/i.test(`${t.title} ${t.id} ${t.url}`);
  const target = targets.find((t) => !isInternal(t)) ?? targets[0];
  const wsUrl = target.webSocketDebuggerUrl ?? `ws://${inspector.host}/${target.id}`;
  console.log(`worker ${url}  sandbox ${sandbox.url}  workerd pids ${pids.join(',')}`);
  console.log(`inspector targets: ${targets.map((t) => JSON.stringify(t.title ?? t.id)).join(', ')} → ${target.title ?? target.id}`);
  const ws = new WebSocket(wsUrl);
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  let nextId = 1;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.id && pending.has(msg.id)) {
      const { res, rej } = pending.get(msg.id);
      pending.delete(msg.id);
      msg.error ? rej(new Error(`${msg.error.message}`)) : res(msg.result);
    }
  });
  const cdp = (method, params = {}) => new Promise((res, rej) => {
    const id = nextId++;
    pending.set(id, { res, rej });
    ws.send(JSON.stringify({ id, method, params }));
  });

  // ---------------------------------------------------------------- load
  // The load runs in a worker thread, so this thread stays free to drain workerd's stdout
  // (a full pipe would block console.log inside the isolate and show up as profile time).
  let sent = 0;
  async function send(n, run) {
    const w = new Worker(new URL(import.meta.url), { workerData: { loadgen: true, url, n, run, concurrency: CONCURRENCY } });
    const result = await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
    await w.terminate();
    sent += n;
    return result;
  }
  /** Until the sandbox holds every relayed event (then `tail` ms for the receipts) and, after
   *  `atDelivered` (which stops the profiler: its sampler thread is never idle), workerd has
   *  used no CPU for 1 s. */
  async function drain(expected, atDelivered = async () => {}) {
    const t0 = performance.now();
    while ((await sandbox.events()).summary.server_events < expected) {
      if (performance.now() - t0 > 120_000) throw new Error(`queue did not drain: ${(await sandbox.events()).summary.server_events}/${expected}`);
      await sleep(100);
    }
    const tDelivered = performance.now() - t0;
    await sleep(1500);
    await atDelivered();
    let last = workerdCpuMs(pids);
    let quiet = 0;
    while (quiet < 4) { // 4 × 250 ms with < 1 tick of CPU
      await sleep(250);
      const now = workerdCpuMs(pids);
      quiet = now - last <= 1000 / CLK_TCK ? quiet + 1 : 0;
      last = now;
    }
    return { deliveredMs: tDelivered, ms: performance.now() - t0 - 1000 };
  }
  const phase = async (name, n, profile) => {
    const cpu0 = workerdCpuMs(pids);
    const lines0 = logLines.stdout + logLines.stderr;
    if (profile) await cdp('Profiler.start');
    const load = await send(n, name);
    const ingestProfile = profile ? (await cdp('Profiler.stop')).profile : null;
    const cpu1 = workerdCpuMs(pids);
    if (profile) await cdp('Profiler.start');
    let drainProfile = null;
    const d = await drain(sent, async () => { if (profile) drainProfile = (await cdp('Profiler.stop')).profile; });
    const cpu2 = workerdCpuMs(pids);
    return { name, n, load, drain: d, logLines: logLines.stdout + logLines.stderr - lines0, cpuIngestMs: cpu1 - cpu0, cpuDrainMs: cpu2 - cpu1, ingestProfile, drainProfile };
  };

  await cdp('Profiler.enable');
  await cdp('Profiler.setSamplingInterval', { interval: INTERVAL_US });
  console.log(`warm-up: ${WARMUP} beacons …`);
  const warm = await phase('warmup', WARMUP, false);
  console.log(`  statuses ${JSON.stringify(warm.load.statuses)}`);
  console.log(`baseline (no profiler): ${N} beacons, concurrency ${CONCURRENCY} …`);
  const base = await phase('baseline', N, false);
  console.log(`profiled (sampling every ${INTERVAL_US} µs): ${N} beacons …`);
  const prof = await phase('profiled', N, true);
  /** N beacons under V8's sampling heap profiler until the queue drained; `minorGC`: count the
   *  objects a scavenge freed too. The profile is kept in build/profile/NAME.heapprofile. */
  const heapPhase = async (name, minorGC) => {
    await cdp('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: minorGC });
    await send(N, name);
    let profile = null;
    await drain(sent, async () => { profile = (await cdp('HeapProfiler.stopSampling')).profile; });
    writeFileSync(`${OUT}/${name}.heapprofile`, JSON.stringify(profile));
    return profile;
  };
  await cdp('HeapProfiler.enable');
  console.log(`allocations (sampling heap profiler): ${N} beacons …`);
  const heap = await heapPhase('allocations', true);
  // The same load again, counting only what no scavenge (V8's young-generation collection)
  // freed: objects promoted to the old generation, which grows until a full collection (the
  // long pauses of the timeline), plus what was still young when sampling stopped.
  console.log(`survivors (sampling heap profiler, objects no scavenge freed): ${N} beacons …`);
  const survivors = await heapPhase('survivors', false);
  ws.close();

  // ---------------------------------------------------------------- analysis
  writeFileSync(`${OUT}/ingest.cpuprofile`, JSON.stringify(prof.ingestProfile));
  writeFileSync(`${OUT}/drain.cpuprofile`, JSON.stringify(prof.drainProfile));
  const scriptSrc = readFileSync(`${WORKER_DIR}/index.js`, 'utf8').split('\n');
  const report = analyse(prof, scriptSrc);
  const cpu = (p) => ({
    ingest_ms_per_beacon: p.cpuIngestMs / p.n,
    drain_ms_per_beacon: p.cpuDrainMs / p.n,
    total_ms_per_beacon: (p.cpuIngestMs + p.cpuDrainMs) / p.n,
    ingest_wall_s: p.load.ms / 1000,
    beacons_per_s: p.n / (p.load.ms / 1000),
    drain_wall_s: p.drain.ms / 1000,
    statuses: p.load.statuses,
    log_lines_per_beacon: p.logLines / p.n,
  });
  const summary = { vars: EXTRA_VARS, beacons: N, concurrency: CONCURRENCY, interval_us: INTERVAL_US, clk_tck: CLK_TCK, baseline: cpu(base), profiled: cpu(prof), blocks: report.blocks, allocations: allocations(heap, scriptSrc, N), survivors: allocations(survivors, scriptSrc, N), ...report.json };
  writeFileSync(`${OUT}/summary.json`, JSON.stringify(summary, null, 2));
  printReport(summary, report);
} finally {
  clearTimeout(deadline);
  await stopAll();
}
process.exit(0);
