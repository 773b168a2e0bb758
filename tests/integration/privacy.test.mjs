// Privacy at the edge, in the real runtime: data controls (off by default), consent, GPC, LDU,
// the signed-source rule, the per-IP rate limit, one first-party cookie domain, and the ledger
// never reopening a final outcome. Each "not sent" is proven by the edge's own count of it
// plus a later marker event that did arrive — never by waiting less than a batch window.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, startWorker, startSplit, eventually, PIXEL_ID, HASHED_KEYS, ADMIN_TOKEN } from './harness.mjs';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) capi-edge-privacy-test';
const ORDER_SECRET = 'order-secret';
let sandbox;
before(async () => { sandbox = await startSandbox(); });
after(() => sandbox?.stop());

const uid = () => `evt-${Math.random().toString(36).slice(2)}`;
const CONTACT = { em: 'jane@example.com', ph: '+1 650 555 1212', fn: 'Jane', ln: 'Doe', ct: 'Menlo Park', st: 'CA', zp: '94025', country: 'US', external_id: 'c-1', lead_id: 'L-1' };

function beaconTo(worker, body, headers = {}, path = '/t/e') {
  const url = new URL(worker.url);
  const origin = headers.host ? `http://${headers.host}` : url.origin;
  const target = headers.host ? `http://${headers.host}${path}` : `${worker.url}${path}`;
  return worker.mf.dispatchFetch(target, {
    method: 'POST',
    headers: { 'content-type': 'text/plain', origin, 'user-agent': UA, 'cf-connecting-ip': '203.0.113.9', ...headers },
    body: JSON.stringify(body),
  });
}
const event = (extra = {}) => ({ event_name: 'AddToCart', event_id: uid(), event_source_url: 'https://shop.test/p/mug?fbclid=IwAR_priv-1', event_time_ms: Date.now() - 1000, fbp: 'fb.1.1700000000000.42', ...extra });
const serverCopy = async (id) => (await sandbox.events()).server.find((e) => e.event_id === id);
const arrived = (id, what = id) => eventually(() => serverCopy(id), 15_000, `server copy of ${what}`);
const count = (stats, outcome, reason) => (stats.reasons || []).filter((r) => r.outcome === outcome && r.reason === reason).reduce((n, r) => n + r.count, 0);

/** Sends `body` (which must not be relayed), then a marker that must be; resolves once the
 *  marker arrived and the edge counted the first as ignored with `reason`. */
async function assertNotRelayed(worker, body, reason, headers = {}, markerExtra = {}) {
  const res = await beaconTo(worker, body, headers);
  assert.equal(res.status, 204);
  // Privacy refusals get no cookie; a visitor whose Purchase only goes to the pixel still does.
  if (reason !== 'signed_source_only') assert.deepEqual(res.headers.getSetCookie(), [], 'no cookie without consent');
  const marker = event(markerExtra);
  assert.equal((await beaconTo(worker, marker, { ...headers, 'sec-gpc': '0' })).status, 204);
  await arrived(marker.event_id, 'the marker');
  await eventually(async () => count(await worker.stats(), 'ignored', reason) >= 1, 15_000, `ignored/${reason} counted`);
  assert.equal(await serverCopy(body.event_id), undefined, `${body.event_id} must not reach Meta`);
  return res;
}

const signOrder = (body) => `sha256=${createHmac('sha256', ORDER_SECRET).update(body).digest('hex')}`;
function order(worker, fields) {
  const body = JSON.stringify({ value: 49.5, currency: 'EUR', created_at: new Date().toISOString(), customer: { email: 'buyer@example.com', phone: '+49 30 1234567', first_name: 'Bea', country: 'DE' }, client_user_agent: UA, client_ip_address: '198.51.100.4', event_source_url: 'https://shop.test/thanks', ...fields });
  return worker.fetch('/t/hooks/order', { method: 'POST', headers: { 'content-type': 'application/json', 'x-capi-signature': signOrder(body) }, body });
}

