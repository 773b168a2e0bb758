// The runtime's floors for `make bench`: the smallest Workers that take a beacon, each in its own
// workerd process through Miniflare (the versions bench/serve.mjs runs the Worker on), on their
// own sockets. What they cost is what any Worker pays on this runtime, without the product:
//
// - `floor`: reads the origin and the body and answers 204 with the CORS header, and does nothing
//   else: no wasm, no queue, no ledger, nothing relayed. Its beacons/s bound the Worker's, and
//   its tail shows the runtime's own stalls.
// - `durable` (FLOOR=durable, GRAPH_URL): the same, plus a minimal relay of the Worker's shape
//   (ARCHITECTURE.md), exactly once on the path without failures, in plain JavaScript: the
//   event built from the beacon with what needs no hashing (fbp, IP, user agent), pooled per
//   isolate and put on a queue with one `sendBatch` every 5 ms (retried, then logged as lost);
//   a consumer in the same Worker that claims the batch's event ids in a SQLite Durable Object
//   (one call per batch, one statement per event: a lease on each id nobody sent), sends what it
//   claimed to the Graph stand-in in requests of ≤ 1,000 events, then records what was sent and
//   gives back what was not (a second call) and acknowledges, or has the batch come back when
//   another attempt holds an event. No validation, normalization, hashing, consent, tenants,
//   receipts, counts or dead letters, and three cases it does not close: a record lost after its
//   send (the event goes again once the lease ends), an attempt that outlives its lease (nothing
//   bounds it by the lease's time left), and a give-back without an attempt token (it could free
//   another attempt's lease). The bench injects no faults into it: its beacons/s show what one
//   plain-JavaScript relay of this shape reaches here on the path without failures, with a
//   leaner ledger than the Worker's (one object over RPC, two calls per consumer batch).
//
// Prints {"floor": url} once ready and runs until killed.
import { Miniflare } from 'miniflare';

const durable = process.env.FLOOR === 'durable';
const respond = `
    return new Response(null, { status: 204, headers: { 'access-control-allow-origin': origin ?? '*' } });`;
