// Many shops on one Worker in workerd: two tenants with two pixels each. Events fan out to
// every pixel of their tenant, ledgers and receipts stay apart, one tenant's token cannot read
// the other's, and a pixel that fails does not delay the other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startSandbox, startWorker, eventually, ADMIN_TOKEN } from './harness.mjs';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) capi-edge-tenants-test';
const TENANTS = [
  { id: 'shop-a', hosts: ['a.shop.test', 'www.a.shop.test'], pixels: [{ id: '111', access_token: 'A_TOKEN_1' }, { id: '112', access_token: 'A_TOKEN_2', app_secret: 'A_APP_SECRET' }],
    customer_data: 'hashed', webhook_secrets: { order: 'A_ORDER_SECRET' }, admin_token: 'A_ADMIN' },
  { id: 'shop-b', hosts: ['b.shop.test'], pixels: [{ id: '221', access_token: 'B_TOKEN_1' }, { id: '222', access_token: 'B_TOKEN_2' }],
    webhook_secrets: { order: 'B_ORDER_SECRET' }, admin_token: 'B_ADMIN', consent: 'required' },
];
const SECRETS = { A_TOKEN_1: 'tok-a1', A_TOKEN_2: 'tok-a2', A_APP_SECRET: 'app-a', B_TOKEN_1: 'tok-b1', B_TOKEN_2: 'tok-b2', A_ORDER_SECRET: 'order-a', B_ORDER_SECRET: 'order-b', A_ADMIN: 'admin-a', B_ADMIN: 'admin-b' };

let sandbox, worker;
before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, TENANTS: JSON.stringify(TENANTS), ...SECRETS, PIXEL_ID: '', META_ACCESS_TOKEN: '' });
});
after(async () => { await sandbox?.faults({}); await worker?.stop(); sandbox?.stop(); });

