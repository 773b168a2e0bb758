// Durable delivery in the real runtime (workerd's Queues and Durable Objects via Miniflare)
// against the sandbox with injected faults: nothing lost, nothing sent twice, receipts agree.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startSandbox, startWorker, eventually, ADMIN_TOKEN, TOKEN, cliPath } from './harness.mjs';

let sandbox, worker;

before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: 'order-secret', CUSTOMER_DATA: 'hashed' });
});
after(async () => { await worker?.stop(); sandbox?.stop(); });

function beacon(w, id, extra = {}) {
  const origin = new URL(w.url).origin;
  const body = JSON.stringify({ event_name: 'AddToCart', event_id: id, event_source_url: `${origin}/p`, custom_data: { value: 1, currency: 'EUR' }, ...extra });
  return w.fetch('/t/e', { method: 'POST', body, headers: { origin, 'user-agent': 'Mozilla/5.0 load', 'content-type': 'text/plain', 'cf-connecting-ip': '198.51.100.1' } });
}
const copies = async (prefix) => {
  const counts = new Map();
  for (const e of (await sandbox.events()).server) if (e.event_id.startsWith(prefix)) counts.set(e.event_id, (counts.get(e.event_id) ?? 0) + 1);
  return counts;
};

test('2,000 events while Meta fails 30% of requests with 500s, 429s and timeouts: each arrives exactly once', async () => {
  await sandbox.faults({ error_rate: 0.3, fail_next: 2, kinds: ['500', '429', 'timeout'] });
  const ids = Array.from({ length: 2000 }, (_, i) => `load-${i}`);
  for (let i = 0; i < ids.length; i += 100) {
    const statuses = await Promise.all(ids.slice(i, i + 100).map(async (id) => (await beacon(worker, id)).status));
    assert.ok(statuses.every((s) => s === 204), `accepted: ${statuses.filter((s) => s !== 204).length} refused`);
  }
  await eventually(async () => (await copies('load-')).size === 2000, 240_000, 'all 2,000 delivered');
  await sandbox.faults({});
  // Every receipt final (`sent`): no copy still in flight can be sent again after that.
  await eventually(async () => (await worker.stats()).outcomes?.sent >= 2000, 60_000, 'every receipt written');
  const counts = await copies('load-');
  assert.equal(counts.size, 2000, 'zero lost');
  assert.deepEqual([...counts.values()].filter((n) => n !== 1), [], 'zero duplicates');
  const view = await sandbox.events();
  assert.ok(view.summary.injected_faults > 0, 'faults were really injected');

  const stats = await worker.stats();
  assert.equal(stats.outcomes.sent, 2000);
  assert.ok(stats.outcomes.retrying > 0, 'some batches were retried');
  const traceOf = new Map(view.server.map((e) => [e.event_id, e._sandbox.fbtrace_id]));
  for (const id of ['load-0', 'load-777', 'load-1999']) {
    const [r] = (await worker.receipts(id)).receipts;
    assert.equal(r.outcome, 'sent', id);
    assert.equal(r.fbtrace_id, traceOf.get(id), `${id}: receipt carries Meta's fbtrace_id`);
    assert.ok(r.attempts >= 1);
  }
});

test('one event Meta rejects is isolated: the rest of its batch is delivered', async () => {
  await sandbox.faults({ reject_event_ids: ['iso-3'] });
  await Promise.all(Array.from({ length: 10 }, (_, i) => beacon(worker, `iso-${i}`)));
  await eventually(async () => (await copies('iso-')).size === 9, 20_000, 'the nine good events');
  const bad = await eventually(async () => { const r = (await worker.receipts('iso-3')).receipts?.[0]; return r?.outcome === 'rejected' && r; }, 10_000, 'the rejected receipt');
  assert.match(bad.reason, /^meta_code_100/);
  assert.equal((await worker.receipts('iso-5')).receipts[0].outcome, 'sent');
  assert.equal((await copies('iso-')).has('iso-3'), false);
  await sandbox.faults({});
});

test('Meta down for a while, then back: everything accepted meanwhile is delivered once', async () => {
  await sandbox.faults({ down: true });
  await Promise.all(Array.from({ length: 20 }, (_, i) => beacon(worker, `outage-${i}`)));
  const ids = Array.from({ length: 20 }, (_, i) => `outage-${i}`);
  const outcomes = async () => Promise.all(ids.map(async (id) => (await worker.receipts(id)).receipts?.[0]?.outcome));
  // Every event was tried and failed at least once (Meta answered 503) before Meta came back.
  await eventually(async () => (await outcomes()).every((o) => o === 'retrying'), 15_000, 'every event retrying');
  await sandbox.faults({ down: false });
  await eventually(async () => (await copies('outage-')).size === 20, 60_000, 'delivery after recovery');
  // Every receipt final: no copy in flight can be sent again after that.
  await eventually(async () => (await outcomes()).every((o) => o === 'sent'), 30_000, 'every receipt sent');
  assert.deepEqual([...(await copies('outage-')).values()].filter((n) => n !== 1), []);
});