test('data controls are off by default: no contact field leaves, from beacons or webhooks', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: ORDER_SECRET });
  try {
    const health = await (await worker.fetch('/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal(health.privacy.customer_data, 'off');
    assert.ok(!JSON.stringify(health).includes('jane'), 'health reports modes, never a value');

    const b = event({ user_data: CONTACT });
    assert.equal((await beaconTo(worker, b)).status, 204);
    const ev = await arrived(b.event_id);
    const keys = Object.keys(ev.user_data).sort();
    assert.deepEqual(keys, ['client_ip_address', 'client_user_agent', 'fbc', 'fbp'], 'only what the pixel itself sends');

    const res = await order(worker, { order_id: `dc-${uid()}` });
    assert.equal(res.status, 200);
    const { event_id } = await res.json();
    const purchase = await arrived(event_id, 'the order');
    for (const k of HASHED_KEYS) assert.equal(purchase.user_data[k], undefined, `${k} must not be sent with CUSTOMER_DATA=off`);
    assert.equal(purchase.custom_data.value, 49.5, 'the event\'s own data still goes');

    const stats = await worker.stats();
    const off = stats.dropped.filter((d) => d.reason === 'data_controls_off').map((d) => d.field);
    for (const f of ['em', 'ph', 'fn', 'country', 'lead_id']) assert.ok(off.includes(f), `${f} counted as data_controls_off: ${off}`);
  } finally { await worker.stop(); }
});

test('CUSTOMER_DATA=hashed sends contact fields hashed; an undocumented value stops relaying', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' });
  try {
    const b = event({ user_data: { em: 'Jane@Example.com' } });
    await beaconTo(worker, b);
    assert.match((await arrived(b.event_id)).user_data.em, /^[0-9a-f]{64}$/);
  } finally { await worker.stop(); }
  const bad = await startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'plain' });
  try {
    assert.deepEqual(await (await bad.fetch('/t/health')).json(), { ok: false }, 'without a token: only ok');
    const health = await (await bad.fetch('/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal(health.ok, false);
    assert.equal(health.invalid_setting, 'CUSTOMER_DATA');
    const res = await beaconTo(bad, event());
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, 'not_configured');
  } finally { await bad.stop(); }
});

test('CONSENT=required: a beacon without granted consent is not relayed and gets no cookie', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, CONSENT: 'required' });
  try {
    await assertNotRelayed(worker, event(), 'no_consent', {}, { consent: 'granted' });
    await assertNotRelayed(worker, event({ consent: 'denied' }), 'consent_refused', {}, { consent: 'granted' });
    const ok = event({ consent: 'granted' });
    const res = await beaconTo(worker, ok);
    assert.ok(res.headers.getSetCookie().some((c) => c.startsWith('_fbp=')), 'granted consent gets the cookies');
    await arrived(ok.event_id);
    const js = await (await worker.fetch('/t/p.js')).text();
    assert.ok(js.includes('"consent":"required"'), 'the shim is served with the edge\'s consent mode');
  } finally { await worker.stop(); }
});

test('CONSENT=optional (default): a refused consent is still honoured', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    await assertNotRelayed(worker, event({ consent: 'denied' }), 'consent_refused');
  } finally { await worker.stop(); }
});

test('GPC: Sec-GPC or navigator.globalPrivacyControl means LDU by default, nothing with GPC=drop', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    const viaHeader = event();
    await beaconTo(worker, viaHeader, { 'sec-gpc': '1' });
    const viaPage = event({ gpc: true });
    await beaconTo(worker, viaPage);
    const plain = event();
    await beaconTo(worker, plain);
    for (const id of [viaHeader.event_id, viaPage.event_id]) {
      const e = await arrived(id);
      assert.deepEqual([e.data_processing_options, e.data_processing_options_country, e.data_processing_options_state], [['LDU'], 0, 0]);
    }
    assert.equal((await arrived(plain.event_id)).data_processing_options, undefined, 'LDU is per event');
  } finally { await worker.stop(); }
  const dropping = await startWorker({ META_GRAPH_URL: sandbox.url, GPC: 'drop' });
  try {
    await assertNotRelayed(dropping, event(), 'gpc_opt_out', { 'sec-gpc': '1' });
  } finally { await dropping.stop(); }
});

