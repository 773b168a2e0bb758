// What one deployment must not give away or let anyone amplify, in workerd against the sandbox:
// /t/health tells a stranger only whether this host's shop is ok; a tenant with no hosts serves
// none; an order's Purchase names its own shop's page, never an agency's webhook host; a
// visitor's made-up test code is not attached; and a privacy change reaches browsers in minutes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startSandbox, startWorker, eventually, ADMIN_TOKEN } from './harness.mjs';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) capi-edge-leaks-test';
const IP = '198.51.100.50';
const TENANTS = [
  { id: 'brand-a', hosts: ['www.brand-a.test', 'brand-a.test'], pixels: [{ id: '311', access_token: 'A_TOKEN' }], admin_token: 'A_ADMIN',
    webhook_secrets: { shopify: 'A_SHOPIFY', woocommerce: 'A_WOO', stripe: 'A_STRIPE', order: 'A_ORDER' },
    test_event_codes: Array.from({ length: 9 }, (_, i) => `TEST90${i}`) },
  { id: 'brand-b', hosts: ['brand-b.test'], pixels: [{ id: '321', access_token: 'B_TOKEN_NOT_SET' }], admin_token: 'B_ADMIN' },
  { id: 'brand-c', hosts: ['brand-c.test'], pixels: [{ id: '331', access_token: 'C_TOKEN' }] },
];
const SECRETS = { A_TOKEN: 'tok-a', C_TOKEN: 'tok-c', A_ADMIN: 'admin-a', B_ADMIN: 'admin-b',
  A_SHOPIFY: 'shpss-a', A_WOO: 'woo-a', A_STRIPE: 'whsec-a', A_ORDER: 'order-a' };
/** The host an agency points every shop's webhooks at: no shop's page. */
const AGENCY = 'hooks.agency.test';

let sandbox, worker;
before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, TENANTS: JSON.stringify(TENANTS), ...SECRETS, PIXEL_ID: '', META_ACCESS_TOKEN: '' });
});
after(async () => { await worker?.stop(); sandbox?.stop(); });

const uid = () => `l-${Math.random().toString(36).slice(2)}`;
const at = (host, path, init = {}) => worker.mf.dispatchFetch(`http://${host}${path}`, init);
const bearer = (token) => ({ headers: { authorization: `Bearer ${token}` } });
const beaconTo = (w, host, body) => w.mf.dispatchFetch(`http://${host}/t/e`, { method: 'POST', headers: { 'content-type': 'text/plain', origin: `http://${host}`, 'user-agent': UA, 'cf-connecting-ip': '203.0.113.40' }, body: JSON.stringify(body) });
const event = (extra = {}) => ({ event_name: 'ViewContent', event_id: uid(), event_source_url: 'https://shop.test/p', fbp: 'fb.1.1700000000000.9', ...extra });
const arrived = (id, what = id) => eventually(async () => (await sandbox.events()).server.find((e) => e.event_id === id), 15_000, what);
const hmac = (secret, ...parts) => { const h = createHmac('sha256', secret); parts.forEach((p) => h.update(p)); return h; };

test('/t/health without a token says only whether this host\'s shop is ok', async () => {
  for (const [host, ok] of [['brand-a.test', true], ['brand-b.test', false], ['unknown.test', false], [AGENCY, false]]) {
    const res = await at(host, '/t/health');
    assert.equal(res.status, 200, `${host}: 200 whether ok or not`);
    const text = await res.text();
    assert.deepEqual(JSON.parse(text), { ok }, `${host}: nothing but ok`);
    for (const leak of ['brand-', '311', '321', 'B_TOKEN_NOT_SET', 'secret']) assert.ok(!text.includes(leak), `${host} leaks ${leak}`);
  }
});

