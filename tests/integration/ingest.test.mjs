// POST /t/e in the real runtime: enrichment, hashing, cookies, and the documented 4xx answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startSandbox, startWorker, eventually, PIXEL_ID, TOKEN, HASHED_KEYS, isSha256, ADMIN_TOKEN } from './harness.mjs';

let sandbox, worker;
const UA = 'Mozilla/5.0 (X11; Linux x86_64) capi-edge-test';
const sha = (s) => createHash('sha256').update(s).digest('hex');

before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, ALLOWED_ORIGINS: 'https://www.shop.test', TEST_EVENT_CODE: 'TEST4242', CUSTOMER_DATA: 'hashed' });
});
after(async () => { await worker?.stop(); sandbox?.stop(); });

function beacon(body, headers = {}) {
  const origin = new URL(worker.url).origin;
  return worker.fetch('/t/e', {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8', origin, 'user-agent': UA, 'cf-connecting-ip': '203.0.113.7', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const base = () => ({ event_name: 'AddToCart', event_id: `evt-${Math.random().toString(36).slice(2)}`, event_source_url: 'https://shop.test/p/mug?fbclid=IwAR_Test-123', event_time_ms: Date.now() - 2000 });

test('a beacon reaches the sandbox enriched, hashed, with the same event_id', async () => {
  const b = { ...base(), fbp: 'fb.1.1700000000000.123456789', custom_data: { value: '12.50', currency: 'eur', content_ids: ['mug'], email: 'x@y.z' }, user_data: { em: ' Jane.Doe@Example.com ', ph: '+1 (650) 555-1212', country: 'United States' } };
  const res = await beacon(b);
  assert.equal(res.status, 204);
  const cookies = res.headers.getSetCookie();
  assert.ok(cookies.some((c) => c.startsWith('_fbp=fb.1.1700000000000.123456789;') && c.includes('Max-Age=7776000')), cookies.join(' | '));
  assert.ok(cookies.some((c) => /^_fbc=fb\.1\.\d{13}\.IwAR_Test-123;/.test(c)), cookies.join(' | '));

  const ev = await eventually(async () => (await sandbox.events()).server.find((e) => e.event_id === b.event_id), 10_000, 'server event');
  assert.equal(ev.event_name, 'AddToCart');
  assert.equal(ev.action_source, 'website');
  assert.equal(ev.event_source_url, b.event_source_url);
  assert.equal(ev.event_time, Math.floor(b.event_time_ms / 1000));
  assert.equal(ev._sandbox.pixel_id, PIXEL_ID);
  assert.equal(ev._sandbox.api_version, 'v26.0');
  assert.equal(ev._sandbox.test_event_code, 'TEST4242', 'TEST_EVENT_CODE is sent when set');
  assert.equal(ev._sandbox.partner_agent, 'capi-edge');
  const u = ev.user_data;
  assert.equal(u.client_user_agent, UA);
  assert.equal(u.client_ip_address, '203.0.113.7');
  assert.equal(u.fbp, b.fbp);
  assert.match(u.fbc, /^fb\.1\.\d{13}\.IwAR_Test-123$/);
  assert.equal(u.em, sha('jane.doe@example.com'));
  assert.equal(u.ph, sha('16505551212'));
  assert.equal(u.country, sha('us'));
  for (const k of HASHED_KEYS) if (k in u) assert.ok(isSha256(u[k]), `${k} is hashed`);
  assert.deepEqual(ev.custom_data, { value: 12.5, currency: 'EUR', content_ids: ['mug'] }, 'email never reaches custom_data');
});

test('the cookie header wins over body values, and a future client clock is clamped', async () => {
  const b = { ...base(), event_source_url: 'https://shop.test/', fbp: 'fb.1.1.1', event_time_ms: Date.now() + 3_600_000 };
  const before = Math.floor(Date.now() / 1000);
  const res = await beacon(b, { cookie: '_fbp=fb.1.1700000000001.42; other=1' });
  assert.equal(res.status, 204);
  const ev = await eventually(async () => (await sandbox.events()).server.find((e) => e.event_id === b.event_id), 10_000, 'server event');
  assert.equal(ev.user_data.fbp, 'fb.1.1700000000001.42');
  assert.ok(ev.event_time >= before && ev.event_time <= Math.floor(Date.now() / 1000), 'event_time is the server clock');
});

test('bad requests get the documented 4xx JSON error and nothing is sent', async () => {
  const cases = [
    ['malformed JSON', () => beacon('{"event_name":'), 400, 'malformed_json'],
    ['not an object', () => beacon('[1,2]'), 400, 'not_an_object'],
    ['missing event_name', () => beacon({ event_id: 'x', event_source_url: 'https://shop.test/' }), 400, 'missing_field'],
    ['bad event_source_url', () => beacon({ ...base(), event_source_url: 'javascript:alert(1)' }), 400, 'invalid_field'],
    ['too large', () => beacon({ ...base(), custom_data: { pad: 'x'.repeat(70_000) } }), 413, 'body_too_large'],
    ['wrong origin', () => beacon(base(), { origin: 'https://evil.test' }), 403, 'origin_not_allowed'],
    ['no origin or referer', () => worker.fetch('/t/e', { method: 'POST', headers: { 'user-agent': UA }, body: JSON.stringify(base()) }), 403, 'origin_not_allowed'],
    ['form content type', () => beacon(base(), { 'content-type': 'multipart/form-data; boundary=x' }), 415, 'unsupported_media_type'],
    ['no user agent', () => beacon(base(), { 'user-agent': '' }), 400, 'missing_field'],
    ['wrong method', () => worker.fetch('/t/e', { method: 'GET' }), 405, 'method_not_allowed'],
    ['unknown route', () => worker.fetch('/t/nope'), 404, 'not_found'],
  ];
  const sentBefore = (await sandbox.events()).summary.server_events;
  for (const [name, send, status, code] of cases) {
    const res = await send();
    assert.equal(res.status, status, name);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/, name);
    const body = await res.json();
    assert.equal(body.error.code, code, name);
    assert.equal(typeof body.error.message, 'string', name);
    assert.ok(!JSON.stringify(body).includes(TOKEN), `${name}: no secret in the answer`);
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await sandbox.events()).summary.server_events, sentBefore, 'nothing reached Meta');
});

test('an allowed cross origin gets CORS headers and a preflight answer', async () => {
  const pre = await worker.fetch('/t/e', { method: 'OPTIONS', headers: { origin: 'https://www.shop.test', 'access-control-request-method': 'POST' } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://www.shop.test');
  const res = await beacon(base(), { origin: 'https://www.shop.test' });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get('access-control-allow-origin'), 'https://www.shop.test');
});

test('the shim is served with cache headers; the versioned wasm is immutable', async () => {
  const js = await worker.fetch('/t/p.js');
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.match(js.headers.get('cache-control'), /max-age=300/);
  const version = (await js.text()).match(/p\.wasm\?v=([0-9a-f]+)/)[1];
  const wasm = await worker.fetch(`/t/p.wasm?v=${version}`);
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  assert.match(wasm.headers.get('cache-control'), /immutable/);
  assert.ok(WebAssembly.validate(new Uint8Array(await wasm.arrayBuffer())));
  const again = await worker.fetch('/t/p.js', { headers: { 'if-none-match': js.headers.get('etag') } });
  assert.equal(again.status, 304);
});

test('health says what is configured without revealing it', async () => {
  const res = await worker.fetch('/t/health');
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { ok: true }, 'without a token: only ok');
  const body = await (await worker.fetch('/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  assert.equal(body.ok, true);
  assert.equal(body.shim_built, true);
  assert.ok(!JSON.stringify(body).includes(TOKEN));
});

test("the operator's health shows this isolate's counts, and they move with the events", async () => {
  const isolate = async () => (await (await worker.fetch('/t/health', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()).isolate;
  const before = await isolate();
  assert.ok(before.since_ms > 0 && before.since_ms <= Date.now(), 'since_ms: when the isolate started counting');
  const ids = [1, 2, 3].map(() => base().event_id);
  for (const event_id of ids) assert.equal((await beacon({ ...base(), event_id })).status, 204);
  await eventually(async () => {
    const server = (await sandbox.events()).server;
    return ids.every((id) => server.some((e) => e.event_id === id));
  }, 10_000, 'the three events at the sandbox');
  const after = await isolate();
  const moved = (k) => after[k] - before[k];
  assert.ok(moved('beacons') >= 3, `beacons: ${moved('beacons')}`);
  for (const k of ['consumer_invocations', 'queue_messages_written', 'queue_write_ops', 'queue_messages_read', 'ledger_calls', 'meta_requests']) {
    assert.ok(moved(k) >= 1, `${k}: ${moved(k)}`);
  }
  assert.equal(after.since_ms, before.since_ms);
});
