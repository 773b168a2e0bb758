// Every stored copy of an event has a retention that housekeeping enforces, in workerd: a sent
// beacon, a dead-lettered beacon (the queued event with its hashed contact data, IP and user
// agent), a sent order, and their counters are written through the real Worker; then the
// ledger's housekeeping runs at later and later times (the clock moved forward) and each kind
// of row is gone exactly when docs/privacy.md says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startSandbox, startWorker, eventually, PIXEL_ID, ADMIN_TOKEN } from './harness.mjs';

const DAY = 86_400_000;
let sandbox, worker;
before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, LEDGER_SHARDS: '1', MAX_DELIVERY_ATTEMPTS: '1', ORDER_WEBHOOK_SECRET: 'order-secret', CUSTOMER_DATA: 'hashed' });
});
after(async () => { await worker?.stop(); sandbox?.stop(); });

const admin = async (path) => (await worker.fetch(path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
const beacon = (id) => {
  const origin = new URL(worker.url).origin;
  const body = JSON.stringify({ event_name: 'AddToCart', event_id: id, event_source_url: `${origin}/p`, custom_data: { value: 1, currency: 'EUR' }, user_data: { em: 'kept@example.com' } });
  return worker.fetch('/t/e', { method: 'POST', body, headers: { origin, 'user-agent': 'Mozilla/5.0 retention', 'content-type': 'text/plain', 'cf-connecting-ip': '198.51.100.4' } });
};

test('claims, receipts, dead letters, counters and report rows are deleted at their retention', async () => {
  const run = `${Date.now()}`;
  const sent = `ret-sent-${run}`, letter = `ret-letter-${run}`, orderId = `ret-order-${run}`;
  // A dead letter: Meta down, one attempt allowed.
  await sandbox.faults({ down: true });
  assert.equal((await beacon(letter)).status, 204);
  await eventually(async () => (await admin('/t/dead-letters')).dead_letters?.some((d) => d.event_id === letter), 20_000, 'the dead letter parked');
  await sandbox.faults({});
  assert.equal((await beacon(sent)).status, 204);
  const body = JSON.stringify({ order_id: orderId, value: 20, currency: 'EUR', client_user_agent: 'Mozilla/5.0 retention', client_ip_address: '198.51.100.9', event_source_url: 'https://shop.test/thanks' });
  const hook = await worker.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
  const orderEvent = (await hook.json()).event_id;
  const outcome = async (id) => (await admin(`/t/receipts/${encodeURIComponent(id)}`)).receipts?.[0]?.outcome;
  await eventually(async () => (await outcome(sent)) === 'sent' && (await outcome(orderEvent)) === 'sent', 20_000, 'both sent');

  const ns = await worker.mf.getDurableObjectNamespace('LEDGER');
  const shard = ns.get(ns.idFromName(`default/${PIXEL_ID}/0`));
  const op = async (o) => (await shard.fetch('https://ledger/', { method: 'POST', body: JSON.stringify(o) })).json();
  const housekeep = (days) => op({ housekeep: { now_ms: Date.now() + days * DAY } });
  const today = Math.floor(Date.now() / DAY);
  const reportRows = async () => (await op({ report: { from_day: today - 1, to_day: today + 1 } })).length;
  const state = async () => ({
    beacon: await outcome(sent),
    order: await outcome(orderEvent),
    letters: (await admin('/t/dead-letters')).dead_letters.filter((d) => d.event_id === letter).length,
    stats: Object.keys((await admin('/t/stats')).outcomes ?? {}).length > 0,
    report: (await reportRows()) > 0,
  });
  assert.deepEqual(await state(), { beacon: 'sent', order: 'sent', letters: 1, stats: true, report: true });

  await housekeep(6);
  assert.deepEqual(await state(), { beacon: 'sent', order: 'sent', letters: 1, stats: true, report: true }, 'all kept at 6 days');
  await housekeep(8);
  assert.deepEqual(await state(), { beacon: undefined, order: 'sent', letters: 0, stats: false, report: true },
    'after 7 days the browser event\'s claim and receipt and the dead letter are gone, after 8 the counters');
  await housekeep(91);
  assert.equal((await state()).order, undefined, 'the order\'s claim and receipt are gone after 90 days');
  assert.equal((await state()).report, true, 'report rows stay 92 days');
  await housekeep(93);
  assert.equal((await state()).report, false, 'report rows are gone after 92 days');
});
