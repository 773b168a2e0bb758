// Hostile input over HTTP against the built Worker in workerd: every answer is a documented
// 4xx JSON error — never a 5xx, never an echo of the input — and nothing is relayed. At the end
// a well-formed marker beacon must arrive alone, proving the queue had drained the rest.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startSandbox, startWorker, eventually, ADMIN_TOKEN } from './harness.mjs';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) capi-edge-hostile-test';
const CODES = new Set(['malformed_json', 'not_an_object', 'missing_field', 'invalid_field', 'origin_not_allowed', 'invalid_signature', 'invalid_webhook', 'unauthorized', 'method_not_allowed', 'not_found', 'body_too_large', 'unsupported_media_type', 'rate_limited']);
let sandbox, worker, origin;

before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed', ORDER_WEBHOOK_SECRET: 'order-secret', SHOPIFY_WEBHOOK_SECRET: 'shop-secret', STRIPE_WEBHOOK_SECRET: 'whsec_x' });
  origin = new URL(worker.url).origin;
});
after(async () => { await worker?.stop(); sandbox?.stop(); });

const post = (path, body, headers = {}) => worker.fetch(path, { method: 'POST', headers: { 'content-type': 'text/plain', origin, 'user-agent': UA, 'cf-connecting-ip': '203.0.113.50', ...headers }, body, duplex: 'half' });

/** A refused request: a 4xx with a documented code, JSON, no echo of `secret` input. */
async function refused(res, status, code, echo) {
  assert.equal(res.status, status, `status for ${code}`);
  assert.match(res.headers.get('content-type') || '', /application\/json/);
  const text = await res.text();
  const body = JSON.parse(text);
  assert.equal(body.error.code, code);
  assert.ok(CODES.has(body.error.code));
  if (echo) assert.ok(!text.includes(echo), `the answer echoes input: ${text}`);
}

/** POSTs a chunked body (no Content-Length) of a little more than `limit` bytes and then
 *  keeps the request open without ending it: only a server that stops at the limit answers. */
function chunked(path, limit, headers) {
  return new Promise((resolve, reject) => {
    const url = new URL(path, worker.url);
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'text/plain', origin, 'user-agent': UA, 'transfer-encoding': 'chunked', ...headers } });
    const timer = setTimeout(() => { req.destroy(); reject(new Error(`${path}: no answer while the body was still open`)); }, 15_000);
    let written = 0;
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode, body, written }); req.destroy(); });
    });
    req.on('error', () => {});
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    while (written <= limit + chunk.length) { written += chunk.length; req.write(chunk); }
    // Never req.end(): the body has no end the Worker could wait for.
  });
}

const ok = { event_name: 'AddToCart', event_id: 'h-ok', event_source_url: 'https://shop.test/p' };

test('malformed, nested, huge and binary bodies are refused with 4xx JSON', async () => {
  await refused(await post('/t/e', '{"event_name": "AddToCart", "em": "jane@example.com"'), 400, 'malformed_json', 'jane');
  await refused(await post('/t/e', '['.repeat(30_000) + ']'.repeat(30_000)), 400, 'malformed_json');
  await refused(await post('/t/e', `{"a":${'{"a":'.repeat(3000)}1${'}'.repeat(3000)}}`), 400, 'malformed_json');
  await refused(await post('/t/e', JSON.stringify({ ...ok, custom_data: { content_ids: Array(60_000).fill(1) } })), 413, 'body_too_large');
  await refused(await post('/t/e', JSON.stringify({ ...ok, event_id: 'x'.repeat(10_000) })), 400, 'invalid_field');
  await refused(await post('/t/e', new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), 400, 'malformed_json');
  await refused(await post('/t/e', JSON.stringify({ ...ok, event_name: 'Add\u0000ToCart' })), 400, 'invalid_field');
  await refused(await post('/t/e', JSON.stringify({ ...ok, event_id: 'id\u0000with-nul' })), 400, 'invalid_field');
  await refused(await post('/t/e', '"just a string"'), 400, 'not_an_object');
  await refused(await post('/t/e', JSON.stringify({ ...ok, event_source_url: 'javascript:alert(document.cookie)' })), 400, 'invalid_field', 'alert');
  await refused(await post('/t/e', JSON.stringify({ ...ok, user_data: 'jane@example.com' })), 400, 'invalid_field', 'jane');
  await refused(await post('/t/e', ''), 400, 'malformed_json');
});