test('/t/health with a tenant\'s admin token shows that tenant only; the operator\'s shows all', async () => {
  const own = await (await at('brand-b.test', '/t/health', bearer('admin-b'))).json();
  assert.equal(own.ok, false);
  assert.equal(own.tenant, 'brand-b');
  assert.deepEqual(own.tenants.map((t) => t.id), ['brand-b'], 'no other tenant');
  assert.equal(own.isolate, undefined, "the isolate's counts (every tenant's traffic) are the operator's");
  assert.deepEqual(own.tenants[0].errors, ['pixel 321: secret B_TOKEN_NOT_SET is not set'], 'errors by secret name');
  assert.ok(!JSON.stringify(own).includes('tok-'), 'never a secret\'s value');

  const wrongShop = await at('brand-b.test', '/t/health', bearer('admin-a'));
  assert.equal(wrongShop.status, 401, 'brand-a\'s token on brand-b\'s host');
  assert.equal((await wrongShop.json()).error.code, 'unauthorized');
  assert.equal((await at('brand-a.test', '/t/health', bearer('guess'))).status, 401);

  const all = await (await at(AGENCY, '/t/health', bearer(ADMIN_TOKEN))).json();
  assert.deepEqual(all.tenants.map((t) => t.id).sort(), ['brand-a', 'brand-b', 'brand-c']);
  assert.ok(!JSON.stringify(all).includes('tok-'), 'never a secret\'s value');
});

test('a tenant listed with no hosts serves none; the others serve their own', async () => {
  // Listed first on purpose: a tenant without hosts is an error, never a wildcard.
  const noHosts = { id: 'no-hosts', hosts: [], pixels: [{ id: '301', access_token: 'N_TOKEN' }] };
  const unicodeHost = { id: 'unicode-host', hosts: ['münchen.example'], pixels: [{ id: '302', access_token: 'N_TOKEN' }] };
  const w = await startWorker({ META_GRAPH_URL: sandbox.url, TENANTS: JSON.stringify([noHosts, unicodeHost, ...TENANTS]), ...SECRETS, N_TOKEN: 'tok-n', PIXEL_ID: '', META_ACCESS_TOKEN: '' });
  try {
    const a = event();
    const res = await beaconTo(w, 'www.brand-a.test', a);
    assert.equal(res.status, 204, 'brand-a is not answered by the tenant without hosts');
    assert.equal((await arrived(a.event_id))._sandbox.pixel_id, '311');
    assert.deepEqual(await (await w.mf.dispatchFetch('http://brand-c.test/t/health')).json(), { ok: true });
    const stranger = await beaconTo(w, 'unknown.test', event());
    assert.equal(stranger.status, 404, 'a host no tenant lists');
    assert.equal((await stranger.json()).error.code, 'unknown_tenant');
    const all = await (await w.mf.dispatchFetch(`http://${AGENCY}/t/health`, bearer(ADMIN_TOKEN))).json();
    assert.deepEqual(all.tenants.find((t) => t.id === 'no-hosts').errors, ['hosts must list at least one host']);
    assert.deepEqual(all.tenants.find((t) => t.id === 'unicode-host').errors, ['hosts must be ASCII: write a Unicode host in punycode (xn--…)']);
  } finally { await w.stop(); }

  const single = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    const b = event();
    assert.equal((await beaconTo(single, 'any-host.test', b)).status, 204, 'the single-shop default serves any host');
    await arrived(b.event_id);
  } finally { await single.stop(); }
});

