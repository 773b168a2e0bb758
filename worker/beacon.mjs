// The beacon path, shared by the two entry modules that scripts/build-worker.sh bundles with
// wasm-bindgen's output: worker/entry.mjs (the whole Worker) and worker/beacons.mjs (the beacon
// Worker of the split deployment, ARCHITECTURE.md, "Two Workers").
//
// It is I/O only, for the one hot path, `POST /t/e`: it reads the beacon's headers and body,
// asks the rate limiter, answers, and puts the messages Rust built on the queue. Rust decides
// through two synchronous calls (`beaconGate`, `beaconAccept`), so a beacon costs no async Rust
// runtime, no request wrapping and a handful of wasm calls (BENCHMARKS.md: where the CPU went).
//
// Queue messages of concurrent beacons are pooled per isolate, bundled (a JSON array of events
// per queue message, ≤ 60 KB: one Queues operation for dozens of events) and sent with one
// `sendBatch` a few milliseconds later (or when 240 KB are waiting), by the request that
// scheduled the send and in its own `waitUntil`: no request ever waits on another's I/O. If
// the queue refuses a batch after a few tries with backoff (or is not bound), the same request
// hands it to the entry module's `deliverNow`, which delivers it at once through Rust's
// delivery path. Message bodies are ASCII JSON (Rust escapes the rest), so their length in
// characters is their size in bytes.
import * as wasm from './index.js';

const FLUSH_AFTER_MS = 5;
// Queues bills an operation per 64 KB of a message; a sendBatch takes at most 256 KB.
const MAX_BUNDLE_BYTES = 60_000;
const BUNDLES_PER_SEND = 4;
const MAX_BEACON_BYTES = wasm.maxBeaconBytes();

// A Rust panic aborts the wasm instance; the next call starts a fresh one (as worker-build's
// own entry does). This rests on workers-rs's `__worker_init_state()` object (`criticalError`,
// `instanceId`) and wasm-bindgen's `__wbg_reset_state` (--experimental-reset-state-function):
// scripts/build-worker.sh refuses a glue without them, or without any `wasm.*` used here.
export const initState = wasm.__worker_init_state();
export function checkReinitialize() {
  if (initState.criticalError) {
    console.log('{"msg":"wasm_reinitialized"}');
    wasm.__wbg_reset_state();
    initState.criticalError = false;
    initState.instanceId++;
  }
}
export function handleMaybeCritical(e) {
  if (e instanceof WebAssembly.RuntimeError) initState.criticalError = true;
}
addEventListener('error', (e) => handleMaybeCritical(e.error));

/** The body, or undefined when it is longer than MAX_BEACON_BYTES (a declared longer length
 * was refused by beaconGate already); a chunked body is read at most to the limit + 1 chunk. */
async function readBody(request) {
  if (request.headers.has('content-length')) {
    const bytes = new Uint8Array(await request.arrayBuffer());
    return bytes.byteLength > MAX_BEACON_BYTES ? undefined : bytes;
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > MAX_BEACON_BYTES) {
      reader.cancel().catch(() => {});
      return undefined;
    }
    parts.push(value);
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.byteLength;
  }
  return bytes;
}

/** The rate limiter's answer as beaconAccept takes it: 0 within (or no limiter), 1 over, 2 failed. */
async function rateLimit(env, key) {
  const limiter = env.BEACON_RATE_LIMITER;
  if (!limiter) return 0;
  try {
    return (await limiter.limit({ key })).success ? 0 : 1;
  } catch {
    return 2;
  }
}

let pending = [];
let pendingBytes = 0;
let flushScheduled = false;

/** Adds messages to the isolate's pool; the calling request sends the pool when it is full,
 * or schedules the send if nobody has. */
function enqueue(messages, env, ctx, deliverNow) {
  for (const body of messages) {
    pending.push(body);
    pendingBytes += body.length + 1;
  }
  if (pendingBytes >= MAX_BUNDLE_BYTES * BUNDLES_PER_SEND) {
    ctx.waitUntil(flush(env, deliverNow));
  } else if (!flushScheduled) {
    flushScheduled = true;
    ctx.waitUntil(
      new Promise((resolve) => setTimeout(resolve, FLUSH_AFTER_MS)).then(() => {
        flushScheduled = false;
        return flush(env, deliverNow);
      }),
    );
  }
}

/** Sends the whole pool from the calling request: bundles of events (a JSON array each, at
 * most MAX_BUNDLE_BYTES unless one event is larger: Rust bounds each to 120 KB), at most
 * BUNDLES_PER_SEND and SEND_BYTES per sendBatch (the platform takes 100 messages, 256 KB). */