test('oversized bodies are refused whether declared or chunked, without reading them whole', async () => {
  await refused(await post('/t/e', 'x'.repeat(64 * 1024 + 1)), 413, 'body_too_large');
  // Chunked bodies with no Content-Length, far over the limit, over a raw HTTP connection: the
  // Worker answers 413 once the limit is passed, while the client is still sending.
  for (const [path, limit, headers] of [['/t/e', 64 * 1024, {}], ['/t/hooks/order', 1024 * 1024, { 'x-capi-signature': 'sha256=00' }]]) {
    const { status, body } = await chunked(path, limit, headers);
    assert.equal(status, 413, path);
    assert.equal(JSON.parse(body).error.code, 'body_too_large');
  }
});

test('wrong methods, content types, origins and odd paths get their documented errors', async () => {
  await refused(await worker.fetch('/t/e', { method: 'PUT', body: '{}' }), 405, 'method_not_allowed');
  await refused(await worker.fetch('/t/e', { method: 'GET' }), 405, 'method_not_allowed');
  await refused(await worker.fetch('/t/health', { method: 'DELETE' }), 405, 'method_not_allowed');
  await refused(await post('/t/e', JSON.stringify(ok), { 'content-type': 'application/xml' }), 415, 'unsupported_media_type');
  await refused(await post('/t/e', JSON.stringify(ok), { 'content-type': 'multipart/form-data; boundary=x' }), 415, 'unsupported_media_type');
  await refused(await post('/t/e', JSON.stringify(ok), { origin: 'https://evil.example' }), 403, 'origin_not_allowed');
  await refused(await post('/t/e', JSON.stringify(ok), { origin: 'null' }), 403, 'origin_not_allowed');
  await refused(await worker.fetch('/t/nope'), 404, 'not_found');
  await refused(await post('/t/hooks/%2e%2e%2fe', JSON.stringify(ok)), 404, 'not_found');
  await refused(await post('/t/hooks/nope', '{}'), 404, 'not_found');
  await refused(await worker.fetch('/t/hooks/shopify'), 405, 'method_not_allowed');
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  for (const id of ['..%2f..%2fstats', '%00', `${'a'.repeat(5000)}`, '%E0%A4%A', '%ff%fe']) {
    await refused(await worker.fetch(`/t/receipts/${id}`, { headers: admin }), 404, 'not_found');
  }
  await refused(await worker.fetch('/t/receipts/x', { headers: { authorization: `Bearer ${ADMIN_TOKEN}x` } }), 401, 'unauthorized', ADMIN_TOKEN);
  await refused(await worker.fetch('/t/stats', { headers: { authorization: 'Basic Zm9vOmJhcg==' } }), 401, 'unauthorized');
});

test('forged or broken webhooks are refused before anything is parsed', async () => {
  const body = JSON.stringify({ order_id: 'H-1', value: 1, currency: 'EUR' });
  await refused(await post('/t/hooks/order', body), 401, 'invalid_signature');
  await refused(await post('/t/hooks/order', body, { 'x-capi-signature': 'sha256=zz' }), 401, 'invalid_signature');
  await refused(await post('/t/hooks/order', body, { 'x-capi-signature': `sha256=${'0'.repeat(64)}` }), 401, 'invalid_signature');
  await refused(await post('/t/hooks/shopify', body, { 'x-shopify-hmac-sha256': 'A'.repeat(10_000), 'x-shopify-topic': 'orders/create' }), 401, 'invalid_signature');
  await refused(await post('/t/hooks/stripe', body, { 'stripe-signature': 't=1,v1=' + 'a'.repeat(64) }), 401, 'invalid_signature');
  await refused(await post('/t/hooks/stripe', body, { 'stripe-signature': ',,,=,t=,v1' }), 401, 'invalid_signature');
  // A header listing a hundred signatures is refused as malformed before any MAC of the body.
  const many = Array.from({ length: 100 }, () => `v1=${'b'.repeat(64)}`).join(',');
  const tooMany = await post('/t/hooks/stripe', body, { 'stripe-signature': `t=1,${many}` });
  assert.equal(tooMany.status, 401);
  assert.match((await tooMany.json()).error.message, /signature_malformed/, 'refused for its shape, not after a MAC per entry');
});