const floor = `
export default {
  async fetch(request) {
    const origin = request.headers.get('origin');
    const body = await request.arrayBuffer();
    if (request.method !== 'POST' || body.byteLength === 0) return new Response(null, { status: 400 });${respond}
  },
};`;
const durableFloor = `
import { DurableObject } from 'cloudflare:workers';
const LEASE_MS = 10000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let pending = [];
let bytes = 0;
let scheduled = false;
// Sizes in UTF-16 units: the bench's beacons are ASCII, so they are bytes (≤ 60 KB a message,
// ≤ 4 messages and 240 KB a sendBatch, under the platform's 128 KB and 256 KB).
async function send(env, messages) {
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      await env.EVENTS.sendBatch(messages);
      return;
    } catch {
      await sleep(50 * 4 ** attempt);
    }
  }
  console.error(JSON.stringify({ msg: 'events_lost', messages: messages.length }));
}
function flush(env) {
  const bundles = [];
  let bundle = [];
  let size = 0;
  for (const body of pending) {
    if (bundle.length && size + body.length > 60000) { bundles.push(bundle); bundle = []; size = 0; }
    bundle.push(body);
    size += body.length + 1;
  }
  if (bundle.length) bundles.push(bundle);
  pending = [];
  bytes = 0;
  const sends = [];
  for (let i = 0; i < bundles.length; i += 4) {
    sends.push(send(env, bundles.slice(i, i + 4).map((b) => ({ body: '[' + b.join(',') + ']', contentType: 'text' }))));
  }
  return Promise.all(sends);
}
export default {
  async fetch(request, env, ctx) {
    const origin = request.headers.get('origin');
    const text = await request.text();
    let b;
    try { b = JSON.parse(text); } catch { return new Response(null, { status: 400 }); }
    const body = JSON.stringify({
      event_name: b.event_name, event_time: Math.floor(Date.now() / 1000), event_id: b.event_id,
      action_source: 'website', event_source_url: b.event_source_url,
      user_data: { client_ip_address: request.headers.get('cf-connecting-ip'), client_user_agent: request.headers.get('user-agent'), fbp: b.fbp },
      custom_data: b.custom_data,
    });
    pending.push(body);
    bytes += body.length + 1;
    if (bytes >= 240000) ctx.waitUntil(flush(env));
    else if (!scheduled) {
      scheduled = true;
      ctx.waitUntil(sleep(5).then(() => { scheduled = false; return flush(env); }));
    }${respond}
  },
  // Claim (a lease per event), send, then record what was sent and give back what was not. An
  // event another attempt holds makes the batch come back later; one already sent is skipped.
  async queue(batch, env) {
    const events = batch.messages.flatMap((m) => JSON.parse(m.body));
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('ledger'));
    const { claimed, busy } = await ledger.claim([...new Set(events.map((e) => e.event_id))], Date.now(), LEASE_MS);
    const mine = new Set(claimed);
    const fresh = events.filter((e) => mine.delete(e.event_id));
    let sent = 0;
    try {
      for (let i = 0; i < fresh.length; i += 1000) {
        const chunk = fresh.slice(i, i + 1000);
        const res = await fetch(env.GRAPH_URL + '/v26.0/987654321012345/events', {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ data: chunk, access_token: 'floor' }),
        });
        await res.arrayBuffer();
        if (!res.ok) throw new Error('graph_' + res.status);
        sent += chunk.length;
      }
    } finally {
      await ledger.settle(fresh.slice(0, sent).map((e) => e.event_id), fresh.slice(sent).map((e) => e.event_id));
    }
    if (busy > 0) batch.retryAll({ delaySeconds: 1 });
    else batch.ackAll();
  },
};
export class Ledger extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, sent INTEGER NOT NULL, lease_until INTEGER NOT NULL)');
  }
  /** Takes each id nobody sent and no live lease holds; counts those a live lease holds. */
  claim(ids, now, leaseMs) {
    const sql = this.ctx.storage.sql;
    const claimed = [];
    let busy = 0;
    for (const id of ids) {
      const took = sql.exec('INSERT INTO claims (id, sent, lease_until) VALUES (?1, 0, ?2) ON CONFLICT (id) DO UPDATE SET lease_until = ?2 ' +
        'WHERE sent = 0 AND lease_until < ?3 RETURNING id', id, now + leaseMs, now).toArray().length > 0;
      if (took) claimed.push(id);
      else if (sql.exec('SELECT sent FROM claims WHERE id = ?', id).one().sent === 0) busy++;
    }
    return { claimed, busy };
  }
  settle(sent, unsent) {
    const sql = this.ctx.storage.sql;
    for (const id of sent) sql.exec('UPDATE claims SET sent = 1 WHERE id = ?', id);
    for (const id of unsent) sql.exec('UPDATE claims SET lease_until = 0 WHERE id = ? AND sent = 0', id);
  }
}`;
const mf = new Miniflare({
  modules: true,
  script: durable ? durableFloor : floor,
  compatibilityDate: '2026-04-01',
  host: '127.0.0.1',
  port: 0,
  unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
  ...(durable && {
    bindings: { GRAPH_URL: process.env.GRAPH_URL },
    durableObjects: { LEDGER: { className: 'Ledger', useSQLite: true } },
    queueProducers: { EVENTS: 'floor-events' },
    // As the Worker's events queue (tests/integration/harness.mjs, queueConsumers).
    queueConsumers: { 'floor-events': { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 100 } },
  }),
});
await mf.ready;
const url = (await mf.unsafeGetDirectURL()).toString().replace(/\/$/, '');
console.log(JSON.stringify({ floor: url }));
const stop = () => {
  setTimeout(() => process.exit(0), 2000).unref();
  mf.dispose().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