test('LDU=on and LDU=geo send Meta\'s documented flags on every event', async () => {
  for (const [mode, flags] of [['on', [1, 1000]], ['geo', [0, 0]]]) {
    const worker = await startWorker({ META_GRAPH_URL: sandbox.url, LDU: mode, ORDER_WEBHOOK_SECRET: ORDER_SECRET });
    try {
      const b = event();
      await beaconTo(worker, b);
      const e = await arrived(b.event_id);
      assert.deepEqual([e.data_processing_options, e.data_processing_options_country, e.data_processing_options_state], [['LDU'], ...flags], mode);
      const { event_id } = await (await order(worker, { order_id: `ldu-${uid()}` })).json();
      assert.deepEqual((await arrived(event_id)).data_processing_options, ['LDU']);
    } finally { await worker.stop(); }
  }
});

test('an order whose consent was refused is not sent, and its receipt says why', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: ORDER_SECRET });
  try {
    const id = `refused-${uid()}`;
    const res = await order(worker, { order_id: id, _capi_consent: 'denied' });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual([body.sent, body.outcome, body.reason], [false, 'ignored', 'consent_refused']);
    const r = await worker.receipts(`purchase:${id}`);
    assert.deepEqual([r.receipts[0].outcome, r.receipts[0].reason], ['ignored', 'consent_refused']);
    const marker = await (await order(worker, { order_id: `ok-${uid()}`, consent: 'granted' })).json();
    await arrived(marker.event_id, 'the consented order');
    assert.equal(await serverCopy(`purchase:${id}`), undefined);
  } finally { await worker.stop(); }
  const required = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: ORDER_SECRET, CONSENT: 'required' });
  try {
    const body = await (await order(required, { order_id: `nc-${uid()}` })).json();
    assert.deepEqual([body.sent, body.reason], [false, 'no_consent'], 'opt-in: an order without consent is not sent');
  } finally { await required.stop(); }
});

test('signed sources win: a forged beacon Purchase can neither pre-empt nor block the webhook', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: ORDER_SECRET, CUSTOMER_DATA: 'hashed' });
  try {
    const orderId = `${Math.floor(Math.random() * 1e9)}`;
    const forged = { ...event(), event_name: 'Purchase', event_id: `purchase:${orderId}`, custom_data: { value: 0.01, currency: 'EUR' } };
    await assertNotRelayed(worker, forged, 'signed_source_only');
    const res = await order(worker, { order_id: orderId });
    const body = await res.json();
    assert.equal(body.duplicate, undefined, 'the webhook is not answered duplicate');
    const purchase = await arrived(`purchase:${orderId}`, 'the signed Purchase');
    assert.equal(purchase.custom_data.value, 49.5, 'Meta gets the order\'s real value');
    assert.match(purchase.user_data.em, /^[0-9a-f]{64}$/, 'with the order\'s match keys');
    const copies = (await sandbox.events()).server.filter((e) => e.event_id === `purchase:${orderId}`);
    assert.equal(copies.length, 1, 'one server copy');
    // The ids the webhooks give an order's refunds, a subscription's renewals and trials are
    // theirs as well: a beacon that takes one first is not relayed and holds no claim.
    // So are the names only the webhooks give their events, whatever the id.
    for (const [event_name, event_id] of [['OrderRefunded', `refund:${orderId}:cancel`], ['SubscriptionRenewed', `Renewal:in_${orderId}`], ['StartTrial', `trial:sub_${orderId}`], ['OrderRefunded', uid()], ['SubscriptionRenewed', uid()]]) {
      await assertNotRelayed(worker, { ...event(), event_name, event_id, custom_data: { value: 0.01, currency: 'EUR' } }, 'signed_source_only');
    }
  } finally { await worker.stop(); }
  const noHooks = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    const thankYou = { ...event(), event_name: 'Purchase', event_id: `purchase:${uid()}`, custom_data: { value: 10, currency: 'EUR' } };
    await beaconTo(noHooks, thankYou);
    await arrived(thankYou.event_id, 'the beacon Purchase when no webhook is configured');
    // An offline conversion's id is the shop's uploads' alone, webhooks or not.
    await assertNotRelayed(noHooks, { ...event(), event_name: 'Purchase', event_id: `offline:${uid()}` }, 'signed_source_only');
  } finally { await noHooks.stop(); }
});