function flush(env, deliverNow) {
  const all = pending;
  pending = [];
  pendingBytes = 0;
  const bundles = [];
  let bundle = [];
  let bytes = 2;
  for (const body of all) {
    if (bundle.length > 0 && bytes + body.length + 1 > MAX_BUNDLE_BYTES) {
      bundles.push(bundle);
      bundle = [];
      bytes = 2;
    }
    bundle.push(body);
    bytes += body.length + 1;
  }
  if (bundle.length > 0) bundles.push(bundle);
  const sends = [];
  let batch = [];
  let batchBytes = 0;
  for (const b of bundles) {
    const size = b.reduce((n, body) => n + body.length + 1, 2);
    if (batch.length > 0 && (batch.length >= BUNDLES_PER_SEND || batchBytes + size > SEND_BYTES)) {
      sends.push(send(env, batch, deliverNow));
      batch = [];
      batchBytes = 0;
    }
    batch.push(b);
    batchBytes += size;
  }
  if (batch.length > 0) sends.push(send(env, batch, deliverNow));
  return Promise.all(sends);
}

/** Backoff before each new try of a refused sendBatch: the platform's answer to an overloaded
 * queue is "back off". A batch is retried whole, with the same messages: a try that stored the
 * batch and still threw leaves two copies with the same claim nonces, and the ledger's lease
 * lets one of them send. Every try is bounded (SEND_TRY_MS), and so are the tries together,
 * so the direct fallback that follows still fits in the request's 30 s of waitUntil (Rust
 * bounds its own part: no request to Meta after 6 s, each ledger call 4 s). */
const SEND_RETRY_MS = [50, 250, 1000];
const SEND_TRY_MS = 1500;
const SEND_BUDGET_MS = 5000;
const SEND_BYTES = 240_000;
/** Before the second try of the direct delivery (its first one failed: a panic, or the beacon
 * Worker's binding); both fit in the 30 s of `waitUntil` with the queue's tries before them. */
const DELIVER_RETRY_MS = 500;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const bounded = (promise, ms) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), ms))]);

/** Counts a stored sendBatch's messages for GET /t/health (Rust sizes their write operations);
 * never throws, so a stored batch is never sent again because of it. */
function countSent(messages) {
  try {
    for (const m of messages) wasm.countQueueWrite(m.body.length);
  } catch (e) {
    handleMaybeCritical(e);
  }
}

async function send(env, bundles, deliverNow) {
  const queue = env.EVENTS;
  if (queue) {
    const start = Date.now();
    const messages = bundles.map((b) => ({ body: `[${b.join(',')}]`, contentType: 'text' }));
    for (let attempt = 0; ; attempt++) {
      try {
        await bounded(queue.sendBatch(messages), SEND_TRY_MS);
        countSent(messages);
        return;
      } catch {
        if (attempt >= SEND_RETRY_MS.length || Date.now() - start > SEND_BUDGET_MS - SEND_TRY_MS) break;
        await sleep(SEND_RETRY_MS[attempt]);
      }
    }
  }
  // Refused every time, or no queue bound: delivered now (`deliverNow`: Rust's delivery path in
  // this isolate, or in the whole Worker behind the beacon Worker's binding; it logs why). If the wasm instance
  // dies meanwhile, a fresh one takes the same events again: the claims the dead attempt holds
  // make them wait (parked for replay), nothing is sent twice or dropped.
  const events = bundles.flat();
  for (let round = 0; round < 2; round++) {
    if (round > 0) await sleep(DELIVER_RETRY_MS);
    checkReinitialize();
    try {
      await deliverNow(env, events, Boolean(queue));
      return;
    } catch (e) {
      handleMaybeCritical(e);
    }
  }
  // Neither the queue nor the delivery path took them (the beacon Worker's binding failed
  // twice, or the wasm instance did): said once, with a count only, never an event.
  console.error(JSON.stringify({ msg: 'events_lost', messages: events.length, reason: 'queue_refused_and_direct_delivery_failed' }));
}

export async function beacon(request, ticket, env, ctx, deliverNow) {
  const instance = initState.instanceId;
  const [limit, body] = await Promise.all([rateLimit(env, ticket.limitKey), readBody(request)]);
  checkReinitialize();
  // A panic elsewhere in the isolate (the consumer, the ledger) while this beacon waited has
  // replaced the wasm instance, and the ticket belongs to the old one: the gate is asked again,
  // the same request and configuration giving the same answer from the new instance.
  if (initState.instanceId !== instance) {
    ticket = wasm.beaconGate(env, request.url, request.headers);
    if (ticket instanceof Response) return ticket;
  }
  const [response, ...messages] = wasm.beaconAccept(env, ticket, body, limit);
  if (messages.length > 0) enqueue(messages, env, ctx, deliverNow);
  return response;
}