test('receipts and stats need the admin token and hold no customer data', async () => {
  await beacon(worker, 'privacy-1', { custom_data: { email: 'jane@example.com', value: 2, currency: 'EUR' }, user_data: { em: 'jane@example.com', ph: '12' } });
  await eventually(async () => (await copies('privacy-')).size === 1, 10_000, 'delivered');
  for (const auth of [undefined, 'Bearer wrong', ADMIN_TOKEN /* without "Bearer " */]) {
    const res = await worker.fetch('/t/stats', { headers: auth ? { authorization: auth } : {} });
    assert.equal(res.status, 401, `authorization ${auth}`);
    assert.equal((await res.json()).error.code, 'unauthorized');
  }
  const stats = await worker.stats();
  assert.ok(stats.dropped.some((d) => d.field === 'email' && d.reason === 'customer_data_not_allowed_in_custom_data' && d.count >= 1));
  assert.ok(stats.dropped.some((d) => d.field === 'ph' && d.reason === 'invalid_phone'));
  const receipt = await worker.receipts('privacy-1');
  const text = JSON.stringify(stats) + JSON.stringify(receipt);
  assert.ok(!/jane|example\.com|198\.51/.test(text), 'no customer data');
  assert.ok(!text.includes(TOKEN));
  const missing = await worker.fetch('/t/receipts/nope', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(missing.status, 404);
});

test('without a queue the Worker sends directly; a webhook then answers 503 while Meta is down and its redelivery is sent', async () => {
  const direct = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: 'order-secret', CUSTOMER_DATA: 'hashed' }, { queues: false });
  try {
    assert.equal((await beacon(direct, 'direct-1')).status, 204);
    await eventually(async () => (await copies('direct-')).size === 1, 10_000, 'direct delivery');
    const body = JSON.stringify({ order_id: 'NOQ-1', value: 5, currency: 'EUR', customer: { email: 'a@b.co' } });
    const send = () => direct.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
    await sandbox.faults({ down: true });
    const down = await send();
    assert.equal(down.status, 503);
    assert.equal((await down.json()).error.code, 'meta_unavailable');
    await sandbox.faults({ down: false });
    const again = await send();
    assert.equal(again.status, 200);
    assert.equal((await again.json()).sent, true);
    assert.equal((await copies('purchase:NOQ-1')).get('purchase:NOQ-1'), 1);
  } finally {
    await sandbox.faults({});
    await direct.stop();
  }
});

test('an event that exhausts its attempts is dead-lettered with its reason, not dropped silently', async () => {
  const w = await startWorker({ META_GRAPH_URL: sandbox.url, MAX_DELIVERY_ATTEMPTS: '2' });
  try {
    await sandbox.faults({ down: true });
    assert.equal((await beacon(w, 'dlq-1')).status, 204);
    const r = await eventually(async () => { const r = (await w.receipts('dlq-1')).receipts?.[0]; return r?.outcome === 'dead_lettered' && r; }, 30_000, 'dead_lettered receipt');
    assert.equal(r.attempts, 2);
    assert.match(r.reason, /^attempts_exhausted_transient/);
    assert.equal((await w.stats()).outcomes.dead_lettered, 1);
    const admin = (path, init = {}) => w.fetch(path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const parked = await eventually(async () => (await (await admin('/t/dead-letters')).json()).dead_letters.find((d) => d.event_id === 'dlq-1'), 15_000, 'the dead letter parked for replay');
    assert.match(parked.reason, /^attempts_exhausted_transient/);
    await sandbox.faults({});
    assert.equal((await copies('dlq-')).size, 0, 'a dead letter is not sent behind the operator\'s back');

    // The cause is fixed: `capi-edge replay` re-drives it through the normal path, exactly once.
    const cli = spawnSync(cliPath(), ['replay', '--url', `${w.url}/t`], { env: { ...process.env, ADMIN_TOKEN }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^replayed 1 dead letter\(s\)\n  dlq-1\n$/);
    const noToken = spawnSync(cliPath(), ['replay', '--url', `${w.url}/t`], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
    assert.notEqual(noToken.status, 0);
    assert.match(noToken.stderr, /set ADMIN_TOKEN/);
    await eventually(async () => (await copies('dlq-')).get('dlq-1') === 1, 15_000, 'the replayed event at Meta');
    assert.equal((await (await admin('/t/replay', { method: 'POST' })).json()).replayed, 0, 'a replayed letter is not replayed again');
    const sent = await eventually(async () => { const r = (await w.receipts('dlq-1')).receipts?.[0]; return r?.outcome === 'sent' && r; }, 10_000, 'sent receipt');
    assert.ok(sent.fbtrace_id);
    assert.equal((await copies('dlq-')).get('dlq-1'), 1);
  } finally {
    await sandbox.faults({});
    await w.stop();
  }
});
