// The runtime's floors for `make bench`: the smallest Workers that take a beacon, each in its own
// workerd process through Miniflare (the versions bench/serve.mjs runs the Worker on), on their
// own sockets. What they cost is what any Worker pays on this runtime, without the product:
//
// - `floor`: reads the origin and the body and answers 204 with the CORS header, and does nothing
//   else: no wasm, no queue, no ledger, nothing relayed. Its beacons/s bound the Worker's, and
//   its tail shows the runtime's own stalls.
// - `durable` (FLOOR=durable, GRAPH_URL): the same, plus the least a Worker must do to relay
//   beacons exactly once with this architecture (ARCHITECTURE.md), in plain JavaScript: the
//   event built from the beacon with what needs no hashing (fbp, IP, user agent), pooled per
//   isolate and put on a queue with one `sendBatch` every 5 ms; a consumer in the same Worker
//   that claims the batch's event ids in a SQLite Durable Object (one call per batch, one row per
//   event), sends what it claimed to the Graph stand-in in requests of ≤ 1,000 events, records
//   them as sent (a second call) and acknowledges. No validation, normalization, hashing,
//   consent, tenants, leases or retries: its beacons/s bound what this architecture can reach
//   here, whatever the code around it.
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
let pending = [];
let bytes = 0;
let scheduled = false;
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
    sends.push(env.EVENTS.sendBatch(bundles.slice(i, i + 4).map((b) => ({ body: '[' + b.join(',') + ']', contentType: 'text' }))));
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
      ctx.waitUntil(new Promise((r) => setTimeout(r, 5)).then(() => { scheduled = false; return flush(env); }));
    }${respond}
  },
  async queue(batch, env) {
    const events = batch.messages.flatMap((m) => JSON.parse(m.body));
    const ledger = env.LEDGER.get(env.LEDGER.idFromName('ledger'));
    const claimed = new Set(await ledger.claim(events.map((e) => e.event_id)));
    const fresh = events.filter((e) => claimed.has(e.event_id));
    for (let i = 0; i < fresh.length; i += 1000) {
      const res = await fetch(env.GRAPH_URL + '/v26.0/987654321012345/events', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: fresh.slice(i, i + 1000), access_token: 'floor' }),
      });
      await res.arrayBuffer();
    }
    await ledger.record(fresh.map((e) => e.event_id));
    batch.ackAll();
  },
};
export class Ledger extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, sent INTEGER NOT NULL DEFAULT 0)');
  }
  claim(ids) {
    const sql = this.ctx.storage.sql;
    return ids.filter((id) => sql.exec('INSERT INTO claims (id) VALUES (?) ON CONFLICT DO NOTHING RETURNING id', id).toArray().length > 0);
  }
  record(ids) {
    for (const id of ids) this.ctx.storage.sql.exec('UPDATE claims SET sent = 1 WHERE id = ?', id);
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
    queueConsumers: { 'floor-events': { maxBatchSize: 100, maxBatchTimeout: 1 } },
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
