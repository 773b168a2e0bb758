// The split deployment (ARCHITECTURE.md, "Two Workers") in the real runtime: the beacon Worker
// (build/beacons) in front, the whole Worker (build/worker) behind its BACKEND service binding,
// with the real queue and ledger, against the sandbox.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { ROOT, ADMIN_TOKEN, startSandbox, startSplit, eventually } from './harness.mjs';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) split';

const beacon = (w, id) => w.fetch('/t/e', {
  method: 'POST',
  body: JSON.stringify({ event_name: 'AddToCart', event_id: id, event_source_url: 'http://shop.test/p', custom_data: { value: 1, currency: 'EUR' },
    user_data: { em: 'Split@Example.com' } }),
  headers: { origin: 'http://shop.test', 'user-agent': UA, 'content-type': 'text/plain', 'cf-connecting-ip': '198.51.100.8' },
});

/** Copies Meta received per event_id, for ids with this prefix. */
async function received(sandbox, prefix) {
  const counts = new Map();
  for (const e of (await sandbox.events()).server) {
    if (e.event_id.startsWith(prefix)) counts.set(e.event_id, (counts.get(e.event_id) ?? 0) + 1);
  }
  return counts;
}

let sandbox;
before(async () => { sandbox = await startSandbox(); });
after(() => sandbox?.stop());