const uid = () => `t-${Math.random().toString(36).slice(2)}`;
const at = (host, path, init = {}) => worker.mf.dispatchFetch(`http://${host}${path}`, init);
const beacon = (host, body) => at(host, '/t/e', { method: 'POST', headers: { 'content-type': 'text/plain', origin: `http://${host}`, 'user-agent': UA, 'cf-connecting-ip': '203.0.113.30' }, body: JSON.stringify(body) });
const event = (extra = {}) => ({ event_name: 'AddToCart', event_id: uid(), event_source_url: 'https://shop.test/p', fbp: 'fb.1.1700000000000.7', user_data: { em: 'jane@example.com' }, ...extra });
const copies = async (id) => (await sandbox.events()).server.filter((e) => e.event_id === id);
const admin = (host, path, token) => at(host, path, { headers: { authorization: `Bearer ${token}` } });
const signed = (secret, body) => ({ method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` } });

test('an event fans out to every pixel of its tenant, with each tenant\'s own modes', async () => {
  const a = event();
  assert.equal((await beacon('www.a.shop.test', a)).status, 204);
  const got = await eventually(async () => { const c = await copies(a.event_id); return c.length === 2 && c; }, 15_000, 'two copies for shop-a');
  assert.deepEqual(got.map((e) => e._sandbox.pixel_id).sort(), ['111', '112']);
  assert.ok(got.every((e) => /^[0-9a-f]{64}$/.test(e.user_data.em)), 'shop-a sends hashed contact data');

  const b = event({ consent: 'granted' });
  assert.equal((await beacon('b.shop.test', b)).status, 204);
  const gotB = await eventually(async () => { const c = await copies(b.event_id); return c.length === 2 && c; }, 15_000, 'two copies for shop-b');
  assert.deepEqual(gotB.map((e) => e._sandbox.pixel_id).sort(), ['221', '222']);
  assert.ok(gotB.every((e) => e.user_data.em === undefined), 'shop-b keeps data controls off');
  const js = await (await at('b.shop.test', '/t/p.js')).text();
  assert.ok(js.includes('"consent":"required"'), 'each host gets its tenant\'s modes in the shim');

  const unknown = await beacon('c.shop.test', event());
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.code, 'unknown_tenant');
});

test('ledgers and receipts stay apart; one tenant\'s token cannot read the other\'s', async () => {
  const a = event();
  await beacon('a.shop.test', a);
  await eventually(async () => (await copies(a.event_id)).length === 2, 15_000, 'delivered');
  const path = `/t/receipts/${a.event_id}`;
  const own = await eventually(async () => { const r = await admin('a.shop.test', path, 'admin-a'); return r.status === 200 && r.json(); }, 10_000, 'receipt for shop-a');
  assert.equal(own.receipts[0].outcome, 'sent');
  assert.equal((await admin('a.shop.test', `${path}?pixel=112`, 'admin-a')).status, 200, 'each pixel has its own receipts');
  assert.equal((await admin('a.shop.test', path, 'admin-b')).status, 401, 'shop-b\'s token on shop-a');
  assert.equal((await admin('b.shop.test', `${path}?tenant=shop-a`, 'admin-b')).status, 401, 'shop-b\'s token asking for shop-a');
  assert.equal((await admin('b.shop.test', path, 'admin-b')).status, 404, 'not in shop-b\'s ledger');
  const op = await admin('b.shop.test', `${path}?tenant=shop-a&pixel=111`, ADMIN_TOKEN);
  assert.equal(op.status, 200, 'the operator token reads any tenant');
  // Without a token, a tenant that exists and one that does not get the same answer.
  const probe = async (tenant) => { const r = await at('b.shop.test', `/t/stats?tenant=${tenant}`); return [r.status, (await r.json()).error.code]; };
  assert.deepEqual(await probe('shop-a'), [401, 'unauthorized']);
  assert.deepEqual(await probe('no-such-shop'), [401, 'unauthorized']);
});

test('a pixel that fails does not delay or duplicate delivery to the other', async () => {
  await sandbox.faults({ down_pixels: ['112'] });
  const a = event();
  await beacon('a.shop.test', a);
  const first = await eventually(async () => { const c = await copies(a.event_id); return c.length === 1 && c; }, 15_000, 'pixel 111 delivered while 112 is down');
  assert.equal(first[0]._sandbox.pixel_id, '111');
  const r = await eventually(async () => { const res = await admin('a.shop.test', `/t/receipts/${a.event_id}?pixel=112`, 'admin-a'); const j = res.status === 200 && await res.json(); return j && j.receipts[0].outcome === 'retrying' && j; }, 15_000, 'pixel 112 retrying');
  assert.equal(r.receipts[0].outcome, 'retrying');
  await sandbox.faults({});
  const both = await eventually(async () => { const c = await copies(a.event_id); return c.length === 2 && c; }, 20_000, 'pixel 112 delivered after recovery');
  assert.deepEqual(both.map((e) => e._sandbox.pixel_id).sort(), ['111', '112']);
});

test('order webhooks are verified with their tenant\'s secret and fan out to its pixels', async () => {
  const body = JSON.stringify({ order_id: uid(), value: 30, currency: 'EUR', customer: { email: 'b@example.com' }, client_user_agent: UA, event_source_url: 'https://a.shop.test/thanks' });
  assert.equal((await at('a.shop.test', '/t/hooks/order', signed('order-b', body))).status, 401, 'shop-b\'s secret is not valid for shop-a');
  const res = await at('a.shop.test', '/t/hooks/order', signed('order-a', body));
  assert.equal(res.status, 200);
  const answer = await res.json();
  assert.deepEqual(Object.keys(answer.pixels).sort(), ['111', '112']);
  await eventually(async () => (await copies(answer.event_id)).length === 2, 15_000, 'the Purchase at both pixels');
  const again = await (await at('a.shop.test', '/t/hooks/order', signed('order-a', body))).json();
  assert.equal(again.duplicate, true, 'a redelivery is a duplicate at every pixel');

  const bBody = JSON.stringify({ order_id: uid(), value: 5, currency: 'EUR', consent: 'granted', client_user_agent: UA, client_ip_address: '198.51.100.9', event_source_url: 'https://b.shop.test/thanks' });
  const viaRoute = await at('a.shop.test', '/t/hooks/order/shop-b', signed('order-b', bBody));
  assert.equal(viaRoute.status, 200, 'a backend posting to one host names the tenant in the route');
  const bId = (await viaRoute.json()).event_id;
  const bCopies = await eventually(async () => { const c = await copies(bId); return c.length === 2 && c; }, 15_000, 'shop-b order at its pixels');
  assert.deepEqual(bCopies.map((e) => e._sandbox.pixel_id).sort(), ['221', '222']);
});

test('the operator sees every shop\'s incidents from one host; a shop\'s admin sees only its own', async () => {
  const held = event({ consent: 'granted' });
  await sandbox.faults({ kinds: ['token_expired'], error_rate: 1 });
  try {
    assert.equal((await beacon('b.shop.test', held)).status, 204);
    for (const pixel of ['221', '222']) {
      await eventually(async () => {
        const r = await admin('b.shop.test', `/t/receipts/${held.event_id}?pixel=${pixel}`, 'admin-b');
        return r.status === 200 && (await r.json()).receipts[0].outcome === 'dead_lettered';
      }, 15_000, `held at pixel ${pixel}`);
    }
  } finally { await sandbox.faults({}); }
  const operatorView = async () => (await (await admin('a.shop.test', '/t/health', ADMIN_TOKEN)).json()).tenants;
  const seen = Object.fromEntries((await operatorView()).map((t) => [t.id, t]));
  assert.equal(seen['shop-b'].ok, false, 'shop-b: Meta refuses its events');
  assert.deepEqual(seen['shop-b'].incidents.map((i) => [i.pixel_id, i.cause]).sort(), [['221', 'token_invalid'], ['222', 'token_invalid']]);
  assert.deepEqual([seen['shop-a'].ok, seen['shop-a'].incidents], [true, []]);
  const own = await (await admin('a.shop.test', '/t/health', 'admin-a')).json();
  assert.deepEqual(own.tenants.map((t) => t.id), ['shop-a'], 'a shop\'s admin sees no other shop');
  // Meta takes shop-b's events again: its incidents end, and the operator's view says so.
  const next = event({ consent: 'granted' });
  assert.equal((await beacon('b.shop.test', next)).status, 204);
  await eventually(async () => (await copies(next.event_id)).length === 2, 15_000, 'shop-b delivered again');
  await eventually(async () => (await operatorView()).find((t) => t.id === 'shop-b').ok === true, 15_000, 'shop-b ok again');
});

test('a tenant that cannot be read is reported and relays nothing, the others carry on', async () => {
  // shop-b names a secret that was never put, and pastes a token where its name belongs;
  // shop-c and shop-d share an admin token, shop-e's is the operator's.
  const pasted = 'EAABpastedValue1234567890abcdef';
  const shop = (id, admin) => ({ id, hosts: [`${id}.test`], pixels: [{ id: '331', access_token: 'A_TOKEN_1' }], admin_token: admin });
  const broken = [TENANTS[0], { ...TENANTS[1], pixels: [{ id: '221', access_token: 'MISSING_TOKEN' }, { id: '222', access_token: pasted }] },
    shop('shop-c', 'C_ADMIN'), shop('shop-d', 'D_ADMIN'), shop('shop-e', 'E_ADMIN')];
  const w = await startWorker({ META_GRAPH_URL: sandbox.url, TENANTS: JSON.stringify(broken), ...SECRETS, C_ADMIN: 'shared-admin', D_ADMIN: 'shared-admin', E_ADMIN: ADMIN_TOKEN, PIXEL_ID: '', META_ACCESS_TOKEN: '' });
  try {
    assert.deepEqual(await (await w.mf.dispatchFetch('http://b.shop.test/t/health')).json(), { ok: false }, 'without a token: only ok');
    const health = await (await w.mf.dispatchFetch('http://b.shop.test/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal(health.ok, false);
    const tenant = (id) => health.tenants.find((t) => t.id === id);
    const errors = (id) => tenant(id).errors;
    assert.equal(errors('shop-b')[0], 'pixel 221: secret MISSING_TOKEN is not set');
    assert.match(errors('shop-b')[1], /^pixel 222: the secret it names is not set \(the name is not shown/);
    // Not honoured, but the shops relay as before: an admin setting never stops their events.
    for (const id of ['shop-c', 'shop-d']) assert.deepEqual([tenant(id).ok, tenant(id).warnings], [true, ['admin token: another tenant has the same one, not honoured']]);
    assert.deepEqual([tenant('shop-e').ok, tenant('shop-e').warnings], [true, ['admin token: it is the operator\'s ADMIN_TOKEN, not honoured']]);
    // shop-a and shop-b are on hosts of one domain: their browser cookies would be one another's.
    assert.deepEqual(tenant('shop-a').warnings, ['cookie domain shop.test: another tenant\'s host sets its cookies there too; set cookie_domain to this shop\'s own host']);
    assert.equal((await w.mf.dispatchFetch('http://shop-c.test/t/e', { method: 'POST', headers: { origin: 'http://shop-c.test', 'user-agent': UA }, body: JSON.stringify(event()) })).status, 204);
    assert.ok(!JSON.stringify(health).includes('tok-'), 'never a secret\'s value');
    assert.ok(!JSON.stringify(health).includes(pasted.slice(0, 12)), 'nor what was pasted as a name');
    // A shared token reads neither tenant; the misconfigured shop-b's own token still reads its
    // own ledger, in any case of the scheme, and a wrong method is 405.
    for (const host of ['shop-c.test', 'shop-d.test']) assert.equal((await w.mf.dispatchFetch(`http://${host}/t/stats`, { headers: { authorization: 'Bearer shared-admin' } })).status, 401);
    assert.equal((await w.mf.dispatchFetch('http://b.shop.test/t/stats', { headers: { authorization: 'bearer admin-b' } })).status, 200);
    const wrong = await w.mf.dispatchFetch('http://b.shop.test/t/replay', { headers: { authorization: 'Bearer admin-b' } });
    assert.deepEqual([wrong.status, (await wrong.json()).error.code], [405, 'method_not_allowed']);
    const res = await w.mf.dispatchFetch('http://b.shop.test/t/e', { method: 'POST', headers: { origin: 'http://b.shop.test', 'user-agent': UA }, body: JSON.stringify(event({ consent: 'granted' })) });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, 'not_configured');
    assert.equal((await w.mf.dispatchFetch('http://a.shop.test/t/health').then((r) => r.json())).ok, true);
  } finally { await w.stop(); }
  const garbled = await startWorker({ META_GRAPH_URL: sandbox.url, TENANTS: '[{"id": "x", "hosts": ["a.shop.test"], "pixels": [], "token": "oops"}]' });
  try {
    assert.deepEqual(await (await garbled.mf.dispatchFetch('http://a.shop.test/t/health')).json(), { ok: false }, 'without a token: only ok');
    const health = await (await garbled.mf.dispatchFetch('http://a.shop.test/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal(health.ok, false);
    assert.match(health.tenants[0].errors[0], /^tenants is not a valid tenants list/i);
    assert.ok(!JSON.stringify(health).includes('oops'), 'the parser\'s message is not echoed');
  } finally { await garbled.stop(); }
});
