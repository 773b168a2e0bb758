// Order webhooks in the real runtime: signatures verified on the raw body, orders mapped to one
// Purchase, and exactly-once delivery through the Durable Object ledger.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createHash } from 'node:crypto';
import { startSandbox, startWorker, eventually, fixtureText, HASHED_KEYS, isSha256 } from './harness.mjs';

const SECRETS = { SHOPIFY_WEBHOOK_SECRET: 'shpss_old,shpss_new', WOOCOMMERCE_WEBHOOK_SECRET: 'woo&amp;secret', STRIPE_WEBHOOK_SECRET: 'whsec_test', ORDER_WEBHOOK_SECRET: 'order-secret' };
let sandbox, worker;
const fixture = (name) => Buffer.from(fixtureText(name));
const sha = (s) => createHash('sha256').update(s).digest('hex');
const hmac = (secret, ...parts) => { const h = createHmac('sha256', secret); parts.forEach((p) => h.update(p)); return h; };

const shopify = (body, { secret = 'shpss_new', topic = 'orders/create', sig } = {}) => worker.fetch('/t/hooks/shopify', {
  method: 'POST', body,
  headers: { 'content-type': 'application/json', 'x-shopify-topic': topic, 'x-shopify-hmac-sha256': sig ?? hmac(secret, body).digest('base64') },
});
const stripe = (body, { t = Math.floor(Date.now() / 1000), secret = 'whsec_test' } = {}) => worker.fetch('/t/hooks/stripe', {
  method: 'POST', body, headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${hmac(secret, `${t}.`, body).digest('hex')}` },
});
const order = (obj) => {
  const body = JSON.stringify(obj);
  return worker.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-capi-signature': `sha256=${hmac('order-secret', body).digest('hex')}` } });
};
const purchases = async (eventId) => (await sandbox.events()).server.filter((e) => e.event_name === 'Purchase' && e.event_id === eventId);

before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed', ...SECRETS });
});
after(async () => { await worker?.stop(); sandbox?.stop(); });

test('a signed Shopify order becomes one hashed Purchase with the derived event_id', async () => {
  const res = await shopify(fixture('shopify-orders-create.json'));
  assert.equal(res.status, 200);
  const answer = await res.json();
  assert.equal(answer.queued, true);
  assert.equal(answer.event_id, 'purchase:820982911946154508');
  const [p] = await eventually(async () => { const p = await purchases('purchase:820982911946154508'); return p.length && p; }, 10_000, 'the Purchase');
  assert.equal(p.custom_data.value, 403);
  assert.equal(p.custom_data.currency, 'USD');
  assert.equal(p.custom_data.order_id, '820982911946154508');
  assert.deepEqual(p.custom_data.content_ids, ['808950810', '49148385']);
  assert.equal(p.user_data.em, sha('jon.snow@example.com'));
  assert.equal(p.user_data.client_ip_address, '198.51.100.23');
  assert.match(p.user_data.client_user_agent, /Safari/);
  assert.equal(p.user_data.fbp, 'fb.1.1763900000000.1234567890', '_fbp carried in cart attributes');
  assert.match(p.user_data.fbc, /\.IwAR2F4-dbP0l7Mn1/, 'fbc from landing_site fbclid');
  assert.equal(p.action_source, 'website');
  for (const k of HASHED_KEYS) if (k in p.user_data) assert.ok(isSha256(p.user_data[k]), k);
});

test('bad signatures, stale Stripe timestamps, truncated and non-JSON bodies are refused and nothing is sent', async () => {
  const body = fixture('shopify-orders-create.json');
  const before = (await sandbox.events()).summary.server_events;
  const stripeBody = fixture('stripe-checkout-session-completed.json');
  const signedGarbage = 'this is not json';
  const cases = [
    ['wrong Shopify secret', () => shopify(body, { secret: 'shpss_wrong' }), 401, 'invalid_signature'],
    ['missing signature', () => worker.fetch('/t/hooks/shopify', { method: 'POST', body, headers: { 'x-shopify-topic': 'orders/create' } }), 401, 'invalid_signature'],
    ['truncated body, original signature', () => shopify(body.subarray(0, 200), { sig: hmac('shpss_new', body).digest('base64') }), 401, 'invalid_signature'],
    ['stale Stripe timestamp', () => stripe(stripeBody, { t: Math.floor(Date.now() / 1000) - 600 }), 401, 'invalid_signature'],
    ['Stripe signed with another secret', () => stripe(stripeBody, { secret: 'whsec_other' }), 401, 'invalid_signature'],
    ['signed non-JSON', () => shopify(Buffer.from(signedGarbage)), 400, 'invalid_webhook'],
    ['signed truncated JSON', () => shopify(body.subarray(0, 200)), 400, 'invalid_webhook'],
    ['generic order without currency', () => order({ order_id: 'x1', value: 3 }), 400, 'invalid_webhook'],
  ];
  for (const [name, send, status, code] of cases) {
    const res = await send();
    assert.equal(res.status, status, name);
    const b = await res.json();
    assert.equal(b.error.code, code, name);
    assert.ok(!JSON.stringify(b).includes('shpss_new') && !JSON.stringify(b).includes('whsec_test'), `${name}: no secret echoed`);
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await sandbox.events()).summary.server_events, before, 'nothing reached Meta');
});

test('unknown topics and the WooCommerce ping are acknowledged and ignored', async () => {
  const res = await shopify(Buffer.from('{"id":1}'), { topic: 'products/update' });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).ignored, 'topic_not_reported');
  const ping = await worker.fetch('/t/hooks/woocommerce', { method: 'POST', body: 'webhook_id=42', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(ping.status, 200);
  const body = fixture('woocommerce-order.json');
  const woo = await worker.fetch('/t/hooks/woocommerce', { method: 'POST', body, headers: { 'x-wc-webhook-topic': 'order.created', 'x-wc-webhook-signature': hmac('woo&secret', body).digest('base64') } });
  assert.equal(woo.status, 200, 'secret is HTML-entity-decoded like WooCommerce does');
  assert.equal((await woo.json()).event_id, 'purchase:727');
});

test('the same webhook delivered 5 times, 3 of them concurrently, and orders/paid too: one Purchase', async () => {
  const body = Buffer.from(fixture('shopify-orders-create.json').toString().replace('820982911946154508', '777000111'));
  const first = await shopify(body);
  assert.equal((await first.json()).queued, true);
  const answers = await Promise.all([shopify(body), shopify(body), shopify(body)].map(async (r) => (await r).json()));
  answers.push(await (await shopify(body)).json());
  answers.push(await (await shopify(body, { topic: 'orders/paid' })).json());
  assert.ok(answers.every((a) => a.duplicate === true), JSON.stringify(answers));
  await eventually(async () => (await purchases('purchase:777000111')).length === 1, 10_000, 'the Purchase');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await purchases('purchase:777000111')).length, 1);
});

test('racing first deliveries of one Stripe session: exactly one send', async () => {
  const body = fixture('stripe-checkout-session-completed.json');
  const answers = await Promise.all(Array.from({ length: 5 }, () => stripe(body).then((r) => r.json())));
  assert.equal(answers.filter((a) => a.queued === true).length, 1, JSON.stringify(answers));
  assert.equal(answers.filter((a) => a.duplicate === true).length, 4);
  const [p] = await eventually(async () => { const p = await purchases('purchase:order-5001'); return p.length && p; }, 10_000, 'the Purchase');
  assert.equal(p.custom_data.value, 4990, 'JPY amount_total is in yen');
  assert.equal(p.custom_data.currency, 'JPY');
  assert.equal((await purchases('purchase:order-5001')).length, 1);
});

test('while Meta is down an accepted webhook is kept and delivered once Meta is back', async () => {
  await sandbox.faults({ down: true });
  try {
    const obj = JSON.parse(fixture('order.json'));
    obj.order_id = 'DOWN-1';
    const down = await order(obj);
    assert.equal(down.status, 200, 'accepted onto the queue');
    assert.equal((await down.json()).queued, true);
    await eventually(async () => (await worker.receipts('purchase:DOWN-1')).receipts?.[0]?.outcome === 'retrying', 10_000, 'a retrying receipt');
    assert.equal((await purchases('purchase:DOWN-1')).length, 0);
  } finally {
    await sandbox.faults({ down: false });
  }
  await eventually(async () => (await purchases('purchase:DOWN-1')).length === 1, 20_000, 'delivery after Meta is back');
  const [r] = (await worker.receipts('purchase:DOWN-1')).receipts;
  assert.equal(r.outcome, 'sent');
  assert.ok(r.attempts >= 2, `attempts ${r.attempts}`);
  assert.match(r.fbtrace_id, /^SbX/);
});

test('an order older than 7 days gets an expired receipt and is never sent', async () => {
  const obj = JSON.parse(fixture('order.json'));
  obj.order_id = 'OLD-1';
  obj.created_at = Math.floor(Date.now() / 1000) - 8 * 86400;
  const res = await order(obj);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).outcome, 'expired');
  const [r] = (await worker.receipts('purchase:OLD-1')).receipts;
  assert.equal(r.outcome, 'expired');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await purchases('purchase:OLD-1')).length, 0);
});

test('a double-fired browser beacon is sent once', async () => {
  const origin = new URL(worker.url).origin;
  const body = JSON.stringify({ event_name: 'AddToCart', event_id: 'double-1', event_source_url: `${origin}/p` });
  const send = () => worker.fetch('/t/e', { method: 'POST', body, headers: { origin, 'user-agent': 'UA/1', 'content-type': 'text/plain' } });
  await Promise.all([send(), send()]);
  await send();
  await eventually(async () => (await sandbox.events()).server.some((e) => e.event_id === 'double-1'), 5_000, 'the beacon');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await sandbox.events()).server.filter((e) => e.event_id === 'double-1').length, 1);
});