test('beacons, the shim and the preflight are answered by the beacon Worker, which needs no secret; Meta gets each event once', async () => {
  const w = await startSplit({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' });
  try {
    const before = await w.isolate();
    const ids = Array.from({ length: 40 }, (_, i) => `split-${i}`);
    const statuses = await Promise.all(ids.map(async (id) => (await beacon(w, id)).status));
    assert.deepEqual([...new Set(statuses)], [204]);
    const js = await w.fetch('/t/p.js');
    assert.equal(js.status, 200);
    assert.match(await js.text(), /"customer_data":"hashed"/, 'the loader carries the modes the beacon Worker read');
    const wasm = await w.fetch('/t/p.wasm');
    assert.equal(wasm.status, 200);
    assert.equal(wasm.headers.get('content-type'), 'application/wasm');
    await wasm.arrayBuffer();
    const pre = await w.fetch('/t/e', { method: 'OPTIONS', headers: { origin: 'http://shop.test', 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 204);

    await eventually(async () => (await received(sandbox, 'split-')).size === 40, 30_000, 'all 40 at Meta');
    const counts = await received(sandbox, 'split-');
    assert.deepEqual([...counts.values()].filter((n) => n !== 1), [], 'no duplicates');
    const sent = (await sandbox.events()).server.find((e) => e.event_id === 'split-0');
    assert.equal(sent.user_data.em, createHash('sha256').update('split@example.com').digest('hex'), 'contact data normalized and hashed at the beacon Worker');

    // The whole Worker took none of those requests itself: only the health checks reached it,
    // and its consumer delivered what the beacon Worker queued.
    const after = await w.isolate();
    assert.equal(after.beacons - before.beacons, 0, 'no beacon reached the whole Worker');
    assert.equal(after.other_requests - before.other_requests, 1, 'only the second health check reached it');
    assert.ok(after.consumer_invocations > before.consumer_invocations, 'its consumer delivered them');
  } finally {
    await w.stop();
  }
});

test('webhooks and admin routes are forwarded with their raw bodies: a signed order is delivered, a forged one refused', async () => {
  const w = await startSplit({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' });
  try {
    const body = JSON.stringify({ order_id: 'split-order-1', value: 20, currency: 'EUR', client_user_agent: UA, client_ip_address: '198.51.100.9',
      event_source_url: 'https://shop.test/thanks' });
    const sign = (secret) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    const forged = await w.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-capi-signature': sign('wrong') } });
    assert.equal(forged.status, 401);
    assert.equal((await forged.json()).error.code, 'invalid_signature');
    const signed = await w.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-capi-signature': sign('order-secret') } });
    assert.equal(signed.status, 200);
    await eventually(async () => (await received(sandbox, 'purchase:split-order-1')).size === 1, 30_000, 'the order at Meta');
    const denied = await w.fetch('/t/stats');
    assert.equal(denied.status, 401, 'admin routes keep their token check behind the beacon Worker');
    assert.equal((await w.fetch('/t/receipts/purchase%3Asplit-order-1', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 200);
  } finally {
    await w.stop();
  }
});

test('a beacon Purchase cannot pre-empt the signed order: the whole Worker settles it before any claim', async () => {
  const w = await startSplit({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' });
  try {
    const stats = async () => (await w.fetch('/t/stats', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    // The thank-you page's beacon, or a forged one, with the order's event id, arrives first.
    const early = await w.fetch('/t/e', {
      method: 'POST',
      body: JSON.stringify({ event_name: 'Purchase', event_id: 'purchase:split-signed-1', event_source_url: 'http://shop.test/thanks',
        custom_data: { value: 9999, currency: 'EUR' } }),
      headers: { origin: 'http://shop.test', 'user-agent': UA, 'content-type': 'text/plain', 'cf-connecting-ip': '198.51.100.8' },
    });
    assert.equal(early.status, 204, 'the beacon Worker cannot tell: it takes the beacon');
    await eventually(async () => (await stats()).reasons?.some((r) => r.reason === 'signed_source_only'), 20_000, 'the beacon settled as signed_source_only');
    const body = JSON.stringify({ order_id: 'split-signed-1', value: 20, currency: 'EUR', client_user_agent: UA, client_ip_address: '198.51.100.9',
      event_source_url: 'https://shop.test/thanks' });
    const order = await w.fetch('/t/hooks/order', { method: 'POST', body,
      headers: { 'content-type': 'application/json', 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
    assert.equal(order.status, 200);
    assert.notEqual((await order.json()).outcome, 'duplicate', 'the beacon took no claim');
    await eventually(async () => (await received(sandbox, 'purchase:split-signed-1')).size === 1, 30_000, 'the order at Meta');
    const copies = (await sandbox.events()).server.filter((e) => e.event_id === 'purchase:split-signed-1');
    assert.equal(copies.length, 1);
    assert.equal(copies[0].custom_data.value, 20, "Meta's copy is the signed order's");
  } finally {
    await w.stop();
  }
});

/**
 * Before the order webhook is configured, a beacon Purchase `id` is relayed as any beacon, and Meta
 * fails it: its claim waits for the retry. Returns the ledger's directory (for the Worker after)
 * and the queue message's body.
 */
async function beaconPurchaseLeftWaiting(id, messageId) {
  const persist = mkdtempSync(`${tmpdir()}/capi-split-ledger-`);
  const before = await startSplit({ META_GRAPH_URL: sandbox.url }, { orderSecret: null, persist, capture: true });
  try {
    const res = await before.fetch('/t/e', {
      method: 'POST',
      body: JSON.stringify({ event_name: 'Purchase', event_id: id, event_source_url: 'http://shop.test/thanks', custom_data: { value: 9999, currency: 'EUR' } }),
      headers: { origin: 'http://shop.test', 'user-agent': UA, 'content-type': 'text/plain', 'cf-connecting-ip': '198.51.100.8' },
    });
    assert.equal(res.status, 204);
    const body = await eventually(async () => (await before.captured()).find((b) => b.includes(id)), 10_000, 'the beacon on the queue');
    await sandbox.faults({ error_rate: 1, kinds: ['500'] });
    const whole = await before.mf.getWorker('capi-edge');
    await whole.queue('capi-edge-events', [{ id: messageId, timestamp: new Date(), body, attempts: 1 }]);
    await eventually(async () => (await receiptOf(before, id))?.outcome === 'retrying', 10_000, 'the beacon holding its claim, retrying');
    return { persist, body };
  } finally {
    await before.stop();
    await sandbox.faults({});
  }
}

const receiptOf = async (w, id) => (await (await w.fetch(`/t/receipts/${encodeURIComponent(id)}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()).receipts?.[0];

/** The order's signed webhook for `orderId`, to the Worker `w`. */
const signedOrder = (w, orderId) => {
  const order = JSON.stringify({ order_id: orderId, value: 20, currency: 'EUR', client_user_agent: UA, client_ip_address: '198.51.100.9',
    event_source_url: 'https://shop.test/thanks' });
  return w.fetch('/t/hooks/order', { method: 'POST', body: order,
    headers: { 'content-type': 'application/json', 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(order).digest('hex')}` } });
};

test('a beacon Purchase that took its claim before the order webhook was configured holds nothing back when it comes again', async () => {
  const id = 'purchase:split-late-1';
  const { persist, body } = await beaconPurchaseLeftWaiting(id, 'm1');
  try {
    // After: the order webhook is configured, and the platform hands the same message again.
    const after = await startSplit({ META_GRAPH_URL: sandbox.url }, { persist });
    try {
      const whole = await after.mf.getWorker('capi-edge');
      await whole.queue('capi-edge-events', [{ id: 'm1', timestamp: new Date(), body, attempts: 2 }]);
      const res = await signedOrder(after, 'split-late-1');
      assert.equal(res.status, 200);
      assert.equal((await res.json()).queued, true, 'the beacon\'s claim holds nothing back: the order is not a duplicate');
      await eventually(async () => (await received(sandbox, id)).size === 1, 30_000, 'the order at Meta');
      const copies = (await sandbox.events()).server.filter((e) => e.event_id === id);
      assert.deepEqual(copies.map((e) => e.custom_data.value), [20], "Meta's one copy is the signed order's");
    } finally {
      await after.stop();
    }
  } finally {
    rmSync(persist, { recursive: true, force: true });
  }
});

test('the order webhook takes the claim a beacon Purchase left waiting before the webhooks were configured (claim rule 10)', async () => {
  const id = 'purchase:split-late-2';
  const { persist, body } = await beaconPurchaseLeftWaiting(id, 'm2');
  try {
    // The webhook comes first, while the beacon's copy waits for its retry: it is not a duplicate.
    const after = await startSplit({ META_GRAPH_URL: sandbox.url }, { persist });
    try {
      const res = await signedOrder(after, 'split-late-2');
      assert.equal(res.status, 200);
      assert.equal((await res.json()).queued, true, 'the webhook took the claim the beacon left waiting');
      await eventually(async () => (await received(sandbox, id)).size === 1, 30_000, 'the order at Meta');
      // The beacon's retry comes after: it sends nothing.
      const whole = await after.mf.getWorker('capi-edge');
      await whole.queue('capi-edge-events', [{ id: 'm2', timestamp: new Date(), body, attempts: 2 }]);
      // Signal: the retry was settled as signed_source_only (no sleep).
      const settled = async () => (await (await after.fetch('/t/stats', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json())
        .reasons?.some((r) => r.reason === 'signed_source_only');
      await eventually(settled, 20_000, 'the beacon\'s retry settled as signed_source_only');
      assert.equal((await receiptOf(after, id))?.outcome, 'sent');
      const copies = (await sandbox.events()).server.filter((e) => e.event_id === id);
      assert.deepEqual(copies.map((e) => e.custom_data.value), [20], "Meta's one copy is the signed order's");
    } finally {
      await after.stop();
    }
  } finally {
    rmSync(persist, { recursive: true, force: true });
  }
});

test('what the beacon Worker cannot queue, the whole Worker delivers at once over the binding', async () => {
  const w = await startSplit({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' }, { beaconQueue: false });
  try {
    const statuses = await Promise.all(['direct-0', 'direct-1', 'direct-2'].map(async (id) => (await beacon(w, `split-${id}`)).status));
    assert.deepEqual(statuses, [204, 204, 204]);
    await eventually(async () => (await received(sandbox, 'split-direct-')).size === 3, 30_000, 'three delivered directly');
    const counts = await received(sandbox, 'split-direct-');
    assert.deepEqual([...counts.values()], [1, 1, 1]);
    const isolate = await w.isolate();
    assert.equal(isolate.consumer_invocations, 0, 'not through the queue');
    assert.ok(isolate.meta_requests >= 1, 'the whole Worker sent them');
  } finally {
    await w.stop();
  }
});

test('without its BACKEND binding the beacon Worker takes nothing: 503 not_configured', async () => {
  const w = await startSplit({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' }, { backendBound: false });
  try {
    for (const res of [await beacon(w, 'split-unbound-0'), await w.fetch('/t/p.js'), await w.fetch('/t/health')]) {
      assert.equal(res.status, 503);
      const body = await res.json();
      assert.equal(body.error.code, 'not_configured');
      assert.match(body.error.message, /BACKEND/);
    }
  } finally {
    await w.stop();
  }
});

test('scripts/split-config.mjs writes both Workers from wrangler.toml: routes to the beacon Worker, which wrangler bundles under 300 KB', async () => {
  const dir = mkdtempSync(`${tmpdir()}/capi-split-`);
  try {
    // wrangler.toml with a route set, as a merchant's would be (paths relative to the checkout).
    const toml = readFileSync(`${ROOT}wrangler.toml`, 'utf8')
      .replace(/^# routes = .*$/m, 'routes = [{ pattern = "shop.example.com/t/*", zone_name = "example.com" }]')
      .replace('CONSENT = "optional"', 'CONSENT = "required"');
    writeFileSync(`${ROOT}build/split-test.toml`, toml);
    const run = (args) => spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    const made = run(['scripts/split-config.mjs', 'build/split-test.toml', dir]);
    assert.equal(made.status, 0, made.stderr);
    const read = (f) => JSON.parse(readFileSync(`${dir}/${f}`, 'utf8').replace(/^\/\/.*\n/, ''));
    const whole = read('worker.jsonc');
    const beacons = read('beacons.jsonc');
    assert.equal(whole.name, 'capi-edge', 'the whole Worker keeps its name: its ledger, queues and secrets stay');
    assert.equal(whole.routes, undefined);
    assert.equal(whole.workers_dev, false);
    assert.deepEqual(beacons.routes, [{ pattern: 'shop.example.com/t/*', zone_name: 'example.com' }]);
    assert.equal(beacons.vars.CONSENT, 'required', 'the same settings on both Workers');
    assert.deepEqual(beacons.vars, whole.vars);
    assert.deepEqual(beacons.services, [{ binding: 'BACKEND', service: 'capi-edge' }]);
    assert.deepEqual(beacons.queues, { producers: [{ binding: 'EVENTS', queue: 'capi-edge-events' }] });
    assert.equal(beacons.durable_objects, undefined);

    // wrangler reads and bundles both as it would deploy them (no account needed for --dry-run).
    const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' };
    const dry = (config) => spawnSync(`${ROOT}node_modules/.bin/wrangler`, ['deploy', '--dry-run', '-c', `${dir}/${config}`, '--outdir', `${dir}/out-${config}`],
      { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env });
    const uploaded = (r) => Number(r.stdout.match(/gzip: ([\d.]+) KiB/)?.[1]) * 1024;
    const b = dry('beacons.jsonc');
    assert.equal(b.status, 0, b.stderr);
    assert.match(b.stdout, /env\.BACKEND \(capi-edge\)/);
    assert.ok(uploaded(b) < 300_000, `the beacon Worker uploads ${uploaded(b)} B gzip`);
    const w = dry('worker.jsonc');
    assert.equal(w.status, 0, w.stderr);
    assert.match(w.stdout, /env\.LEDGER \(Ledger\)/);

    // One wrangler file per environment: [env.*] sections are refused, not half copied.
    writeFileSync(`${ROOT}build/split-test.toml`, `${toml}\n[env.staging]\nname = "capi-edge-staging"\n`);
    const refused = run(['scripts/split-config.mjs', 'build/split-test.toml', dir]);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /\[env\.\*\]/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${ROOT}build/split-test.toml`, { force: true });
  }
});