test('settings count when an event is sent: an order held while CUSTOMER_DATA=hashed is replayed without contact data once it is off, and with LDU once LDU is on', async () => {
  // The token died while data controls were on; before the replay the shop's privacy review
  // turned them off and LDU on. The ledger (and its dead letters) outlive the restart.
  const persist = mkdtempSync(join(tmpdir(), 'capi-privacy-'));
  const id = `now-${uid()}`;
  const admin = (w, path, init = {}) => w.fetch(path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then((r) => r.json());
  try {
    await sandbox.faults({ kinds: ['token_expired'], error_rate: 1 });
    const before = await startSplit({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' }, { persist });
    try {
      assert.equal((await order(before, { order_id: id })).status, 200);
      await eventually(async () => (await admin(before, `/t/receipts/purchase:${id}`)).receipts?.[0]?.outcome === 'dead_lettered', 15_000, 'the order held');
    } finally { await before.stop(); }
    await sandbox.faults({});
    const after = await startSplit({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'off', LDU: 'geo' }, { persist });
    try {
      assert.equal((await admin(after, `/t/replay?event_id=purchase:${id}`, { method: 'POST' })).replayed, 1);
      const sent = await arrived(`purchase:${id}`, 'the replayed order');
      for (const k of HASHED_KEYS) assert.equal(sent.user_data[k], undefined, `${k} must not be sent once CUSTOMER_DATA=off`);
      assert.equal(sent.user_data.client_ip_address, '198.51.100.4', 'what the pixel itself sends still goes');
      assert.deepEqual([sent.data_processing_options, sent.data_processing_options_country, sent.data_processing_options_state], [['LDU'], 0, 0]);
      assert.equal(sent.custom_data.value, 49.5);
    } finally { await after.stop(); }
  } finally {
    await sandbox.faults({});
    rmSync(persist, { recursive: true, force: true });
  }
});

test('unsigned beacons are rate limited per client IP', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url }, { rateLimit: 5 });
  try {
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await beaconTo(worker, event()));
    const limited = answers.filter((r) => r.status === 429);
    assert.ok(limited.length >= 3, `over the limit: ${answers.map((r) => r.status)}`);
    const err = await limited[0].json();
    assert.equal(err.error.code, 'rate_limited');
    assert.equal((await beaconTo(worker, event(), { 'cf-connecting-ip': '198.51.100.77' })).status, 204, 'another address is not limited');
    // An IPv6 client is counted by its /64: a fresh address in it for every beacon is one client.
    const rotating = [];
    for (let i = 1; i <= 8; i++) rotating.push(await beaconTo(worker, event(), { 'cf-connecting-ip': `2001:db8:7:9::${i.toString(16)}:1` }));
    assert.ok(rotating.filter((r) => r.status === 429).length >= 3, `rotating inside a /64: ${rotating.map((r) => r.status)}`);
    assert.equal((await beaconTo(worker, event(), { 'cf-connecting-ip': '2001:db8:7:a::1' })).status, 204, 'another /64 is not limited');
    // A made-up CF-Connecting-IPv6 does not make a client new: it counts only behind a Pseudo
    // IPv4 stand-in (240.0.0.0/4).
    const forged = [];
    for (let i = 1; i <= 8; i++) forged.push(await beaconTo(worker, event(), { 'cf-connecting-ip': '198.51.100.88', 'cf-connecting-ipv6': `2001:db8:${i}::1` }));
    assert.ok(forged.filter((r) => r.status === 429).length >= 3, `forged IPv6 headers: ${forged.map((r) => r.status)}`);
  } finally { await worker.stop(); }
});

