// Delivery that breaks for a reason that will not fix itself, per cause, in the real runtime:
// the sandbox answers as Meta does (expired token, missing permission, deleted pixel, retired
// API version); the Worker holds the events, opens one incident (shown by /t/health, announced
// once to ALERT_WEBHOOK), and after the fix a replay delivers each held event once and the
// incident's end is announced once. Counted at the sandbox and at the alert receiver.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startSandbox, startWorker, eventually, ADMIN_TOKEN, cliPath } from './harness.mjs';

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

/** A Slack-style incoming webhook on 127.0.0.1 that keeps what it is sent; it fails (500)
 *  the first `failing` requests. */
async function alertReceiver(failing = 0, status = 500) {
  const got = [];
  const receiver = { got, tries: 0 };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      receiver.tries += 1;
      if (receiver.tries <= failing) { res.statusCode = status; res.end('down'); return; }
      got.push(JSON.parse(body));
      res.end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(r)));
  receiver.url = `http://127.0.0.1:${server.address().port}/hook`;
  return receiver;
}

const CAUSES = [
  ['token_expired', 'token_invalid', 190],
  ['permission', 'permission_missing', 200],
  ['pixel_deleted', 'pixel_not_found', 100],
  ['version_retired', 'api_version_retired', 2635],
];

async function scenario([fault, cause, code]) {
  const sandbox = await startSandbox();
  cleanup.push(async () => sandbox.stop());
  const alerts = await alertReceiver();
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: 'order-secret', ALERT_WEBHOOK: alerts.url });
  cleanup.push(() => worker.stop());
  const admin = (path, init = {}) => worker.fetch(path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const order = (id) => {
    const body = JSON.stringify({ order_id: id, value: 10, currency: 'EUR', fbp: 'fb.1.1700000000000.42', client_user_agent: 'Mozilla/5.0', client_ip_address: '8.8.8.8' });
    return worker.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
  };
  const held = async (id) => {
    const r = (await (await admin(`/t/receipts/purchase:${id}`)).json()).receipts?.[0];
    return r?.outcome === 'dead_lettered' && r.reason === cause;
  };

  await sandbox.faults({ kinds: [fault], error_rate: 1 });
  const ids = Array.from({ length: 5 }, (_, i) => `${fault}-${i}`);
  for (const id of ids.slice(0, 3)) assert.equal((await order(id)).status, 200);
  for (const id of ids.slice(0, 3)) await eventually(() => held(id), 15_000, `${id} held`);
  // More events while the incident is open: held too, no second alert.
  for (const id of ids.slice(3)) assert.equal((await order(id)).status, 200);
  for (const id of ids.slice(3)) await eventually(() => held(id), 15_000, `${id} held`);
  await eventually(() => alerts.got.length >= 1, 10_000, 'the alert');
  const health = await (await admin('/t/health')).json();
  assert.equal(health.incidents.length, 1, JSON.stringify(health.incidents));
  assert.deepEqual([health.incidents[0].cause, health.incidents[0].code, health.incidents[0].events_held], [cause, code, 5]);
  assert.match(health.incidents[0].what_to_do, /\w/);
  assert.equal((await worker.fetch('/t/health').then((r) => r.json())).incidents, undefined, 'not without a token');
  assert.equal((await sandbox.events()).server.length, 0, 'Meta took nothing');

  // The fix, then a replay: each held event delivered once; the end announced once.
  await sandbox.faults({});
  const replay = await (await admin('/t/replay', { method: 'POST' })).json();
  assert.equal(replay.replayed, 5);
  await eventually(async () => (await sandbox.events()).server.length >= 5, 15_000, 'the replayed events');
  await eventually(() => alerts.got.length >= 2, 10_000, 'the end of the incident');
  // A marker order after everything: had anything gone twice, it would have arrived by now.
  assert.equal((await order(`${fault}-marker`)).status, 200);
  await eventually(async () => (await sandbox.events()).server.some((e) => e.event_id === `purchase:${fault}-marker`), 15_000, 'the marker');
  const sent = (await sandbox.events()).server.map((e) => e.event_id).sort();
  assert.deepEqual(sent, [...ids, `${fault}-marker`].map((id) => `purchase:${id}`).sort());
  assert.deepEqual(alerts.got.map((a) => [a.capi_edge.state, a.capi_edge.cause, a.capi_edge.pixel_id]),
    [['open', cause, '987654321012345'], ['resolved', cause, '987654321012345']]);
  assert.match(alerts.got[0].text, /held, not lost/);
  assert.ok(!JSON.stringify(alerts.got).includes('test-token-secret-value'), 'no secret in an alert');
  assert.deepEqual((await (await admin('/t/health')).json()).incidents, []);
}

test('each cause that will not fix itself: events held, one incident, one alert each way, replay delivers each once', async () => {
  // The four causes run side by side, each against its own sandbox and Worker.
  await Promise.all(CAUSES.map(scenario));
});

