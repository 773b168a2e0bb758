// The platform's own failure modes, injected into the real runtime (workerd via Miniflare):
// a queue that delivers every message twice at the same time, a sendBatch that stores and then
// throws, dead letters replayed twice at once, an event too large for a queue message. Each
// scenario counts at the sandbox (what Meta received), never by our own receipts alone, and
// prints accepted / delivered / lost / duplicated. The scenarios run concurrently, each with
// its own runtime and sandbox.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Miniflare } from 'miniflare';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ROOT, ADMIN_TOKEN, LOG_FILE, startSandbox, eventually, cliPath, builtWorker, captureWorker, queueConsumers, EVENTS_QUEUE, DEAD_LETTERS_QUEUE } from './harness.mjs';

const run = promisify(execFile);

const UA = 'Mozilla/5.0 (X11; Linux x86_64) fault-harness';
const PIXELS = ['111', '112'];
const TENANTS = [{
  id: 'shop', hosts: ['shop.test'], pixels: PIXELS.map((id) => ({ id, access_token: `TOKEN_${id}` })),
  webhook_secrets: { order: 'ORDER_SECRET' },
}];
const SECRETS = { TOKEN_111: 'tok-111', TOKEN_112: 'tok-112', ORDER_SECRET: 'order-secret' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The built Worker, unchanged, behind an entry module that fails the platform around it, as
// POST /__faults says: its ledger objects (all, or those whose name matches, e.g. one pixel's)
// for a period; a consumer invocation that dies after sending and before its acks reach the
// platform; and its EVENTS queue, for JavaScript and Rust alike: \`refuses\` throws without
// storing, \`stored-then-throws\` stores every batch and throws on every other call (the entry
// module retries it: two copies of each message).
const FAULTY_ENTRY = `
import Worker, { Ledger as RealLedger } from './index.js';
const faults = { ledgerDown: null, ledgerSlow: null, slowed: 0, consumerDies: 0, died: 0, queue: 'ok', queueCalls: 0, queueFailures: 0 };
// Named as the runtime names its queue binding, which workers-rs checks.
class WorkerQueue {
  constructor(inner) { this.inner = inner; }
  async send(body, options) {
    if (faults.queue === 'refuses') throw new Error('queue overloaded (injected)');
    return this.inner.send(body, options);
  }
  async sendBatch(messages, options) {
    if (faults.queue === 'refuses') { faults.queueFailures++; throw new Error('queue overloaded (injected)'); }
    await this.inner.sendBatch(messages, options);
    if (faults.queue === 'stored-then-throws' && faults.queueCalls++ % 2 === 0) {
      faults.queueFailures++;
      throw new Error('stored, then failed (injected)');
    }
  }
}
export class Ledger extends RealLedger {
  constructor(state, env) { super(state, env); this.objectName = state.id.name ?? ''; }
  async fetch(request) {
    const f = faults.ledgerDown;
    if (f && Date.now() < f.until && this.objectName.includes(f.match)) throw new Error('ledger unavailable (injected)');
    const slow = faults.ledgerSlow;
    // The slow period starts with the first ledger call after it was set.
    if (slow) slow.until ??= Date.now() + slow.ms;
    if (slow && Date.now() < slow.until) {
      faults.slowed++;
      await new Promise((r) => setTimeout(r, slow.delayMs));
    }
    return super.fetch(request);
  }
}
export default class extends Worker {
  constructor(ctx, env) { super(ctx, { ...env, EVENTS: new WorkerQueue(env.EVENTS) }); }
  async fetch(request) {
    if (new URL(request.url).pathname === '/__faults') {
      const f = await request.json();
      if (f.ledgerDown) f.ledgerDown.until = Date.now() + f.ledgerDown.ms;
      Object.assign(faults, f);
      return Response.json(faults);
    }
    return super.fetch(request);
  }
  async queue(batch) {
    if (batch.queue !== 'capi-edge-events' || faults.consumerDies <= 0) return super.queue(batch);
    faults.consumerDies--;
    faults.died++;
    const muted = (m) => ({ id: m.id, timestamp: m.timestamp, body: m.body, attempts: m.attempts, ack() {}, retry() {}, retryWithOptions() {} });
    await super.queue({ queue: batch.queue, messages: batch.messages.map(muted), ackAll() {}, retryAll() {} });
    throw new Error('consumer died after sending, before acking (injected)');
  }
}`;

/** The Worker with its real queues and ledger: consumed by itself, or by the test
 * (`capture`); behind FAULTY_ENTRY with `faultyEntry`. */
async function startPlatform(sandbox, vars = {}, { capture = false, faultyEntry = false, persist, batchSize = 100 } = {}) {
  const capi = {
    name: 'capi',
    ...(faultyEntry ? {
      modules: [
        { type: 'ESModule', path: `${ROOT}build/worker/fault-entry.mjs`, contents: FAULTY_ENTRY },
        { type: 'ESModule', path: `${ROOT}build/worker/index.js` },
        { type: 'CompiledWasm', path: `${ROOT}build/worker/index_bg.wasm` },
      ],
      compatibilityDate: '2026-04-01',
    } : builtWorker('worker')),
    bindings: { META_GRAPH_URL: sandbox.url, META_API_VERSION: 'v26.0', ADMIN_TOKEN, TENANTS: JSON.stringify(TENANTS), ...SECRETS,
      RETRY_BASE_SECONDS: '1', RETRY_MAX_SECONDS: '2', ...vars },
    durableObjects: { LEDGER: { className: 'Ledger', useSQLite: true } },
    queueProducers: { EVENTS: EVENTS_QUEUE, DEAD_LETTERS: DEAD_LETTERS_QUEUE },
    queueConsumers: queueConsumers({ batchSize, events: !capture }),
  };
  const workers = [capi];
  if (capture) workers.push(captureWorker);
  const mf = new Miniflare({ host: '127.0.0.1', port: 0, workers, ...(persist && { durableObjectsPersist: persist }), handleRuntimeStdio: (out, err) => [out, err].forEach((s) => s.on('data', (chunk) => { appendFileSync(LOG_FILE, chunk); if (process.env.FAULTS_LOG) process.stdout.write(chunk); })) });
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const fetchIt = (path, init = {}) => mf.dispatchFetch(`http://shop.test${path}`, init);
  const admin = async (path, init = {}) => (await fetchIt(path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  const faults = async (f) => (await fetchIt('/__faults', { method: 'POST', body: JSON.stringify(f) })).json();
  return { mf, url, fetch: fetchIt, admin, faults, stop: () => mf.dispose() };
}

const beacon = (w, id, extra = {}) => w.fetch('/t/e', {
  method: 'POST',
  body: JSON.stringify({ event_name: 'AddToCart', event_id: id, event_source_url: 'http://shop.test/p', custom_data: { value: 1, currency: 'EUR' }, ...extra }),
  headers: { origin: 'http://shop.test', 'user-agent': UA, 'content-type': 'text/plain', 'cf-connecting-ip': '198.51.100.7' },
});
const order = (w, orderId) => {
  const body = JSON.stringify({ order_id: orderId, value: 20, currency: 'EUR', client_user_agent: UA, client_ip_address: '198.51.100.9', event_source_url: 'https://shop.test/thanks' });
  return w.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
};

/** Copies Meta received per `pixel/event_id`, for ids with this prefix. */
async function received(sandbox, prefix) {
  const counts = new Map();
  for (const e of (await sandbox.events()).server) {
    if (!e.event_id.startsWith(prefix)) continue;
    const k = `${e._sandbox.pixel_id}/${e.event_id}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

/** Purchases Meta received per `pixel/event_id`. */
async function purchases(sandbox) {
  const m = new Map();
  for (const e of (await sandbox.events()).server) {
    if (e.event_name !== 'Purchase') continue;
    const k = `${e._sandbox.pixel_id}/${e.event_id}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/** Every `pixel/id` of `n` beacons named `prefix-i`. */
const expectedBeacons = (prefix, n) => new Set(PIXELS.flatMap((p) => Array.from({ length: n }, (_, i) => `${p}/${prefix}-${i}`)));

/** Sends `n` beacons named `prefix-i`, 100 at a time, each answered 204. */
async function sendBeacons(w, prefix, n) {
  for (let i = 0; i < n; i += 100) await accept(Array.from({ length: Math.min(100, n - i) }, (_, j) => beacon(w, `${prefix}-${i + j}`)));
}

/** Whether `count(stats)` reaches `atLeast` at every pixel; and waiting until it does. */
async function everyPixel(w, count, atLeast) {
  for (const p of PIXELS) if (count(await w.admin(`/t/stats?pixel=${p}`)) < atLeast) return false;
  return true;
}
const atEveryPixel = (w, count, atLeast, what, ms = 60_000) => eventually(() => everyPixel(w, count, atLeast), ms, what);
const sentCount = (stats) => stats.outcomes?.sent ?? 0;
const duplicateCount = (stats) => stats.outcomes?.duplicate ?? 0;

/** accepted / delivered / lost / duplicated, printed and returned. */
function tally(name, expected, counts) {
  const delivered = [...expected].filter((k) => counts.get(k) >= 1).length;
  const duplicated = [...counts.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
  const result = { scenario: name, accepted: expected.size, delivered, lost: expected.size - delivered, duplicated };
  console.log(JSON.stringify(result));
  return result;
}

const accept = async (responses, status = 204) => {
  const statuses = await Promise.all(responses);
  assert.ok(statuses.every((r) => r.status === status), `all accepted: ${statuses.map((r) => r.status).filter((s) => s !== status).slice(0, 5)}`);
};

describe('the platform fails as documented; every accepted event reaches Meta exactly once per pixel', { concurrency: true }, () => {
  test('the queue delivers every message twice, at the same time, to two consumer invocations', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox, {}, { capture: true });
    try {
      const N = 1000, ORDERS = 100;
      await sendBeacons(w, 'twice', N);
      const orderIds = Array.from({ length: ORDERS }, (_, i) => `twice-order-${i}`);
      for (let i = 0; i < ORDERS; i += 25) {
        const answers = await Promise.all(orderIds.slice(i, i + 25).map(async (id) => { const r = await order(w, id); return [r.status, await r.json()]; }));
        assert.ok(answers.every(([s, a]) => s === 200 && a.queued === true), JSON.stringify(answers[0]));
      }
      const capi = await w.mf.getWorker('capi');
      const captured = await w.mf.getWorker('capture');
      // The test is the queue: every message (first sends and the consumer's own retries) is
      // handed to two invocations at once; what an invocation asks to retry is handed again.
      // Done when every event and order has its `sent` receipt at both pixels: a final outcome
      // is never sent again, so no copy still in the queue can reach Meta after that.
      const allSent = () => everyPixel(w, sentCount, N + ORDERS);
      let pending = [];
      let seq = 0;
      const deadline = Date.now() + 180_000;
      for (;;) {
        assert.ok(Date.now() < deadline, 'the queue drained in time');
        const fresh = await (await captured.fetch('http://capture/')).json();
        pending.push(...fresh.map((body) => ({ id: `m${seq++}`, body, attempts: 1 })));
        if (pending.length === 0) {
          if (await allSent()) break;
          await sleep(250);
          continue;
        }
        const batch = pending.splice(0, 100);
        const deliver = () => capi.queue('capi-edge-events', batch.map((m) => ({ id: m.id, timestamp: new Date(), body: m.body, attempts: m.attempts })));
        const results = await Promise.all([deliver(), deliver()]);
        const again = new Set(results.flatMap((r) => (r.retryBatch?.retry ? batch.map((m) => m.id) : (r.retryMessages ?? []).map((x) => x.msgId))));
        const retried = batch.filter((m) => again.has(m.id)).map((m) => ({ ...m, attempts: m.attempts + 1 }));
        if (retried.length > 0) { await sleep(1000); pending.push(...retried); }
      }
      const counts = await received(sandbox, 'twice-');
      const expected = expectedBeacons('twice', N);
      const t = tally('queue delivers twice, concurrently', expected, counts);
      assert.equal(t.lost, 0, 'nothing lost');
      assert.equal(t.duplicated, 0, 'nothing twice');
      // Orders: one Purchase per order and pixel.
      const perOrder = await purchases(sandbox);
      const o = tally('orders, queue delivers twice', new Set(perOrder.keys()), perOrder);
      assert.equal(perOrder.size, ORDERS * PIXELS.length, 'every order at every pixel');
      assert.equal(o.duplicated, 0, 'no order twice');
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('sendBatch stores the batch and then throws: the retried batch is sent once', async () => {
    const sandbox = await startSandbox();
    // Small consumer batches: the two copies of a message land in different invocations.
    const w = await startPlatform(sandbox, {}, { faultyEntry: true, batchSize: 5 });
      await w.faults({ queue: 'stored-then-throws' });
    try {
      const N = 1000;
      await sendBeacons(w, 'stored', N);
      const expected = expectedBeacons('stored', N);
      await eventually(async () => (await received(sandbox, 'stored-')).size === expected.size, 120_000, 'every event at every pixel');
      const { queueFailures } = await w.faults({});
      assert.ok(queueFailures > 0, 'sendBatch really stored and threw');
      // Signal: every second copy has been looked at and settled as a duplicate (no sleep).
      await atEveryPixel(w, sentCount, N, 'every receipt sent');
      const t = tally('sendBatch stores then throws', expected, await received(sandbox, 'stored-'));
      assert.equal(t.lost, 0);
      assert.equal(t.duplicated, 0);
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('dead letters replayed twice at the same time are delivered once', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox, { MAX_DELIVERY_ATTEMPTS: '2' });
    try {
      await sandbox.faults({ down: true });
      const N = 200;
      await accept(Array.from({ length: N }, (_, i) => beacon(w, `replayed-${i}`)));
      const letters = async (p) => (await w.admin(`/t/dead-letters?pixel=${p}`)).dead_letters ?? [];
      await eventually(async () => {
        for (const p of PIXELS) if ((await letters(p)).length < N) return false;
        return true;
      }, 90_000, 'every event parked as a dead letter at both pixels');
      assert.equal((await received(sandbox, 'replayed-')).size, 0, 'nothing reached Meta while it was down');
      await sandbox.faults({ down: false });
      // `capi-edge replay`, twice at the same time per pixel, as two operators might.
      const replay = async (p) => (await run(cliPath(), ['replay', '--url', `${w.url}/t`, '--tenant', 'shop', '--pixel', p], { env: { ...process.env, ADMIN_TOKEN } })).stdout;
      const answers = await Promise.all(PIXELS.flatMap((p) => [replay(p), replay(p)]));
      // (A refusal by the queue would end the command with an error: `run` would throw.)
      assert.ok(answers.every((a) => /^replayed \d+ dead letter/.test(a)), answers.map((a) => a.split('\n')[0]).join(' | '));
      const expected = expectedBeacons('replayed', N);
      await eventually(async () => (await received(sandbox, 'replayed-')).size === expected.size, 60_000, 'every replayed event');
      // Signal: both replays' copies are settled (one sent, one a duplicate) for every event.
      await atEveryPixel(w, duplicateCount, N, 'the second replay copies settled as duplicates');
      const t = tally('replay twice at once', expected, await received(sandbox, 'replayed-'));
      assert.equal(t.lost, 0);
      assert.equal(t.duplicated, 0);
      // Nothing waits any more: a third replay sends nothing.
      for (const p of PIXELS) assert.match(await replay(p), /^replayed 0 dead letter/);
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('the queue refuses everything while Meta times out: every beacon is parked within 30 s, and replay delivers it once', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox, {}, { faultyEntry: true });
    try {
      const N = 500;
      await w.faults({ queue: 'refuses' });
      await sandbox.faults({ error_rate: 1, kinds: ['timeout'] });
      await sendBeacons(w, 'refused', N);
      const answered = Date.now();
      // Every event that was answered 204 ends somewhere: parked for replay (the fallback tried
      // Meta, which timed out, and the queue took no retry), inside a request's 30 s budget.
      const letters = async (p) => (await w.admin(`/t/dead-letters?pixel=${p}`)).dead_letters ?? [];
      await eventually(async () => {
        for (const p of PIXELS) if ((await letters(p)).length < N) return false;
        return true;
      }, 30_000, 'every beacon parked');
      const parkedWithin = Date.now() - answered;
      assert.ok(parkedWithin < 30_000, `parked ${parkedWithin} ms after the last 204`);
      assert.equal((await received(sandbox, 'refused-')).size, 0, 'Meta recorded nothing while it timed out');
      // A replay while the queue still refuses: the command says so and fails, and every letter
      // still waits for the next replay.
      await sandbox.faults({});
      const refused = await run(cliPath(), ['replay', '--url', `${w.url}/t`, '--tenant', 'shop', '--pixel', PIXELS[0]], { env: { ...process.env, ADMIN_TOKEN } }).then(() => null, (e) => e);
      assert.equal(refused?.code, 2, 'the command fails');
      assert.match(refused.stdout, /^replayed 0 dead letter\(s\)\n$/);
      assert.match(refused.stderr, /the queue refused \d+ dead letter\(s\): they stay parked/);
      assert.equal((await letters(PIXELS[0])).filter((d) => d.replayed_ms == null).length, N, 'every letter still waiting');
      // Meta and the queue are back: the operator replays, and each event arrives once.
      await w.faults({ queue: 'ok' });
      for (const p of PIXELS) {
        const { stdout } = await run(cliPath(), ['replay', '--url', `${w.url}/t`, '--tenant', 'shop', '--pixel', p], { env: { ...process.env, ADMIN_TOKEN } });
        assert.match(stdout, new RegExp(`^replayed ${N} dead letter`));
      }
      const expected = expectedBeacons('refused', N);
      await eventually(async () => (await received(sandbox, 'refused-')).size === expected.size, 60_000, 'every replayed event');
      await atEveryPixel(w, sentCount, N, 'every receipt sent');
      const t = tally(`queue refuses, Meta times out (parked within ${parkedWithin} ms), then replay`, expected, await received(sandbox, 'refused-'));
      assert.equal(t.lost, 0);
      assert.equal(t.duplicated, 0);
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('one pixel\'s ledger fails: the webhook answers 503, and its redelivery reaches both pixels once', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox, {}, { faultyEntry: true });
    try {
      const ORDERS = 50;
      const ids = Array.from({ length: ORDERS }, (_, i) => `one-down-${i}`);
      await w.faults({ ledgerDown: { match: '/112/', ms: 60_000 } });
      const first = await Promise.all(ids.map(async (id) => (await order(w, id)).status));
      assert.ok(first.every((s) => s === 503), `503 while pixel 112 cannot take the order: ${first.slice(0, 5)}`);
      // An operator reading that pixel's numbers meanwhile is told to try again, not a 500.
      const stats = await w.fetch('/t/stats?pixel=112', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.deepEqual([stats.status, (await stats.json()).error?.code, stats.headers.get('retry-after')], [503, 'ledger_unavailable', '5']);
      // A monitor is not told all is well while a ledger that may hold an incident cannot be read.
      const health = await (await w.fetch('/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
      assert.deepEqual([health.ok, health.incidents_unknown], [false, true]);
      await w.faults({ ledgerDown: null });
      // The platform redelivers: pixel 111 already has it (duplicate), pixel 112 takes it now.
      const again = await Promise.all(ids.map(async (id) => { const r = await order(w, id); return [r.status, await r.json()]; }));
      assert.ok(again.every(([s, a]) => s === 200 && a.pixels['111'].duplicate === true && a.pixels['112'].queued === true), JSON.stringify(again[0]));
      await eventually(async () => (await purchases(sandbox)).size === ORDERS * PIXELS.length, 60_000, 'every order at both pixels');
      const counts = await purchases(sandbox);
      const t = tally('one pixel\'s ledger down for a webhook', new Set(counts.keys()), counts);
      assert.equal(t.duplicated, 0);
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('every ledger object fails for a few seconds while beacons arrive: all delivered once', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox, {}, { faultyEntry: true });
    try {
      const N = 1000;
      await w.faults({ ledgerDown: { match: '', ms: 4000 } });
      await sendBeacons(w, 'outage', N);
      const expected = expectedBeacons('outage', N);
      await eventually(async () => (await received(sandbox, 'outage-')).size === expected.size, 120_000, 'every event after the outage');
      // Signal: the receipts say sent for every event (no sleep): nothing is still in flight.
      await atEveryPixel(w, sentCount, N, 'every receipt written');
      const t = tally('ledger down for 4 s', expected, await received(sandbox, 'outage-'));
      assert.equal(t.lost, 0);
      assert.equal(t.duplicated, 0);
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('ledger calls take longer than the Worker waits, for a while: every event is still delivered once', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox, {}, { faultyEntry: true });
    try {
      const N = 500;
      // 5 s per ledger call for 3 s: longer than the Worker's 4 s deadline, so the consumer gives
      // up on those claims (a claim the ledger still applies leaves a lease that simply ends).
      await w.faults({ ledgerSlow: { delayMs: 5000, ms: 3000 } });
      await sendBeacons(w, 'slow', N);
      const expected = expectedBeacons('slow', N);
      await eventually(async () => (await received(sandbox, 'slow-')).size === expected.size, 150_000, 'every event after the slow ledger');
      await atEveryPixel(w, sentCount, N, 'every receipt sent');
      const { slowed } = await w.faults({});
      assert.ok(slowed > 0, 'ledger calls were really slowed');
      const t = tally('ledger calls slower than the deadline', expected, await received(sandbox, 'slow-'));
      assert.equal(t.lost, 0);
      assert.equal(t.duplicated, 0);
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('a consumer dies after sending, before its acks: the platform redelivers and nothing is sent twice', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox, {}, { faultyEntry: true });
    try {
      const N = 1000;
      await w.faults({ consumerDies: 3 });
      await sendBeacons(w, 'died', N);
      const expected = expectedBeacons('died', N);
      await eventually(async () => (await received(sandbox, 'died-')).size === expected.size, 120_000, 'every event');
      const { died } = await w.faults({});
      assert.equal(died, 3, 'three consumer invocations died after sending');
      // Signal: the redelivered copies were each looked at and found settled.
      const redelivered = (stats) => stats.reasons?.find((r) => r.outcome === 'duplicate' && r.reason === 'redelivered')?.count ?? 0;
      await atEveryPixel(w, sentCount, N, 'every receipt sent');
      await eventually(async () => { for (const p of PIXELS) if (redelivered(await w.admin(`/t/stats?pixel=${p}`)) > 0) return true; return false; }, 60_000, 'the redelivered copies settled');
      const t = tally('consumer dies before acking', expected, await received(sandbox, 'died-'));
      assert.equal(t.lost, 0);
      assert.equal(t.duplicated, 0);
    } finally { await w.stop(); sandbox.stop(); }
  });

  test('LEDGER_SHARDS changes from 2 to 5: orders redelivered after the change are still duplicates', async () => {
    const sandbox = await startSandbox();
    const persist = mkdtempSync(join(tmpdir(), 'capi-ledger-'));
    const ids = Array.from({ length: 40 }, (_, i) => `reshard-${i}`);
    try {
      const before = await startPlatform(sandbox, { LEDGER_SHARDS: '2' }, { persist });
      const first = await Promise.all(ids.map(async (id) => (await order(before, id)).status));
      assert.ok(first.every((s) => s === 200));
      await eventually(async () => (await purchases(sandbox)).size === ids.length * PIXELS.length, 60_000, 'every order at both pixels');
      await before.stop();
      const after = await startPlatform(sandbox, { LEDGER_SHARDS: '5', LEDGER_PREVIOUS_SHARDS: '2' }, { persist });
      try {
        const again = await Promise.all(ids.map(async (id) => (await order(after, id)).json()));
        assert.ok(again.every((a) => PIXELS.every((p) => a.pixels[p].duplicate === true)), JSON.stringify(again[0]));
        // Signal: both pixels' ledgers counted every redelivery as a duplicate (no sleep).
        await atEveryPixel(after, duplicateCount, ids.length, 'the redeliveries counted as duplicates');
        const t = tally('ledger re-sharded between deliveries', new Set((await purchases(sandbox)).keys()), await purchases(sandbox));
        assert.equal(t.duplicated, 0);
      } finally { await after.stop(); }
    } finally { sandbox.stop(); rmSync(persist, { recursive: true, force: true }); }
  });

  test('an event too large for a queue message is refused with 413 before its 204, and its pool is delivered', async () => {
    const sandbox = await startSandbox();
    const w = await startPlatform(sandbox);
    try {
      // 60 KB of 4-byte characters: within the beacon limit, three times a queue message escaped.
      const huge = beacon(w, 'pool-huge', { custom_data: { value: 1, currency: 'EUR', content_name: '🍵'.repeat(14_000) } });
      const others = Array.from({ length: 50 }, (_, i) => beacon(w, `pool-${i}`));
      const [big, ...rest] = await Promise.all([huge, ...others]);
      assert.equal(big.status, 413);
      assert.equal((await big.json()).error.code, 'event_too_large');
      assert.ok(rest.every((r) => r.status === 204));
      const expected = expectedBeacons('pool', 50);
      await eventually(async () => (await received(sandbox, 'pool-')).size === expected.size, 60_000, 'the pooled beacons');
      const t = tally('one oversized beacon in a pool', expected, await received(sandbox, 'pool-'));
      assert.equal(t.lost, 0);
      assert.equal(t.duplicated, 0);
    } finally { await w.stop(); sandbox.stop(); }
  });
});