test('an order posted to an agency\'s webhook host names its own shop as event_source_url', async () => {
  const now = new Date();
  const sent = async (res) => { assert.equal(res.status, 200); return arrived((await res.json()).event_id, 'the Purchase'); };
  const shopifyOrder = (extra) => JSON.stringify({ id: `${Date.now()}${Math.floor(Math.random() * 1e6)}`, total_price: '10.00', currency: 'EUR', created_at: now.toISOString(), browser_ip: IP, client_details: { user_agent: UA }, ...extra });
  const shopify = (body, headers = {}) => at(AGENCY, '/t/hooks/shopify/brand-a', { method: 'POST', body, headers: { 'x-shopify-topic': 'orders/create', 'x-shopify-hmac-sha256': hmac('shpss-a', body).digest('base64'), ...headers } });

  const statusPage = 'https://www.brand-a.test/548380009/orders/b1946ac9/authenticate?key=buyers-access-key';
  const p1 = await sent(await shopify(shopifyOrder({ order_status_url: statusPage }), { 'x-shopify-shop-domain': 'brand-a.myshopify.com' }));
  assert.equal(p1.event_source_url, 'https://www.brand-a.test/', 'Shopify: the order status page\'s origin, without its key');
  const p2 = await sent(await shopify(shopifyOrder({}), { 'x-shopify-shop-domain': 'brand-a.myshopify.com' }));
  assert.equal(p2.event_source_url, 'https://brand-a.myshopify.com/', 'Shopify: X-Shopify-Shop-Domain');

  const woo = JSON.stringify({ id: Date.now(), status: 'processing', total: '12.00', currency: 'EUR', date_created_gmt: now.toISOString().slice(0, 19), customer_user_agent: UA, customer_ip_address: IP });
  const p3 = await sent(await at(AGENCY, '/t/hooks/woocommerce/brand-a', { method: 'POST', body: woo, headers: { 'x-wc-webhook-topic': 'order.created', 'x-wc-webhook-source': 'https://brand-a.test/', 'x-wc-webhook-signature': hmac('woo-a', woo).digest('base64') } }));
  assert.equal(p3.event_source_url, 'https://brand-a.test/', 'WooCommerce: X-WC-Webhook-Source');

  const t = Math.floor(Date.now() / 1000);
  const stripe = JSON.stringify({ type: 'checkout.session.completed', data: { object: { id: `cs_${uid()}`, payment_status: 'paid', currency: 'eur', amount_total: 1500, created: t, metadata: { client_user_agent: UA, client_ip_address: IP } } } });
  const p4 = await sent(await at(AGENCY, '/t/hooks/stripe/brand-a', { method: 'POST', body: stripe, headers: { 'stripe-signature': `t=${t},v1=${hmac('whsec-a', `${t}.`, stripe).digest('hex')}` } }));
  assert.equal(p4.event_source_url, 'https://www.brand-a.test/', 'Stripe: the tenant\'s first host');

  const generic = (extra) => { const body = JSON.stringify({ order_id: uid(), value: 5, currency: 'EUR', client_user_agent: UA, client_ip_address: IP, ...extra }); return at(AGENCY, '/t/hooks/order/brand-a', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${hmac('order-a', body).digest('hex')}` } }); };
  assert.equal((await sent(await generic({ event_source_url: 'https://brand-a.test/thanks' }))).event_source_url, 'https://brand-a.test/thanks', 'the generic webhook\'s own page');
  assert.equal((await sent(await generic({ event_source_url: 'javascript:alert(1)' }))).event_source_url, 'https://www.brand-a.test/', 'not an http(s) page: the first host');

  const single = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: 'order-single' });
  try {
    const body = JSON.stringify({ order_id: uid(), value: 5, currency: 'EUR', client_user_agent: UA, client_ip_address: IP });
    const res = await single.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${hmac('order-single', body).digest('hex')}` } });
    assert.equal((await sent(res)).event_source_url, `${single.url}/`, 'the single-shop default: the request\'s own origin');
  } finally { await single.stop(); }
});

test('without an allow-list, no session test code is attached: a link cannot send a shop\'s visitors to Test Events', async () => {
  const meta = event({ test_event_code: 'TEST12345' });
  const junk = ['evilcode1', 'abc', 'X'.repeat(30), 'TEST 1;x'].map((c) => event({ test_event_code: c }));
  for (const b of [meta, ...junk]) assert.equal((await beaconTo(worker, 'brand-c.test', b)).status, 204);
  for (const b of [meta, ...junk]) assert.equal((await arrived(b.event_id))._sandbox.test_event_code, null, `${b.test_event_code} is not attached`);
});