// Three orders under a dead token, each in a round of its own: the second after the alert retry
// interval (15 s), the third right after it. Resolves once the third round's alert, if any, has
// had its try (the incident counts the third held event in the same ledger call that claims it).
async function threeHeldRounds(failing, status) {
  const sandbox = await startSandbox();
  cleanup.push(async () => sandbox.stop());
  const alerts = await alertReceiver(failing, status);
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: 'order-secret', ALERT_WEBHOOK: alerts.url });
  cleanup.push(() => worker.stop());
  const admin = async (path) => (await worker.fetch(path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  const order = (id) => {
    const body = JSON.stringify({ order_id: id, value: 10, currency: 'EUR', client_user_agent: 'Mozilla/5.0', client_ip_address: '8.8.8.8' });
    return worker.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
  };
  const heldSoFar = async (n) => (await admin('/t/health')).incidents?.[0]?.events_held === n;
  await sandbox.faults({ kinds: ['token_expired'], error_rate: 1 });
  assert.equal((await order('retry-alert-0')).status, 200);
  await eventually(() => alerts.tries >= 1, 15_000, 'the first alert');
  await new Promise((r) => setTimeout(r, 16_000));
  assert.equal((await order('retry-alert-1')).status, 200);
  await eventually(() => heldSoFar(2), 15_000, 'the second order held');
  await eventually(() => alerts.tries >= 2 || status !== 500, 15_000, 'the alert, tried again');
  assert.equal((await order('retry-alert-2')).status, 200);
  await eventually(() => heldSoFar(3), 15_000, 'the third order held');
  // A try the third round claimed would reach this local receiver within its 3 s timeout.
  await new Promise((r) => setTimeout(r, 3_500));
  return alerts;
}

test('an alert the receiver failed is sent again by a later round, once; one it refuses is not', async () => {
  const [failedOnce, refused] = await Promise.all([threeHeldRounds(1, 500), threeHeldRounds(Infinity, 404)]);
  // 500, then taken: tried again after the interval, then never again.
  assert.deepEqual(failedOnce.got.map((a) => [a.capi_edge.state, a.capi_edge.cause]), [['open', 'token_invalid']]);
  assert.equal(failedOnce.tries, 2);
  // 404 (a revoked or mistyped URL): refused for good, not tried again by the later rounds.
  assert.equal(refused.tries, 1);
});

test('a long outage: the held events are listed and replayed a page at a time, each delivered once', async () => {
  // A token that died over a weekend holds far more events than one request should carry: the
  // list and the replay work in pages (`next`), spread over the pixel's ledger shards.
  const sandbox = await startSandbox();
  cleanup.push(async () => sandbox.stop());
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: 'order-secret' });
  cleanup.push(() => worker.stop());
  const admin = async (path, init = {}) => {
    const r = await worker.fetch(path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    return { status: r.status, body: await r.json() };
  };
  const order = (id) => {
    const body = JSON.stringify({ order_id: id, value: 10, currency: 'EUR', client_user_agent: 'Mozilla/5.0', client_ip_address: '8.8.8.8' });
    return worker.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
  };
  const N = 60;
  const ids = Array.from({ length: N }, (_, i) => `purchase:outage-${i}`);
  await sandbox.faults({ kinds: ['token_expired'], error_rate: 1 });
  const statuses = await Promise.all(ids.map((id) => order(id.slice('purchase:'.length)).then((r) => r.status)));
  assert.ok(statuses.every((s) => s === 200), statuses.join());
  const list = async (limit) => {
    const seen = [];
    let next = null;
    let pages = 0;
    do {
      const { status, body } = await admin(`/t/dead-letters?limit=${limit}${next ? `&after=${next}` : ''}`);
      assert.equal(status, 200, JSON.stringify(body));
      assert.ok(body.dead_letters.length <= limit, `a page of ${body.dead_letters.length}`);
      assert.ok(body.dead_letters.every((d) => d.rowid === undefined && d.body === undefined), 'ids, reasons and times only');
      seen.push(...body.dead_letters.map((d) => d.event_id));
      next = body.next;
      pages += 1;
    } while (next && pages < 100);
    return { seen, pages };
  };
  await eventually(async () => (await list(1000)).seen.length === N, 30_000, 'every event held');
  const { seen, pages } = await list(7);
  assert.deepEqual([...seen].sort(), [...ids].sort(), 'every letter on exactly one page');
  assert.ok(pages >= Math.ceil(N / 7), `${pages} pages of 7`);
  for (const bad of ['limit=0', 'limit=5001', 'limit=ten', 'after=3', 'after=x.1', 'after=1.-2']) {
    const { status, body } = await admin(`/t/dead-letters?${bad}`);
    assert.deepEqual([status, body.error?.code], [400, 'invalid_query'], bad);
  }
  assert.deepEqual((await admin('/t/replay?limit=501', { method: 'POST' })).body.error?.code, 'invalid_query');
  assert.equal((await sandbox.events()).server.length, 0, 'Meta took nothing');

  // The token is fixed: `capi-edge replay` replays every page, each event once.
  await sandbox.faults({});
  const run = promisify(execFile);
  const { stdout } = await run(cliPath(), ['replay', '--url', `${worker.url}/t`, '--page-size', '7'], { env: { ...process.env, ADMIN_TOKEN }, timeout: 60_000 });
  const lines = stdout.trim().split('\n');
  assert.equal(lines[0], `replayed ${N} dead letter(s)`);
  assert.deepEqual(lines.slice(1).map((l) => l.trim()).sort(), [...ids].sort());
  const atMeta = async () => {
    const counts = new Map();
    for (const e of (await sandbox.events()).server) counts.set(e.event_id, (counts.get(e.event_id) ?? 0) + 1);
    return counts;
  };
  await eventually(async () => (await atMeta()).size === N, 30_000, 'every replayed event at Meta');
  // Every replay copy settled: then nothing is waiting and a replay sends nothing more.
  await eventually(async () => (await admin('/t/replay', { method: 'POST' })).body.replayed === 0, 15_000, 'nothing left to replay');
  const counts = await atMeta();
  assert.deepEqual([...counts.keys()].sort(), [...ids].sort());
  assert.ok([...counts.values()].every((n) => n === 1), 'each delivered once');
});