test('one first-party _fbp: cookies go on the registrable domain, never with unchecked values', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    const res = await beaconTo(worker, event(), { host: 'www.shop.test' });
    assert.equal(res.status, 204);
    const cookies = res.headers.getSetCookie();
    const fbp = cookies.filter((c) => c.startsWith('_fbp='));
    assert.equal(fbp.length, 1);
    assert.match(fbp[0], /; Domain=shop\.test(;|$)/);
    assert.match(fbp[0], /SameSite=Lax/);
    assert.match(cookies.find((c) => c.startsWith('_fbc=')), /^_fbc=fb\.1\.\d{13}\.IwAR_priv-1;/, 'index 1 for shop.test');
    const evil = await beaconTo(worker, event({ event_source_url: 'https://shop.test/', fbc: 'fb.1.1554763741205.AbC.x;Domain=evil.test', fbp: 'fb.1.1.2; Secure' }), { host: 'www.shop.test' });
    const set = evil.headers.getSetCookie().join('\n');
    assert.ok(!set.includes('evil.test') && !set.includes('fb.1.1.2'), set);
  } finally { await worker.stop(); }
  const configured = await startWorker({ META_GRAPH_URL: sandbox.url, COOKIE_DOMAIN: '.shop.test' });
  try {
    const res = await beaconTo(configured, event(), { host: 'a.b.shop.test' });
    assert.match(res.headers.getSetCookie().find((c) => c.startsWith('_fbp=')), /; Domain=shop\.test(;|$)/);
  } finally { await configured.stop(); }
});

test('the access token travels in the body, never in the URL', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    const b = event();
    await beaconTo(worker, b);
    assert.equal((await arrived(b.event_id))._sandbox.token_in_url, false);
  } finally { await worker.stop(); }
});

test('the ledger never lets a stale non-final update reopen a final outcome', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, LEDGER_SHARDS: '1' });
  try {
    const ns = await worker.mf.getDurableObjectNamespace('LEDGER');
    const stub = ns.get(ns.idFromName(`${PIXEL_ID}/0`));
    const call = async (op) => (await stub.fetch('https://ledger/', { method: 'POST', body: JSON.stringify(op) })).json();
    const id = uid();
    const key = { event_name: 'AddToCart', event_id: id };
    const receipt = (outcome, attempts) => ({ key, outcome, reason: outcome === 'retrying' ? 'transient' : null, attempts, fbtrace_id: outcome === 'sent' ? 'T1' : null, nonce: 'n1' });
    const claim = (nonce, attempt, at) => call({ claim: { items: [{ key, nonce }], attempt, now_ms: at } });
    const now = Date.now();
    const [first] = await claim('n1', 'a1', now);
    assert.ok(first.send?.lease_until_ms > now, JSON.stringify(first));
    assert.ok((await claim('n1', 'a2', now + 1))[0].busy, 'the same message in a second invocation waits while the first holds the lease');
    await call({ record: { receipts: [receipt('sent', 1)], counts: [], now_ms: now } });
    await call({ record: { receipts: [receipt('retrying', 1)], counts: [], now_ms: now + 1 } });
    const rows = await call({ receipts: { event_id: id } });
    assert.deepEqual([rows[0].outcome, rows[0].fbtrace_id], ['sent', 'T1']);
    assert.deepEqual(await claim('n1', 'a3', now + 2), ['settled'], 'a redelivered message is not sent again');
    assert.deepEqual(await claim('n2', 'a4', now + 3), ['duplicate']);
  } finally { await worker.stop(); }
});

test('a browser session\'s test code marks its own events only, in requests of their own', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, TEST_EVENT_CODES: 'TEST12345' });
  try {
    const tested = event({ test_event_code: 'TEST12345' });
    const other = event();
    const bad = event({ test_event_code: 'TEST 1;x' });
    for (const b of [tested, other, bad]) assert.equal((await beaconTo(worker, b)).status, 204);
    assert.equal((await arrived(tested.event_id))._sandbox.test_event_code, 'TEST12345');
    assert.equal((await arrived(other.event_id))._sandbox.test_event_code, null, 'other visitors are not test traffic');
    assert.equal((await arrived(bad.event_id))._sandbox.test_event_code, null, 'an invalid code is dropped, not sent');
  } finally { await worker.stop(); }
});

test('a shop that lists no test codes takes none from a visitor (a link cannot send its visitors to Test Events)', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    const linked = event({ test_event_code: 'TEST12345' });
    assert.equal((await beaconTo(worker, linked)).status, 204);
    assert.equal((await arrived(linked.event_id))._sandbox.test_event_code, null, 'sent as a live event');
  } finally { await worker.stop(); }
});