test('header injection attempts never reach a Set-Cookie or CORS header', async () => {
  const res = await post('/t/e', JSON.stringify({ ...ok, event_id: 'h-inject', fbp: 'fb.1.1.1;Domain=evil.example', fbc: 'fb.1.1554763741205.AbC.x y;Path=/' }), {
    cookie: '_fbp=fb.1.2.3 ; HttpOnly; _fbc=fb.1.1554763741205.Ab"C',
  });
  assert.equal(res.status, 204);
  const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
  assert.ok(!/evil\.example|HttpOnly|Ab"C|x y/.test(headers), headers);
  assert.equal(res.headers.get('access-control-allow-credentials'), null, 'no credentials grant for anyone');
});

test('one beacon cannot add thousands of counter rows', async () => {
  const before = (await worker.stats()).dropped.length;
  const user_data = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, 'v']));
  assert.equal((await post('/t/e', JSON.stringify({ ...ok, event_id: 'h-rows', user_data }))).status, 204);
  const stats = await eventually(async () => { const s = await worker.stats(); return s.dropped.some((d) => d.field === 'other') && s; }, 15_000, 'the drops counted');
  assert.ok(stats.dropped.length <= before + 2, `${stats.dropped.length} rows after one beacon with 2,000 unknown fields`);
  assert.equal(stats.dropped.find((d) => d.field === 'other' && d.reason === 'unknown_user_data_field').count, 2000);
});

test('nothing refused was relayed: only the well-formed beacons reached Meta, their cookies cleaned', async () => {
  const marker = { ...ok, event_id: `h-marker-${Date.now()}` };
  assert.equal((await post('/t/e', JSON.stringify(marker))).status, 204);
  await eventually(async () => (await sandbox.events()).server.some((e) => e.event_id === marker.event_id), 15_000, 'marker');
  const ids = (await sandbox.events()).server.map((e) => e.event_id).sort();
  assert.deepEqual(ids, ['h-inject', 'h-rows', marker.event_id].sort(), 'only the well-formed beacons were relayed');
  const injected = (await sandbox.events()).server.find((e) => e.event_id === 'h-inject');
  assert.equal(injected.user_data.fbp, 'fb.1.2.3', 'the cookie header\'s valid _fbp, trimmed');
  assert.equal(injected.user_data.fbc, undefined, 'an fbc outside Meta\'s grammar is dropped, not sent');
});

test('a custom_data nested close to the JSON limit is refused, and the beacons pooled beside it arrive', async () => {
  // 124 levels of arrays: the beacon itself parses (serde_json reads 128), but in a queue message
  // it sits deeper still, where it would have made its whole pooled bundle unreadable.
  const deep = { ...ok, event_id: 'h-deep', custom_data: { a: JSON.parse(`${'['.repeat(124)}1${']'.repeat(124)}`) } };
  const ids = Array.from({ length: 20 }, (_, i) => `h-beside-${i}`);
  const [bad, ...good] = await Promise.all([
    post('/t/e', JSON.stringify(deep)),
    ...ids.map((event_id) => post('/t/e', JSON.stringify({ ...ok, event_id }))),
  ]);
  await refused(bad, 400, 'invalid_field');
  assert.deepEqual(good.map((r) => r.status), ids.map(() => 204));
  await eventually(async () => (await sandbox.events()).server.filter((e) => ids.includes(e.event_id)).length === ids.length, 15_000, 'the beacons beside it');
  assert.ok(!(await sandbox.events()).server.some((e) => e.event_id === 'h-deep'));
});
