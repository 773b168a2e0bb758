// The Worker's entry module (bundled with wasm-bindgen's output by scripts/build-worker.sh).
//
// Everything the Worker decides is Rust (worker/src, capi-core). This module is I/O only, for
// the one hot path, `POST /t/e`: it reads the beacon's headers and body, asks the rate limiter,
// answers, and puts the messages Rust built on the queue. Rust decides through two synchronous
// calls (`beaconGate`, `beaconAccept`), so a beacon costs no async Rust runtime, no request
// wrapping and a handful of wasm calls (BENCHMARKS.md: where the CPU went). Every other route,
// the queue consumer and the ledger Durable Object go straight to the Rust handlers.
//
// Queue messages of concurrent beacons are pooled per isolate, bundled (a JSON array of events
// per queue message, ≤ 60 KB: one Queues operation for dozens of events) and sent with one
// `sendBatch` a few milliseconds later (or when 240 KB are waiting), by the request that
// scheduled the send and in its own `waitUntil`: no request ever waits on another's I/O. If
// the queue refuses a batch after a few tries with backoff (or is not bound), the same request
// delivers it at once through Rust's delivery path. Message bodies are ASCII JSON (Rust
// escapes the rest), so their length in characters is their size in bytes.
import { WorkerEntrypoint } from 'cloudflare:workers';
import * as wasm from './index.js';

const FLUSH_AFTER_MS = 5;
// Queues bills an operation per 64 KB of a message; a sendBatch takes at most 256 KB.
const MAX_BUNDLE_BYTES = 60_000;
const BUNDLES_PER_SEND = 4;
const MAX_BEACON_BYTES = wasm.maxBeaconBytes();

// A Rust panic aborts the wasm instance; the next call starts a fresh one (as worker-build's
// own entry does).
const initState = wasm.__worker_init_state();
function checkReinitialize() {
  if (initState.criticalError) {
    console.log('{"msg":"wasm_reinitialized"}');
    wasm.__wbg_reset_state();
    initState.criticalError = false;
    initState.instanceId++;
  }
}
function handleMaybeCritical(e) {
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
function enqueue(messages, env, ctx) {
  for (const body of messages) {
    pending.push(body);
    pendingBytes += body.length + 1;
  }
  if (pendingBytes >= MAX_BUNDLE_BYTES * BUNDLES_PER_SEND) {
    ctx.waitUntil(flush(env));
  } else if (!flushScheduled) {
    flushScheduled = true;
    ctx.waitUntil(
      new Promise((resolve) => setTimeout(resolve, FLUSH_AFTER_MS)).then(() => {
        flushScheduled = false;
        return flush(env);
      }),
    );
  }
}

/** Sends the whole pool from the calling request: bundles of events (a JSON array each, at
 * most MAX_BUNDLE_BYTES: one Queues operation), BUNDLES_PER_SEND per sendBatch. */
function flush(env) {
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
  for (let i = 0; i < bundles.length; i += BUNDLES_PER_SEND) {
    sends.push(send(env, bundles.slice(i, i + BUNDLES_PER_SEND)));
  }
  return Promise.all(sends);
}

/** Backoff before each new try of a refused sendBatch: the platform's answer to an overloaded
 * queue is "back off" (a batch is retried whole; a copy enqueued twice is claimed once). */
const SEND_RETRY_MS = [50, 250, 1000];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function send(env, bundles) {
  const queue = env.EVENTS;
  if (queue) {
    const messages = bundles.map((b) => ({ body: `[${b.join(',')}]`, contentType: 'text' }));
    for (let attempt = 0; ; attempt++) {
      try {
        await queue.sendBatch(messages);
        return;
      } catch {
        if (attempt >= SEND_RETRY_MS.length) break;
        await sleep(SEND_RETRY_MS[attempt]);
      }
    }
  }
  // Refused every time (Rust logs it), or no queue bound: delivered now.
  checkReinitialize();
  try {
    await wasm.deliverNow(env, bundles.flat(), Boolean(queue));
  } catch (e) {
    handleMaybeCritical(e);
  }
}

async function beacon(request, ticket, env, ctx) {
  const [limit, body] = await Promise.all([rateLimit(env, ticket.limitKey), readBody(request)]);
  checkReinitialize();
  const [response, ...messages] = wasm.beaconAccept(env, ticket, body, limit);
  if (messages.length > 0) enqueue(messages, env, ctx);
  return response;
}

export default class Worker extends WorkerEntrypoint {
  async fetch(request) {
    checkReinitialize();
    try {
      if (request.method === 'POST') {
        const h = request.headers;
        const ticket = wasm.beaconGate(
          this.env,
          request.url,
          h.get('origin'),
          h.get('referer'),
          h.get('cf-connecting-ip'),
          h.get('content-type'),
          h.get('content-length'),
          h.get('cookie'),
          h.get('user-agent'),
          h.get('sec-gpc'),
        );
        if (ticket instanceof Response) return ticket;
        if (ticket !== undefined) return await beacon(request, ticket, this.env, this.ctx);
      }
      return await wasm.fetch(request, this.env, this.ctx);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  }

  async queue(batch) {
    checkReinitialize();
    try {
      return await wasm.queue(batch, this.env, this.ctx);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  }
}

/** The ledger Durable Object (Rust), re-created after a wasm re-initialization. */
export class Ledger {
  constructor(state, env) {
    this.args = [state, env];
    this.make();
  }

  make() {
    this.inner = new wasm.Ledger(...this.args);
    this.instanceId = initState.instanceId;
  }

  async run(call) {
    checkReinitialize();
    if (this.instanceId !== initState.instanceId) this.make();
    try {
      return await call(this.inner);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  }

  fetch(request) {
    return this.run((ledger) => ledger.fetch(request));
  }

  alarm() {
    return this.run((ledger) => ledger.alarm());
  }
}