test('with an allow-list, a visitor\'s unlisted test code is not attached; the event is sent as a normal one', async () => {
  // TENANTS test_event_codes: only the listed codes are attached.
  const listing = [{ ...TENANTS[0], test_event_codes: ['TEST111', 'TEST222'] }];
  const w = await startWorker({ META_GRAPH_URL: sandbox.url, TENANTS: JSON.stringify(listing), ...SECRETS, PIXEL_ID: '', META_ACCESS_TOKEN: '' });
  try {
    const listed = event({ test_event_code: 'TEST222' });
    const unlisted = event({ test_event_code: 'TEST999' });
    for (const b of [listed, unlisted]) assert.equal((await beaconTo(w, 'brand-a.test', b)).status, 204);
    assert.equal((await arrived(listed.event_id))._sandbox.test_event_code, 'TEST222');
    assert.equal((await arrived(unlisted.event_id))._sandbox.test_event_code, null, 'not listed: sent as a normal event');
    const dropped = await eventually(async () => {
      const s = await (await w.mf.dispatchFetch('http://brand-a.test/t/stats', bearer('admin-a'))).json();
      return s.dropped.find((d) => d.field === 'test_event_code' && d.reason === 'test_event_code_not_listed');
    }, 15_000, 'counted as dropped test_event_code');
    assert.ok(dropped.count >= 1);
  } finally { await w.stop(); }

  // The single-shop setting: TEST_EVENT_CODES, comma separated.
  const single = await startWorker({ META_GRAPH_URL: sandbox.url, TEST_EVENT_CODES: 'TEST555, TEST556' });
  try {
    const ok = event({ test_event_code: 'TEST556' });
    const other = event({ test_event_code: 'TEST12345' });
    for (const b of [ok, other]) assert.equal((await beaconTo(single, 'shop.test', b)).status, 204);
    assert.equal((await arrived(ok.event_id))._sandbox.test_event_code, 'TEST556');
    assert.equal((await arrived(other.event_id))._sandbox.test_event_code, null);
  } finally { await single.stop(); }
});

test('many distinct test codes at once: at most 3 test-code requests per delivery round, every event still delivered with its code', async () => {
  const codes = Array.from({ length: 9 }, (_, i) => `TEST90${i}`);
  const events = codes.map((c) => event({ test_event_code: c }));
  await Promise.all(events.map(async (b) => assert.equal((await beaconTo(worker, 'brand-a.test', b)).status, 204)));
  for (const b of events) assert.equal((await arrived(b.event_id))._sandbox.test_event_code, b.test_event_code);
  const got = (await sandbox.events()).server.filter((e) => codes.includes(e._sandbox.test_event_code));
  assert.equal(new Set(got.map((e) => e._sandbox.fbtrace_id)).size, codes.length, 'one request per code');
  const capped = await (await at('brand-a.test', '/t/stats?tenant=brand-a', bearer(ADMIN_TOKEN))).json();
  const postponed = capped.reasons?.find((r) => r.outcome === 'retrying' && r.reason === 'test_codes_capped')?.count ?? 0;
  assert.ok(postponed > 0, 'events beyond 3 codes in a round waited for a later one');
});

test('p.js, which carries the privacy modes, may be used for 6 minutes at most', async () => {
  const res = await at('brand-a.test', '/t/p.js');
  assert.equal(res.status, 200);
  const cc = res.headers.get('cache-control');
  const secs = (name) => Number((cc.match(new RegExp(`${name}=(\\d+)`)) ?? [0, 0])[1]);
  assert.ok(!/immutable/.test(cc), cc);
  assert.ok(secs('max-age') > 0, cc);
  assert.ok(secs('max-age') + secs('stale-while-revalidate') <= 360, `fresh + stale at most 360 s: ${cc}`);
});
